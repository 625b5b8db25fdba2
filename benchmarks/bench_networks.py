"""Networks: EfficientNet-Lite0 vs VGG-19, and artlab vs neural-style (a published peer), side by side.

A. EfficientNet-Lite0 (bundled ImageNet weights) vs VGG-19 (``weights=None, seed=0``:
   there is no VGG file here; speed does not depend on the weights' values). Same
   settings for both: L-BFGS, each network's default layers, layer weights and β
   (Lite0: stem, stage2 … stage4 with its balanced w_l, content stage4, β 1e5; VGG:
   relu1_1 … relu5_1 with w_l = 1/5, relu4_2, β 1e5), content init, one scale. Rows, each as the Lite0/VGG ratio plus the raw numbers:

   * seconds per style-transfer step at 256 and 512 px (quick: 64 and 128 px): the
     two networks' runs advance one step each in turn (a busy machine slows both
     alike), the first step of each run excluded, medians (and minima: on a shared
     machine the least disturbed step); objective evaluations per step are reported
     too (the line search may evaluate more than once);
   * TransferLab's time to the first preview at 256 px, driven from code
     (``TransferLab(content, style, model, size=256, steps=1)``,
     ``start_run(block=True)``, ``first_preview_s``; the quick start's first Adam step
     at 128 px makes that preview), networks alternating, median and minimum. The
     lab is given the style layers by their canonical names (same layers);
   * images/s of :func:`artlab.embed.embed` at 224 px on the sample corpus (36 images;
     quick: 12), cache disabled (``cache_dir=False``: every vector is computed),
     each network's default layer (VGG relu4_2, Lite0 stage6), best of alternating runs;
   * peak memory of a 512 px transfer (quick: 128 px, 3 steps), a fresh subprocess per
     network: the growth of the resident set's high-water mark (VmHWM, reset after the
     model and images are loaded), as ``bench_transfer.py`` measures it; the absolute
     peak (weights included: VGG-19 holds 548 MB, Lite0 19 MB) is reported too.

B. artlab vs neural-style (neural-style-pt, MIT, PyPI ``neural-style``; run as its
   own CLI code, ``-gpu c -backend nn``, in a subprocess) on the same VGG-19 weights:
   artlab's seeded random VGG-19 is written in neural-style's caffe layout
   (:func:`convert_weights`: the first convolution takes BGR pixels in 0–256 minus
   the caffe mean, so its input channels are swapped and scaled and the ImageNet
   normalisation is folded into its weights and bias). A subprocess checks
   numerically that both networks give the same relu1_1 … relu5_1 and relu4_2
   activations for one image, each through its own preprocessing.

   Same inputs (content and style written as PNGs at the run size; both read those
   files), same objective, same start (the content image), same L-BFGS history (50),
   TV 0, layers relu1_1 … relu5_1 (w_l = 1/5 each) and relu4_2. The ONE loss both
   final images are scored with is artlab's StyleTransfer objective (the function
   its optimiser minimises, ``StyleTransfer._objective``): content_weight α = 1 ×
   mean((F − P)²) at relu4_2 + style_weight β = 1e5 × Σ_l ⅕ mean((G_l − A_l)²), Grams
   divided by C·H·W. neural-style's loss is α_ns · MSE(F, P) + Σ_l β_ns · MSE(G_l, A_l)
   with the same Gram normalisation (``G.div(input.nelement())``), summed over layers
   without 1/5, so α_ns = K·α and β_ns = K·β/5 give K times the same function (its
   features equal artlab's through the converted network; the row checks that its
   first loss ÷ K equals artlab's loss of the content image). K only scales the loss:
   with K = 1 neural-style's L-BFGS does not move at all on the tiny losses of a
   random VGG (measured at 128 px: 1.0000 of the first loss after 20 iterations;
   its curvature test yᵀs > 1e-10 is absolute, and its first step has L1 length 1).
   K is fixed so its loss at the content image is 1e6, where its L-BFGS is
   practically scale-free (measured at 128 px, 20 iterations: K for 1e6 and for 1e8
   give the same trajectory, 0.480 vs 0.463 of the first loss at the end).

   Differences that stay, by design of each package: neural-style optimises
   unclamped BGR pixels with torch's L-BFGS without a line search (lr 1, one
   evaluation per iteration, tolerances −1, so exactly N iterations; every few
   iterations a step overshoots and the loss jumps by 10²–10³× before it recovers)
   and keeps in-place ReLUs; artlab clamps to [0, 1], uses a strong Wolfe line search
   with restarts and its loss scaling, and caches evaluations. Both stop the
   forward pass at relu5_1 and compute their targets once. artlab uses its defaults (content_weight 1, β 1e5,
   its default layers, init "content", L-BFGS with lr 1 and history 50, one scale,
   tv 0); only ``preview_every=0`` (neural-style runs with ``-save_iter 0 -print_iter
   0``: no intermediate outputs on either side).

   The two run in lockstep (each in its own subprocess; each unit of work is timed
   while the other process waits): one neural-style iteration, then one artlab step
   while artlab's best loss is above neural-style's latest own loss (÷K); after
   neural-style's N iterations, artlab continues alone until its best loss is at or
   below the target. Target: the lowest loss (the one loss) among neural-style's
   final iterate (after N updates) as it is and clamped to [0, 1], the last image it
   evaluated (after N − 1 updates: the one its PNG is written from) as it is and
   clamped, and the saved PNG (quantised) — the hardest target for artlab; each
   candidate is reported. Unclamped images are scored by letting them past artlab's
   [0, 1] input check; the objective is the same.
   Times include the targets' computation and the optimisation (neural-style: from
   after its model file is loaded to the end of ``main``; artlab: ``stylize()`` and
   its steps), not model loading or process start. An artlab step reports the best
   loss of the images it has evaluated, so the target is noticed one step late (a
   conservative count). Rows: seconds per iteration (medians, first excluded; and per
   evaluation), peak memory (VmHWM growth in each subprocess during its run; the
   number of L-BFGS pairs held at the end is reported, since it depends on the steps
   taken), time to equal loss (goal <= 0.6x at 512 px) and the evaluation counts.
   Full mode: 512 px, N = 300 iterations; quick: 128 px, N = 20.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import OrderedDict
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
for _path in (HERE, HERE.parent):  # bench_transfer is a sibling; the repository root holds tools/
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench_transfer import _images, _peak_rss, _reset_peak, _rss

from artlab.gram import ReceptiveFieldWarning
from artlab.images import load_image, save_image
from artlab.models import backbone, features
from artlab.transfer import StyleTransfer, TransferSettings, stylize

NETWORKS = ("efficientnet_lite0", "vgg19")
VGG_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # neural-style's preprocess: BGR, x·256 − mean
HISTORY = 50  # artlab's L-BFGS history (ImageOptimizer's default); neural-style: -lbfgs_num_correction 50
NS_FIRST_LOSS = 1e6  # K makes neural-style's loss at the content image this large (see the module docstring)


def _log(message: str) -> None:
    print(f"   [networks] {message}", file=sys.stderr, flush=True)


def _model(name: str, device: str = "cpu"):
    if name == "vgg19":
        return backbone("vgg19", weights=None, seed=0, device=device)
    return backbone(name, device=device)


def _label(name: str) -> str:
    return "lite0" if name == "efficientnet_lite0" else "vgg"


@contextlib.contextmanager
def _count_evaluations():
    """Counts forward(+backward) passes of the StyleTransfer objectives built inside the block, per network."""
    counter: dict[str, int] = {}
    original = StyleTransfer._objective

    def objective(self, size):
        inner, name = original(self, size), self.model.name
        counter.setdefault(name, 0)

        def counted(y):
            counter[name] += 1
            return inner(y)

        return counted

    StyleTransfer._objective = objective
    try:
        yield counter
    finally:
        StyleTransfer._objective = original


def _ratio(a: float, b: float) -> float:
    return a / b if b and math.isfinite(a) and math.isfinite(b) else math.nan


# =========================================================================== A. Lite0 vs VGG-19


def _step_rows(models: dict, sizes: list[int], steps: int, repeats: int) -> list[dict]:
    rows = []
    for size in sizes:
        content, style = _images(size)
        times = {name: [] for name in models}
        evals = {name: [] for name in models}
        for r in range(repeats):
            order = list(models) if r % 2 == 0 else list(reversed(models))
            runs, steps_times = {}, {name: [] for name in models}
            with _count_evaluations() as counts:
                for name in order:
                    runs[name] = stylize(content, style, models[name],
                                         TransferSettings(size=size, steps=steps, preview_every=0))
                for _ in range(steps):  # one step each, in turn
                    for name in order:
                        t0 = time.perf_counter()
                        next(runs[name])
                        steps_times[name].append(time.perf_counter() - t0)
            for name in order:
                times[name] += steps_times[name][1:]  # the first step sets up (targets, kernels, first bracket)
                evals[name].append(counts[models[name].name] / steps)
            _log(f"s/step @{size}px repeat {r + 1}/{repeats}: "
                 + ", ".join(f"{_label(n)} {statistics.median(steps_times[n][1:]):.2f} s" for n in order))
        lite, vgg = (statistics.median(times[n]) for n in NETWORKS)
        rows.append({"case": f"A s/step @{size}px (L-BFGS, default layers, {steps} steps x{repeats})",
                     "lite0_s_per_step": lite, "vgg_s_per_step": vgg, "lite0/vgg": lite / vgg,
                     "lite0_min_s": min(times["efficientnet_lite0"]), "vgg_min_s": min(times["vgg19"]),
                     "lite0/vgg_min": min(times["efficientnet_lite0"]) / min(times["vgg19"]),
                     "lite0_evals_per_step": statistics.mean(evals["efficientnet_lite0"]),
                     "vgg_evals_per_step": statistics.mean(evals["vgg19"])})
    return rows


def _preview_row(models: dict, size: int, repeats: int, tmp: Path) -> dict:
    from artlab.widgets.transfer_lab import TransferLab

    content, style = _images(size)
    seconds = {name: [] for name in models}
    for r in range(repeats):
        for name in (NETWORKS if r % 2 == 0 else tuple(reversed(NETWORKS))):
            model = models[name]
            # canonical layer names (Lite0: stage2.1, not the alias stage2): the lab passes layer_weights keyed
            # by its style layers, and when this was written artlab.transfer refused alias keys there
            # (ValueError "layer_weights names 'stage2', which is not a style layer"); same layers either way
            layers = tuple(model.resolve_layer(layer) for layer in model.spec.style_layers)
            lab = TransferLab(content, style, model, size=size, steps=1, style_layers=layers, output_dir=tmp / "lab")
            lab.start_run(block=True)
            if lab.first_preview_s is None:
                raise RuntimeError(f"TransferLab with {name} showed no preview: {lab.status.value}")
            seconds[name].append(lab.first_preview_s)
    lite, vgg = (statistics.median(seconds[n]) for n in NETWORKS)
    return {"case": f"A TransferLab first preview @{size}px (quick start: Adam @128px; median of {repeats})",
            "lite0_s": lite, "vgg_s": vgg, "lite0/vgg": lite / vgg,
            "lite0_min_s": min(seconds["efficientnet_lite0"]), "vgg_min_s": min(seconds["vgg19"])}


def _embed_row(models: dict, n: int, repeats: int) -> dict:
    from artlab.data import sample_corpus
    from artlab.embed import default_layer, embed

    paths = [item.path for item in sample_corpus(progress=False)][:n]
    best = {name: math.inf for name in models}
    for r in range(repeats + 1):  # the first round warms up (oneDNN kernels, file cache) and is not counted
        for name in (NETWORKS if r % 2 == 0 else tuple(reversed(NETWORKS))):
            t0 = time.perf_counter()
            emb = embed(paths, models[name], size=224, cache_dir=False, progress=False)
            dt = time.perf_counter() - t0
            if emb.n_computed != len(paths):
                raise RuntimeError(f"embed computed {emb.n_computed} of {len(paths)} vectors")
            if r:
                best[name] = min(best[name], dt)
    lite, vgg = (n / best[name] for name in NETWORKS)
    layers = ", ".join(f"{_label(name)} {default_layer(models[name])}" for name in NETWORKS)
    return {"case": f"A embed images/s, {n} sample-corpus PNGs @224px, no cache ({layers}; best of {repeats})",
            "lite0_img_s": lite, "vgg_img_s": vgg, "lite0/vgg": lite / vgg}


def _measure_transfer(name: str, size: int, steps: int) -> dict:
    """A ``steps``-step transfer with ``name`` in this (fresh) process; peak RSS above the start."""
    model = _model(name)
    content, style = _images(size)
    gc.collect()
    _reset_peak()
    base = _rss()
    for _ in stylize(content, style, model, TransferSettings(size=size, steps=steps, preview_every=0)):
        pass
    peak = _peak_rss()
    return {"network": name, "peak_bytes": peak - base, "peak_abs_bytes": peak}


def _memory_row(size: int, steps: int) -> dict:
    peaks = {}
    for name in NETWORKS:
        command = [sys.executable, str(Path(__file__).resolve()), "--memory", name, str(size), str(steps)]
        out = subprocess.run(command, capture_output=True, text=True, cwd=HERE, check=False)
        if out.returncode != 0:
            return {"case": f"A peak memory @{size}px", "status": f"{name} failed: {out.stderr.strip()[-300:]}"}
        peaks[name] = json.loads(out.stdout.strip().splitlines()[-1])
    lite, vgg = (peaks[n]["peak_bytes"] / 2**20 for n in NETWORKS)
    return {"case": f"A peak memory of a {size}px transfer ({steps} L-BFGS steps, RSS growth, own process)",
            "lite0_MiB": lite, "vgg_MiB": vgg, "lite0/vgg": _ratio(lite, vgg),
            "lite0_peak_abs_MiB": peaks["efficientnet_lite0"]["peak_abs_bytes"] / 2**20,
            "vgg_peak_abs_MiB": peaks["vgg19"]["peak_abs_bytes"] / 2**20}


# =========================================================================== B. artlab vs neural-style


def convert_weights(model, path: Path) -> Path:
    """Save artlab's VGG-19 (torchvision layout, [0, 1] RGB input normalised by ImageNet mean/std)
    as the caffe-style state dict neural-style loads (same keys ``features.N``/``classifier.N``;
    input: BGR pixels p ∈ [0, 256) minus the caffe mean, p = 256·rgb).

    With x_j = 256·rgb_{2−j} − m_j (j in BGR order), artlab's first layer input is
    (rgb_c − μ_c)/σ_c = x_{2−c}/(256 σ_c) + d_c, d_c = (m_{2−c}/256 − μ_c)/σ_c. So
    W'[:, j] = W[:, 2−j] / (256 σ_{2−j}) and b' = b + Σ_c,k W[:, c, k] d_c: equal outputs
    wherever the 3×3 window lies inside the image. On the 1-pixel border the zero padding
    differs (a zero pixel of neural-style's input is rgb = m/256, of artlab's rgb = μ;
    m/256 = (0.4831, 0.4562, 0.4060) vs μ = (0.485, 0.456, 0.406)): the known preprocessing
    difference, which :func:`_check_worker` measures.
    """
    state = OrderedDict((k, v.detach().clone().cpu()) for k, v in model.net.state_dict().items())
    mean = model.mean.detach().cpu().view(3).double()
    std = model.std.detach().cpu().view(3).double()
    caffe_rgb = torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float64).flip(0)
    w = state["features.0.weight"].double()  # out × 3 (RGB) × 3 × 3
    b = state["features.0.bias"].double()
    d = (caffe_rgb / 256 - mean) / std
    w_bgr = (w / (256 * std).view(1, 3, 1, 1)).flip(1)
    state["features.0.weight"] = w_bgr.float().contiguous()
    state["features.0.bias"] = (b + (w * d.view(1, 3, 1, 1)).sum(dim=(1, 2, 3))).float()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def _to_rgb(x_bgr: torch.Tensor) -> torch.Tensor:
    """neural-style's image tensor (BGR, 256·rgb − caffe mean) as an artlab RGB image (not clamped)."""
    mean = torch.tensor(CAFFE_MEAN_BGR, dtype=x_bgr.dtype).view(1, 3, 1, 1)
    return ((x_bgr.detach().cpu() + mean) / 256).flip(1)


# ---------------------------------------------------------------- subprocess plumbing


class _Worker:
    """A subprocess of this file speaking one JSON line per event on stdout (its own prints go to a log)."""

    def __init__(self, mode: str, config: dict, log: Path) -> None:
        self.log_path = log
        self.log = open(log, "w")  # noqa: SIM115 (closed in close(): the worker writes to it meanwhile)
        command = [sys.executable, str(Path(__file__).resolve()), mode, json.dumps(config)]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, bufsize=1, cwd=HERE)

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.log.flush()
            tail = self.log_path.read_text()[-1500:]
            raise RuntimeError(f"worker exited ({self.proc.returncode}) without answering; its log ends:\n{tail}")
        return json.loads(line)

    def send(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _protocol():
    """In a worker: a private line channel on the real stdout; everything printed goes to stderr."""
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(event: dict) -> None:
        channel.write(json.dumps(event) + "\n")
        channel.flush()

    def wait() -> str:
        return sys.stdin.readline().strip() or "stop"

    return send, wait


def _ns_worker(config: dict) -> None:
    """Run neural-style's own main() with its command line, gated: it waits for "go" after loading its
    model and before every evaluation, and reports each segment's duration and its own loss."""
    send, wait = _protocol()
    sys.argv = ["neural-style", *config["argv"]]
    import neural_style.neural_style as ns

    state = {"t": 0.0, "loss": math.nan, "evals": 0, "base": 0, "image": None, "evaluated": None, "pairs": 0}
    original_load = ns.loadCaffemodel

    def load(*args, **kwargs):
        out = original_load(*args, **kwargs)
        gc.collect()
        _reset_peak()
        state["base"] = _rss()
        send({"event": "ready"})
        wait()
        state["t"] = time.perf_counter()
        return out

    class GatedLBFGS(torch.optim.LBFGS):
        def step(self, closure):
            def gated():
                if state["evals"]:  # a segment ends before each evaluation but the first
                    send({"event": "segment", "dt": time.perf_counter() - state["t"], "loss": state["loss"],
                          "evals": state["evals"]})
                    wait()
                    state["evaluated"] = self.param_groups[0]["params"][0].detach().clone()  # not timed
                    state["t"] = time.perf_counter()
                loss = closure()
                state["evals"] += 1
                state["loss"] = float(loss)
                return loss

            out = super().step(gated)
            state["image"] = self.param_groups[0]["params"][0]
            state["pairs"] = len(self.state[state["image"]].get("old_dirs", []))
            return out

    ns.loadCaffemodel = load
    torch.optim.LBFGS = GatedLBFGS  # neural-style calls optim.LBFGS(...) at run time
    setup = {"dt": None}
    original_setup = ns.setup_optimizer

    def setup_optimizer(img):  # the end of setup (targets captured): report it as its own segment
        setup["dt"] = time.perf_counter() - state["t"]
        return original_setup(img)

    ns.setup_optimizer = setup_optimizer
    ns.main()
    dt = time.perf_counter() - state["t"]
    peak = _peak_rss()
    torch.save({"final": state["image"].detach().clone(), "last_evaluated": state["evaluated"]}, config["final"])
    send({"event": "done", "dt": dt, "loss": state["loss"], "evals": state["evals"], "setup_s": setup["dt"],
          "peak_bytes": peak - state["base"], "peak_abs_bytes": peak, "lbfgs_pairs": state["pairs"]})


def _artlab_worker(config: dict) -> None:
    """artlab's run (its defaults, VGG-19 seed 0) one step per "go"; "stop" ends it."""
    send, wait = _protocol()
    warnings.simplefilter("ignore", ReceptiveFieldWarning)
    model = _model("vgg19")
    content, style = load_image(config["content"]), load_image(config["style"])
    settings = TransferSettings(size=config["size"], steps=config["budget"], preview_every=0)
    with _count_evaluations() as count:
        gc.collect()
        _reset_peak()
        base = _rss()
        send({"event": "ready"})
        command = wait()
        t0 = time.perf_counter()
        run = stylize(content, style, model, settings)
        while command == "go":
            try:
                update = next(run)
            except StopIteration:
                send({"event": "exhausted"})
                command = wait()
                break
            send({"event": "segment", "dt": time.perf_counter() - t0, "loss": update.loss,
                  "best_loss": update.best_loss, "evals": count.get("vgg19", 0)})
            command = wait()
            t0 = time.perf_counter()
        peak = _peak_rss()
        optim = run._optim
        pairs = len(optim._opt.state[optim.x].get("old_dirs", [])) if optim is not None else 0
        run.close()
        save_image(run.best_image, config["final"])
        torch.save(run.best_image, config["final"] + ".pt")
        send({"event": "done", "peak_bytes": peak - base, "peak_abs_bytes": peak, "lbfgs_pairs": pairs,
              "best_loss": run.best_loss})


def _check_worker(config: dict) -> None:
    """Activations of one image through artlab's VGG-19 and through neural-style's loader + converted
    file + its own preprocess; prints per-layer relative errors (max |Δ| / max |F|) as JSON."""
    sys.argv = ["neural-style"]
    import neural_style.neural_style as ns
    from neural_style.loader.CaffeLoader import loadCaffemodel

    layers = [*VGG_LAYERS, CONTENT_LAYER]
    model = _model("vgg19")
    image = load_image(config["image"])
    ours = features(model, image, layers)
    with contextlib.redirect_stdout(sys.stderr):
        cnn, names = loadCaffemodel(config["weights"], "max", "c", False)
    x = ns.preprocess(config["image"], config["size"])

    def theirs(x: torch.Tensor) -> dict[str, torch.Tensor]:
        out, r = {}, 0
        with torch.no_grad():
            for module in cnn:
                x = module(x)
                if isinstance(module, torch.nn.ReLU):
                    if names["R"][r] in layers:
                        out[names["R"][r]] = x.clone()
                    r += 1
                    if len(out) == len(layers):
                        break
        return out

    def errors(a: dict, b: dict) -> dict[str, float]:
        return {k: float((a[k] - b[k]).abs().max() / a[k].abs().max()) for k in layers}

    reference = theirs(x)
    result = {"real_mean": errors(ours, reference)}
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))  # relu1_1 without its 1-pixel border
    a, b = ours["relu1_1"][inner], reference["relu1_1"][inner]
    result["relu1_1_interior"] = float((a - b).abs().max() / a.abs().max())
    # the same, with artlab's mean set to the caffe mean (then the padding agrees too): float rounding only
    model.mean.copy_(torch.tensor(CAFFE_MEAN_BGR).flip(0).view(1, 3, 1, 1) / 256)
    convert_weights(model, Path(config["weights"] + ".caffe-mean.pth"))
    with contextlib.redirect_stdout(sys.stderr):
        cnn, names = loadCaffemodel(config["weights"] + ".caffe-mean.pth", "max", "c", False)
    result["caffe_mean"] = errors(features(model, image, layers), theirs(x))
    print(json.dumps(result))


# ---------------------------------------------------------------- the race


def _write_inputs(folder: Path, size: int) -> tuple[Path, Path]:
    content, style = _images(size)
    return save_image(content, folder / "content.png"), save_image(style, folder / "style.png")


def _scorer(model, content: torch.Tensor, style: torch.Tensor, size: int):
    """The one loss: artlab's StyleTransfer objective with its defaults for VGG-19 (α 1, β 1e5,
    relu1_1 … relu5_1 at ⅕ each, relu4_2), targets from the same two images at ``size``."""
    run = stylize(content, style, model, TransferSettings(size=size, steps=1, preview_every=0))
    objective = run._objective(run.size)

    def score(image: torch.Tensor) -> float:
        with torch.no_grad():
            return float(objective(image)[0])

    return score


def _peer_rows(model, size: int, iterations: int, tmp: Path) -> list[dict]:
    folder = tmp / f"peer{size}"
    folder.mkdir(parents=True, exist_ok=True)
    content_png, style_png = _write_inputs(folder, size)
    content, style = load_image(content_png), load_image(style_png)
    weights = convert_weights(model, folder / "vgg19-artlab-seed0.pth")  # "vgg" and "19" pick its VGG-19 layout
    check = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--check",
                            json.dumps({"weights": str(weights), "image": str(content_png), "size": size})],
                           capture_output=True, text=True, cwd=HERE, check=False)
    if check.returncode != 0:
        raise RuntimeError(f"converter check failed: {check.stderr[-1500:]}")
    errors = json.loads(check.stdout.strip().splitlines()[-1])
    _log(f"converter check @{size}px (max |Δ|/max|F| per layer): {errors}")
    score = _scorer(model, content, style, size)
    first = score(content)
    k = NS_FIRST_LOSS / first
    argv = ["-content_image", str(content_png), "-style_image", str(style_png), "-image_size", str(size),
            "-gpu", "c", "-backend", "nn", "-model_file", str(weights), "-pooling", "max",
            "-content_weight", repr(k * 1.0), "-style_weight", repr(k * 1e5 / len(VGG_LAYERS)), "-tv_weight", "0",
            "-num_iterations", str(iterations), "-init", "image", "-optimizer", "lbfgs",
            "-lbfgs_num_correction", str(HISTORY), "-print_iter", "0", "-save_iter", "0",
            "-output_image", str(folder / "neural-style.png"), "-seed", "0",
            "-content_layers", CONTENT_LAYER, "-style_layers", ",".join(VGG_LAYERS)]
    budget = 4 * iterations
    ns = _Worker("--neural-style-worker", {"argv": argv, "final": str(folder / "ns-final.pt")}, folder / "ns.log")
    art = _Worker("--artlab-worker", {"content": str(content_png), "style": str(style_png), "size": size,
                                      "budget": budget, "final": str(folder / "artlab-best.png")},
                  folder / "artlab.log")
    try:
        for worker in (ns, art):
            if worker.read()["event"] != "ready":
                raise RuntimeError("a worker did not get ready")
        ns_segments, ns_losses, art_segments = [], [], []
        ns_done, target, art_active = None, None, True
        started = shown = time.perf_counter()
        while ns_done is None or art_active:
            if ns_done is None:
                event = ns.send("go")
                ns_segments.append(event["dt"])
                ns_losses.append(event["loss"] / k)
                if event["event"] == "done":
                    ns_done = event
                    target, candidates = _target(score, folder)
                    _log(f"neural-style done: {iterations} iterations in {sum(ns_segments):.1f} s; target loss "
                         f"{target:.4g} ({target / first:.4g} of the first) from "
                         + ", ".join(f"{key} {value / first:.4g}" for key, value in candidates.items()))
            if not art_active:
                continue
            best = art_segments[-1]["best_loss"] if art_segments else math.inf
            if target is not None and best <= target:
                art_active = False  # reached
                continue
            if target is None and best <= ns_losses[-1] and len(art_segments) >= 3:
                continue  # artlab is ahead of neural-style's current loss: let neural-style catch up
            if target is not None and sum(s["dt"] for s in art_segments) > 4 * sum(ns_segments):
                art_active = False  # far beyond neural-style's time: not reached
                continue
            event = art.send("go")
            if event["event"] == "exhausted":
                art_active = False
                continue
            art_segments.append(event)
            if time.perf_counter() - shown > 60:
                shown = time.perf_counter()
                _log(f"peer @{size}px: neural-style {len(ns_segments)}/{iterations} iterations "
                     f"{sum(ns_segments):.0f} s (loss {ns_losses[-1] / first:.4g} of the first), artlab "
                     f"{len(art_segments)} steps {sum(s['dt'] for s in art_segments):.0f} s (best "
                     f"{art_segments[-1]['best_loss'] / first:.4g}); wall {shown - started:.0f} s")
        art_done = art.send("stop")
    finally:
        ns.close()
        art.close()
    art_reached = next((i + 1 for i, s in enumerate(art_segments) if s["best_loss"] <= target), None)
    art_best_scored = score(torch.load(folder / "artlab-best.png.pt"))
    # --------------------------------------------------------- rows
    ns_iter = statistics.median(ns_segments[1:-1]) if len(ns_segments) > 2 else math.nan  # setup+1st, last out
    art_steps = [s["dt"] for s in art_segments]
    art_step = statistics.median(art_steps[1:]) if len(art_steps) > 1 else math.nan
    art_evals_per_step = ((art_segments[-1]["evals"] - art_segments[0]["evals"]) / (len(art_segments) - 1)
                          if len(art_segments) > 1 else math.nan)
    rows = [{
        "case": f"B converter check @{size}px: max|Δ|/max|F| over relu1_1…relu5_1, relu4_2",
        "real_mean_max_rel_err": max(errors["real_mean"].values()),
        "caffe_mean_max_rel_err": max(errors["caffe_mean"].values()),
        **{f"rel_err_{layer}": v for layer, v in errors["real_mean"].items()},
        "ns_first_loss/K_vs_artlab": ns_losses[0] / first if ns_losses else math.nan,
    }, {
        "case": f"B s/iteration @{size}px (lockstep, medians; ns: no line search, artlab: strong Wolfe)",
        "neural_style_s_per_iter": ns_iter, "artlab_s_per_step": art_step, "artlab/ns_per_iter": art_step / ns_iter,
        "artlab_evals_per_step": art_evals_per_step, "ns_evals_per_iter": 1.0,
        "artlab/ns_per_eval": (art_step / art_evals_per_step) / ns_iter if art_evals_per_step else math.nan,
    }, {
        "case": f"B peak memory @{size}px (RSS growth during each run, own process)",
        "neural_style_MiB": ns_done["peak_bytes"] / 2**20, "artlab_MiB": art_done["peak_bytes"] / 2**20,
        "artlab/ns": _ratio(art_done["peak_bytes"], ns_done["peak_bytes"]),
        "neural_style_peak_abs_MiB": ns_done["peak_abs_bytes"] / 2**20,
        "artlab_peak_abs_MiB": art_done["peak_abs_bytes"] / 2**20,
        "ns_lbfgs_pairs": ns_done["lbfgs_pairs"], "artlab_lbfgs_pairs": art_done["lbfgs_pairs"],
    }]
    ns_s = sum(ns_segments)
    row = {"case": f"B time to neural-style's loss after {iterations} iterations @{size}px (1 scale)",
           "neural_style_s": ns_s, "neural_style_setup_s": ns_done["setup_s"], "target_loss": target,
           "target/first": target / first, **{f"ns_{key}/first": v / first for key, v in candidates.items()},
           "neural_style_evals": ns_done["evals"], "goal": "<= 0.6"}
    if art_reached is None:
        row.update({"artlab_s": math.inf, "artlab/ns": math.inf,
                    "status": f"not reached in {len(art_segments)} steps (best {art_done['best_loss']:.4g})"})
    else:
        art_s = sum(art_steps[:art_reached])
        evals = art_segments[art_reached - 1]["evals"]
        row.update({"artlab_s": art_s, "artlab_steps": art_reached, "artlab_evals": evals, "artlab/ns": art_s / ns_s,
                    "artlab/ns_evals": evals / ns_done["evals"]})
    row["artlab_best_scored/reported"] = art_best_scored / art_done["best_loss"]
    rows.append(row)
    return rows


def _target(score, folder: Path) -> tuple[float, dict[str, float]]:
    """The lowest loss of neural-style's result (the one loss), among: its final iterate (after N updates)
    as it is and clamped to [0, 1]; the last image it evaluated (after N − 1 updates) as it is and clamped;
    its saved PNG (that last evaluated image, clamped and quantised by its deprocess)."""
    import artlab.models

    saved = torch.load(folder / "ns-final.pt")
    final, last = _to_rgb(saved["final"]), _to_rgb(saved["last_evaluated"])
    check = artlab.models.ensure_image_batch
    artlab.models.ensure_image_batch = lambda images, *args, **kwargs: images  # let pixels outside [0, 1] through
    try:
        candidates = {"final_raw": score(final), "last_evaluated_raw": score(last)}
    finally:
        artlab.models.ensure_image_batch = check
    candidates.update({"final_clamped": score(final.clamp(0, 1)), "last_evaluated_clamped": score(last.clamp(0, 1)),
                       "png": score(load_image(folder / "neural-style.png"))})
    return min(candidates.values()), candidates


# =========================================================================== entry points


def run(quick: bool = False) -> list[dict]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-networks-"))
    rows: list[dict] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ReceptiveFieldWarning)  # small quick sizes: irrelevant for timing
            models = {name: _model(name) for name in NETWORKS}
            if quick:
                rows += _step_rows(models, [64, 128], steps=3, repeats=1)
                rows.append(_preview_row(models, 256, repeats=1, tmp=tmp))
                rows.append(_embed_row(models, 12, repeats=1))
                rows.append(_memory_row(128, 3))
                rows += _peer_rows(models["vgg19"], 128, 20, tmp)
            else:
                rows += _step_rows(models, [256, 512], steps=6, repeats=2)
                rows.append(_preview_row(models, 256, repeats=3, tmp=tmp))
                rows.append(_embed_row(models, 36, repeats=2))
                rows.append(_memory_row(512, 3))
                rows += _peer_rows(models["vgg19"], 512, 300, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "--memory":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ReceptiveFieldWarning)
            print(json.dumps(_measure_transfer(argv[1], int(argv[2]), int(argv[3]))))
        return 0
    if len(argv) == 2 and argv[0] in ("--neural-style-worker", "--artlab-worker", "--check"):
        worker = {"--neural-style-worker": _ns_worker, "--artlab-worker": _artlab_worker,
                  "--check": _check_worker}[argv[0]]
        worker(json.loads(argv[1]))
        return 0
    if len(argv) == 3 and argv[0] == "--peer":  # only part B: --peer SIZE ITERATIONS
        tmp = Path(tempfile.mkdtemp(prefix="bench-networks-"))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ReceptiveFieldWarning)
                for row in _peer_rows(_model("vgg19"), int(argv[1]), int(argv[2]), tmp):
                    print(json.dumps(row), flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return 0
    print(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
