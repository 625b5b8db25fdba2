"""Style transfer: artlab's loop vs a plain textbook Gatys loop, side by side in one run.

Both use the same VGG-19 weights (``backbone("vgg19", weights=None, seed=0)``), the
same layers (style relu1_1 … relu5_1 with w_l = 1/5, content relu4_2), the same
objective (content_weight 1, style_weight 1e5, Grams normalised by C·H·W, mean
squared errors) and start from the content image.

The textbook loop is what a first implementation looks like: every step runs the
full ``torchvision`` VGG-19 ``features`` (through pool5) on the image, recomputes the
style Grams and the content features from the style and content images, uses
``torch.optim.LBFGS`` as it comes (no line search, history 100, ``max_iter=1`` so one
iteration is one step), clamps in the closure, default memory format. One help: its
loss is multiplied by a constant that makes the first loss 1 (as if the weights had
been chosen larger). Without it, torch's L-BFGS does not move on the tiny losses of
a random-init VGG (measured: 0.9997x of the first loss after 30 steps at 128 px),
and the time-to-loss row would compare against a loop that never starts.

artlab: :func:`artlab.transfer.stylize` (forward stopped at relu5_1, targets computed
once per scale, L-BFGS with a strong Wolfe line search, restarts, loss scaling and
the evaluation cache of :mod:`artlab.optimize`).

Rows:
* seconds per L-BFGS step at 256 and 512 px (quick: 64 and 128 px), medians over
  interleaved runs, the first step excluded; artlab's evaluations per step are
  reported too (its line search may evaluate more than once per step). Goal <= 0.7x.
* time for artlab, coarse to fine (3 scales), to reach the lowest loss the textbook
  loop reaches in 300 steps at 512 px (quick: 20 steps at 128 px, 2 scales), the
  textbook's own time for those steps included in the row. Goal <= 0.3x.
* peak memory of each variant at the largest size, each in its own subprocess:
  the growth of the resident set's high-water mark (VmHWM, reset before the run)
  on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

from artlab.gram import ReceptiveFieldWarning, gram
from artlab.images import load_image
from artlab.models import backbone
from artlab.transfer import TransferSettings, stylize

HERE = Path(__file__).resolve().parent
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"
CONTENT_WEIGHT, STYLE_WEIGHT = 1.0, 1e5


def _images(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A photograph and a painting (the sample corpus), ``size`` px square."""
    from artlab.data import sample_corpus

    corpus = sample_corpus(progress=False)
    paths = {(i.meta["subject"], i.meta["style"]): i.path for i in corpus}
    return load_image(paths[("chelsea", "photo")], size), load_image(paths[("astronaut", "pointillism")], size)


# --------------------------------------------------------------------------- the textbook loop


def _vgg_indices(features: torch.nn.Sequential) -> dict[str, int]:
    """relu{block}_{i} -> index in torchvision's vgg.features."""
    names, block, i = {}, 1, 1
    for index, module in enumerate(features):
        if isinstance(module, torch.nn.ReLU):
            names[f"relu{block}_{i}"] = index
            i += 1
        elif isinstance(module, torch.nn.MaxPool2d):
            block, i = block + 1, 1
    return names


class Textbook:
    """A plain Gatys loop over torchvision's vgg19.features (see the module docstring)."""

    def __init__(self, model, content: torch.Tensor, style: torch.Tensor) -> None:
        self.features = model.net.features  # the same weights as artlab's backbone
        self.mean, self.std = model.mean, model.std
        index = _vgg_indices(self.features)
        self.style_index = [index[layer] for layer in STYLE_LAYERS]
        self.content_index = index[CONTENT_LAYER]
        self.content, self.style = content, style
        self.x = content.clone().requires_grad_(True)
        self.opt = torch.optim.LBFGS([self.x], max_iter=1)  # torch's defaults: no line search
        self.scale: float | None = None  # 1 / first loss, a constant weight (see the module docstring)

    def extract(self, image: torch.Tensor) -> dict[int, torch.Tensor]:
        h, out = (image - self.mean) / self.std, {}
        for i, layer in enumerate(self.features):  # the full network, through pool5
            h = layer(h)
            out[i] = h
        return out

    def step(self) -> float:
        with torch.no_grad():  # targets recomputed every step
            style_feats = self.extract(self.style)
            style_grams = {i: gram(style_feats[i]) for i in self.style_index}
            content_target = self.extract(self.content)[self.content_index]
        seen = []

        def closure():
            with torch.no_grad():
                self.x.clamp_(0, 1)
            self.opt.zero_grad()
            feats = self.extract(self.x)
            content = (feats[self.content_index] - content_target).square().mean()
            style = sum((gram(feats[i]) - style_grams[i]).square().mean() for i in self.style_index) / 5
            loss = CONTENT_WEIGHT * content + STYLE_WEIGHT * style
            if self.scale is None:
                self.scale = 1.0 / float(loss.detach())
            (loss * self.scale).backward()
            seen.append(float(loss.detach()))
            return loss.detach() * self.scale

        self.opt.step(closure)
        with torch.no_grad():
            self.x.clamp_(0, 1)
        return seen[0]

    def final_loss(self) -> float:
        """The loss of the current (clamped) image."""
        with torch.no_grad():
            feats = self.extract(self.x.clamp(0, 1))
            target = self.extract(self.content)[self.content_index]
            style_feats = self.extract(self.style)
            content = (feats[self.content_index] - target).square().mean()
            style = sum((gram(feats[i]) - gram(style_feats[i])).square().mean() for i in self.style_index) / 5
        return float(CONTENT_WEIGHT * content + STYLE_WEIGHT * style)


def _artlab(model, content, style, size: int, steps: int, **kw):
    settings = TransferSettings(content_weight=CONTENT_WEIGHT, style_weight=STYLE_WEIGHT, style_layers=STYLE_LAYERS,
                                content_layer=CONTENT_LAYER, size=size, steps=steps, preview_every=0, **kw)
    return stylize(content, style, model, settings)


# --------------------------------------------------------------------------- rows


class _Counter:
    """Counts artlab's objective evaluations (forward/backward passes) by wrapping ImageOptimizer._evaluate."""

    def __init__(self) -> None:
        from artlab import optimize

        self.module, self.count = optimize, 0
        self.original = optimize.ImageOptimizer._evaluate

    def __enter__(self) -> _Counter:
        counter, original = self, self.original

        def evaluate(opt, image):
            cache = opt._cache
            if cache is None or cache.image.shape != image.shape or not torch.equal(cache.image, image):
                counter.count += 1
            return original(opt, image)

        self.module.ImageOptimizer._evaluate = evaluate
        return self

    def __exit__(self, *exc) -> None:
        self.module.ImageOptimizer._evaluate = self.original


def _timed_next(iterator, times: list[float]):
    """next(iterator), its duration appended to ``times``."""
    t0 = time.perf_counter()
    item = next(iterator)
    times.append(time.perf_counter() - t0)
    return item


def _textbook_steps(book: Textbook, steps: int):
    return (book.step() for _ in range(steps))


def _per_step_rows(model, sizes: list[int], steps: int, repeats: int) -> list[dict]:
    rows = []
    for size in sizes:
        content, style = _images(size)
        textbook, artlab, evals = [], [], []
        for _ in range(repeats):
            book = _textbook_steps(Textbook(model, content, style), steps)
            with _Counter() as counter:
                run = _artlab(model, content, style, size, steps)
                t, a = [], []
                for _ in range(steps):  # step by step, alternating, so a busy machine slows both alike
                    _timed_next(book, t)
                    _timed_next(run, a)
            textbook += t[1:]  # the first step sets up (targets, oneDNN kernels, the first bracket)
            artlab += a[1:]
            evals.append(counter.count / steps)
        t, a = statistics.median(textbook), statistics.median(artlab)
        rows.append({"case": f"s/step @{size}px (L-BFGS, {steps} steps x{repeats})", "textbook_s_per_step": t,
                     "artlab_s_per_step": a, "artlab/textbook": a / t, "goal": "<= 0.7",
                     "artlab_evals_per_step": statistics.mean(evals), "textbook_evals_per_step": 1.0})
    return rows


def _time_to_loss_row(model, size: int, textbook_steps: int, scales: int, budget: int) -> dict:
    content, style = _images(size)
    book = Textbook(model, content, style)
    # coarse to fine: a few dozen steps at the cheap coarse scales, then as many as needed at full size
    coarse = [max(10, textbook_steps // 4)] * (scales - 1)
    run = _artlab(model, content, style, size, sum(coarse) + budget, scales=scales,
                  scale_steps=tuple(coarse + [budget]))
    book_times, book_losses, run_times, run_best = [], [], [], []
    for i in range(max(textbook_steps, sum(coarse) + budget)):  # alternating steps, each side timed alone
        if i % 25 == 0:  # a long row (an hour at 512 px on a laptop CPU): show it is alive
            print(f"   time-to-loss @{size}px: step {i}, textbook {sum(book_times):.0f} s, "
                  f"artlab {sum(run_times):.0f} s", file=sys.stderr, flush=True)
        if i < textbook_steps:
            book_times.append(0.0)
            t0 = time.perf_counter()
            book_losses.append(book.step())
            book_times[-1] = time.perf_counter() - t0
        elif run_best and run_best[-1] is not None and run_best[-1] <= min(book_losses):
            break  # the textbook is done and artlab has reached its loss
        try:
            update = _timed_next(run, run_times)
        except StopIteration:
            break
        run_best.append(update.best_loss if update.scale == scales - 1 else None)
    run.close()
    textbook_s = sum(book_times)
    target = min(min(book_losses), book.final_loss())  # the last step's result counts too
    elapsed, reached = 0.0, None
    for steps, (dt, best) in enumerate(zip(run_times, run_best), start=1):
        elapsed += dt
        if best is not None and best <= target:
            reached = elapsed
            break
    row = {"case": f"time to the textbook's loss after {textbook_steps} steps @{size}px",
           "textbook_s": textbook_s, "textbook_loss/first": target / book_losses[0], "artlab_scales": scales,
           "artlab_coarse_steps": sum(coarse), "goal": "<= 0.3"}
    if reached is None:
        row.update({"artlab_s": math.inf, "artlab/textbook": math.inf,
                    "status": f"not reached in {len(run_times)} steps"})
    else:
        row.update({"artlab_s": reached, "artlab_steps": steps, "artlab/textbook": reached / textbook_s})
    return row


# --------------------------------------------------------------------------- memory (one subprocess per variant)


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
    except OSError:
        pass


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _measure(variant: str, size: int, steps: int) -> dict:
    """Run one variant for ``steps`` steps in this process; its peak memory above the starting point."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = backbone("vgg19", weights=None, seed=0, device=device)
    content, style = (t.to(device) for t in _images(size))
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        _reset_peak()
        base = _rss()
    if variant == "textbook":
        book = Textbook(model, content, style)
        for _ in range(steps):
            book.step()
    else:
        for _ in _artlab(model, content, style, size, steps):
            pass
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _peak_rss()
    return {"variant": variant, "device": device, "peak_bytes": peak - base}


def _memory_row(size: int, steps: int) -> dict:
    peaks = {}
    for variant in ("textbook", "artlab"):
        command = [sys.executable, str(Path(__file__).resolve()), "--memory", variant, str(size), str(steps)]
        out = subprocess.run(command, capture_output=True, text=True, cwd=HERE, check=False)
        if out.returncode != 0:
            return {"case": f"peak memory @{size}px", "status": f"{variant} failed: {out.stderr.strip()[-300:]}"}
        peaks[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    t, a = peaks["textbook"]["peak_bytes"], peaks["artlab"]["peak_bytes"]
    return {"case": f"peak memory @{size}px ({steps} steps, {peaks['artlab']['device']})",
            "textbook_MiB": t / 2**20, "artlab_MiB": a / 2**20, "artlab/textbook": a / t if t else math.nan}


def run(quick: bool = False) -> list[dict]:
    model = backbone("vgg19", weights=None, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReceptiveFieldWarning)  # small quick sizes: irrelevant for timing
        if quick:
            rows = _per_step_rows(model, [64, 128], steps=4, repeats=2)
            rows.append(_time_to_loss_row(model, 128, textbook_steps=20, scales=2, budget=40))
            rows.append(_memory_row(128, 3))
        else:
            rows = _per_step_rows(model, [256, 512], steps=6, repeats=2)
            rows.append(_time_to_loss_row(model, 512, textbook_steps=300, scales=3, budget=300))
            rows.append(_memory_row(512, 3))
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--memory":
        sys.path.insert(0, str(HERE.parent))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ReceptiveFieldWarning)
            print(json.dumps(_measure(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    else:
        print(__doc__)
