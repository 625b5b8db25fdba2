"""Gram matrices and texture synthesis: batched Gram vs loops, and what speeds up a synthesis step.

Ratios measured side by side in one run:
* Gram of VGG-19's five style layers (relu1_1 … relu5_1, random init) for two images:
  a naive Python loop over channel pairs (dot products of flattened maps, upper
  triangle mirrored), plain per-layer per-image ``f @ f.T``, and artlab's batched
  ``gram`` (one ``bmm`` per layer). The naive loop is timed in full only on the
  small-channel layers; on the others it is timed on a channel subset and
  extrapolated by the pair count C(C+1)/2 (the row says which).
* Texture synthesis seconds per step (VGG-19 random init; 256 px, quick: 128 px) for
  L-BFGS and Adam: channels_last on vs off, bf16 autocast on the CPU vs fp32, and
  ``torch.compile`` of the loss (full runs only; compile errors are reported in the row).
"""

from __future__ import annotations

import math
import statistics
import time
import warnings

import torch

from artlab.gram import ReceptiveFieldWarning, compute_grams, gram, synthesize_texture, texture_loss
from artlab.models import backbone, features
from run import timeit

STYLE = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]


def _naive_gram(f: torch.Tensor, channels: int) -> torch.Tensor:
    """F Fᵀ / (C·H·W) for the first ``channels`` channels of one C×H×W map, pair by pair."""
    c, h, w = f.shape
    flat = [f[i].reshape(-1) for i in range(channels)]
    g = torch.empty(channels, channels)
    for i in range(channels):
        for j in range(i, channels):
            g[i, j] = g[j, i] = torch.dot(flat[i], flat[j])
    return g / (c * h * w)


def _gram_rows(quick: bool) -> list[dict]:
    size = 128 if quick else 256
    model = backbone("vgg19", weights=None)
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    feats = {k: v.contiguous() for k, v in features(model, images, STYLE).items()}  # NCHW for all three
    full_upto = 64 if quick else 128  # layers with at most this many channels get the full naive loop
    subset = 32 if quick else 64

    naive_s, naive_note = 0.0, []
    for layer, f in feats.items():
        c = f.shape[1]
        k = c if c <= full_upto else subset
        t = timeit(lambda f=f, k=k: [_naive_gram(f[n], k) for n in range(2)], repeat=1, warmup=0)
        naive_s += t * (c * (c + 1) / 2) / (k * (k + 1) / 2)
        naive_note.append(f"{layer}:{'full' if k == c else f'{k}/{c} ch x{(c * (c + 1)) / (k * (k + 1)):.0f}'}")
        check = _naive_gram(f[0], min(k, 16))
        torch.testing.assert_close(check, gram(f[:1])[0, :16, :16][: check.shape[0], : check.shape[0]],
                                   rtol=1e-4, atol=1e-7)

    def plain():
        return [[(f[n].reshape(f.shape[1], -1) @ f[n].reshape(f.shape[1], -1).T) / f[n].numel() for n in range(2)]
                for f in feats.values()]

    def batched():
        return [gram(f) for f in feats.values()]

    repeat = 3 if quick else 7
    plain_s = timeit(plain, repeat=repeat)
    batched_s = timeit(batched, repeat=repeat)
    for p, b in zip(plain(), batched()):
        torch.testing.assert_close(torch.stack(p), b, rtol=1e-4, atol=1e-7)
    return [
        {"case": f"gram 5 style layers, 2 images @{size}px", "naive_loop_s": naive_s, "plain_mm_s": plain_s,
         "batched_s": batched_s, "naive/batched": naive_s / batched_s, "plain/batched": plain_s / batched_s,
         "naive_timing": "; ".join(naive_note)},
    ]


def _per_step(make_steps, steps: int) -> tuple[float, float, float]:
    """(median seconds per step after the first, first step's seconds, best/first loss) of one run."""
    times, first_loss, best = [], None, None
    t0 = time.perf_counter()
    for update in make_steps(steps):
        t1 = time.perf_counter()
        times.append(t1 - t0)
        first_loss = update.loss if first_loss is None else first_loss
        best = update.best_loss
        t0 = time.perf_counter()
    return statistics.median(times[1:]), times[0], best / first_loss


def _compiled_adam_steps(model, target, steps: int, lr: float = 0.05):
    """Adam on torch.compile(loss): the same loop as synthesize_texture's, by hand (yields loss per step)."""
    targets = {k: v.detach() for k, v in target.grams.items()}
    weights = {k: 1 / len(targets) for k in targets}
    loss_fn = torch.compile(lambda x: texture_loss(model, x, targets, weights, target.normalize)[0])
    x = torch.rand(1, 3, *target.image_size, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    best = math.inf

    class Step:  # the two fields _per_step reads
        def __init__(self, loss, best_loss):
            self.loss, self.best_loss = loss, best_loss

    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(x.clamp(0.0, 1.0))
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
        best = min(best, float(loss.detach()))
        yield Step(float(loss.detach()), best)


def _synthesis_rows(quick: bool) -> list[dict]:
    size = 128 if quick else 256
    steps = 4 if quick else 6  # the first step (target Grams, oneDNN kernel setup) is not counted
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    image = torch.nn.functional.avg_pool2d(image, 5, 1, 2)  # some spatial structure
    models = {True: backbone("vgg19", weights=None, channels_last=True),
              False: backbone("vgg19", weights=None, channels_last=False)}
    target = compute_grams(models[True], image)
    rows = []
    for optimizer in ("lbfgs", "adam"):
        results = {}
        for name, nhwc, bf16 in [("fp32 nchw", False, False), ("fp32 channels_last", True, False),
                                 ("bf16 autocast channels_last", True, True)]:
            def make(n, nhwc=nhwc):
                return synthesize_texture(models[nhwc], target, steps=n, optimizer=optimizer, seed=0)

            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                results[name] = _per_step(make, steps)
        base = results["fp32 nchw"][0]
        for name, (s, first, ratio) in results.items():
            rows.append({"case": f"synthesis {optimizer} {name} @{size}px", "s_per_step": s, "first_step_s": first,
                         "speedup_vs_fp32_nchw": base / s, f"best/first_loss_after_{steps}": ratio})
    if quick:
        rows.append({"case": f"synthesis adam torch.compile @{size}px", "status": "skipped in --quick"})
        return rows
    import logging

    torch._logging.set_logs(dynamo=logging.ERROR, inductor=logging.ERROR)  # graph-break chatter
    try:
        eager = _per_step(lambda n: synthesize_texture(models[True], target, steps=n, optimizer="adam"), steps)
        compiled = _per_step(lambda n: _compiled_adam_steps(models[True], target, n), steps + 2)
        rows.append({"case": f"synthesis adam torch.compile(loss) channels_last @{size}px", "s_per_step": compiled[0],
                     "first_step_s(compile)": compiled[1], "eager_s_per_step": eager[0],
                     "speedup_vs_eager": eager[0] / compiled[0],
                     "note": "graph breaks at the models' input range check (float(min/max)); convs stay oneDNN"})
    except Exception as exc:  # compilers missing, dynamo limits: report rather than fail the suite
        rows.append({"case": f"synthesis adam torch.compile @{size}px",
                     "status": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"})
    return rows


def run(quick: bool = False) -> list[dict]:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        # quick runs use 128 px, below relu5_1's 156 px receptive field: irrelevant for timing
        warnings.simplefilter("ignore", ReceptiveFieldWarning)
        return _gram_rows(quick) + _synthesis_rows(quick)
