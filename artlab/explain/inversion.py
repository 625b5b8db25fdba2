"""What a layer keeps of an image: feature inversion (Mahendran & Vedaldi, 2015).

Mahendran & Vedaldi, "Understanding Deep Image Representations by Inverting Them" (CVPR 2015): given the
representation Φ0 = Φ(x0) of an image at one layer, find the image x whose representation is closest,

    x* = argmin_x  ||Φ(x) − Φ0||² / ||Φ0||²  +  λ_TV · TV(x),

starting from noise. What x* shares with x0 is what the layer keeps; what differs (colours, exact
positions, fine texture) the layer has thrown away. Shallow layers give near copies; deep ones keep
object parts and their rough layout and lose the rest. :func:`inversion_strip` does it at every depth of
the model's ``spec.inspect_layers``; :func:`plot_inversion_strip` draws a painting's and a photo's strips.

Departures from the paper, each a choice of this implementation:

* The pixels are artlab images in [0, 1], optimised by :class:`artlab.optimize.ImageOptimizer` (L-BFGS
  with a line search, or Adam) and clamped after every step; the paper bounds the pixels with an α-norm
  prior (α = 6) instead and uses momentum gradient descent.
* The TV prior is the mean of squared neighbour differences (the paper's V^β with β = 2), scaled by
  ``tv_weight`` (default 0.05 of the normalised feature loss) at every layer; the paper tunes λ per layer.
* Jitter (random shifts of up to ``jitter`` px before each forward pass, from Mahendran & Vedaldi's 2016
  journal version) is optional (default off) and needs a stochastic optimiser: Adam only (see
  :func:`invert`); Adam is also the default optimiser (measured better than L-BFGS at shallow layers).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from artlab.figures import ArtlabFigure, stamp_model
from artlab.images import ensure_image_batch, to_numpy_hwc
from artlab.models import Backbone, model_device
from artlab.optimize import ImageOptimizer, check_optimizer
from artlab.runs import Progress, Run, progress_bar

__all__ = ["InversionStep", "Inversion", "invert", "inversion_strip", "plot_inversion_strip", "DEFAULT_TV_WEIGHT"]

#: λ_TV relative to the normalised feature loss (which starts near 1 from noise).
DEFAULT_TV_WEIGHT = 0.05


@dataclass
class InversionStep:
    """One step: ``loss`` is the total objective at the step's start image; ``image`` (1×3×H×W CPU, the best
    image so far) on preview steps and the last, else None."""

    step: int
    loss: float
    image: Tensor | None = None


class Inversion(Run[InversionStep]):
    """The run :func:`invert` returns: ``best_image`` (lowest loss so far, CPU), ``best_loss``, ``losses``
    (one per step), ``layer``; a stopped run keeps them."""

    def __init__(self, optim: ImageOptimizer, layer: str, steps: int, preview_every: int, shifts: list[tuple[int, int]],
                 state: dict, progress: bool | None, on_progress: Progress | None) -> None:
        self._optim = optim
        self.layer = layer
        self.steps = steps
        self.preview_every = preview_every
        self.losses: list[float] = []
        self._shifts = shifts
        self._state = state
        self.progress = progress
        self.on_progress = on_progress

    def _steps(self) -> Iterator[InversionStep]:
        optim = self._optim
        bar = progress_bar(self.steps, f"invert {self.layer}", enabled=self.progress)
        try:
            for step in range(self.steps):
                if self._shifts:
                    self._state["shift"] = self._shifts[step]
                update = optim.step()
                self.losses.append(update.loss)
                last = step == self.steps - 1 or update.status != "ok"
                if last and update.status == "ok":
                    self._state["shift"] = (0, 0)
                    optim.evaluate()  # the final image has not been scored yet
                bar.update(1)
                if self.on_progress is not None:
                    self.on_progress(f"invert {self.layer}", step + 1, self.steps)
                preview = last or (self.preview_every > 0 and (step + 1) % self.preview_every == 0)
                yield InversionStep(step, update.loss, optim.best_image if preview else None)
                if update.status != "ok":
                    return
        finally:
            bar.close()

    @property
    def best_image(self) -> Tensor | None:
        """The lowest-loss image so far (1×3×H×W CPU), None before the first step."""
        return self._optim.best_image

    @property
    def image(self) -> Tensor:
        """The image the optimiser holds now (1×3×H×W CPU)."""
        return self._optim.current_image.cpu()

    @property
    def best_loss(self) -> float:
        return self._optim.best_loss


def _tv(x: Tensor) -> Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).square().mean() + (x[..., :, 1:] - x[..., :, :-1]).square().mean()


def _one_image(image: object, size: int | tuple[int, int] | None) -> Tensor:
    if not isinstance(image, Tensor):
        raise TypeError(f"image must be a 1×3×H×W tensor in [0, 1] (artlab.images.load_image), got "
                        f"{type(image).__name__}")
    if image.ndim not in (3, 4) or (image.ndim == 4 and image.shape[0] != 1):
        raise ValueError(f"image must be one image, 1×3×H×W or 3×H×W, got shape {tuple(image.shape)}")
    image = ensure_image_batch(image, "image")
    if size is not None:
        h, w = image.shape[-2:]
        if isinstance(size, int) and not isinstance(size, bool):
            if size < 16:
                raise ValueError(f"size must be >= 16 px, got {size}")
            size = (max(1, round(h * size / max(h, w))), max(1, round(w * size / max(h, w))))
        elif not (isinstance(size, (tuple, list)) and len(size) == 2):
            raise ValueError(f"size must be an int (longer side) or (height, width), got {size!r}")
        image = F.interpolate(image, size=tuple(int(s) for s in size), mode="bilinear", antialias=True,
                              align_corners=False).clamp(0, 1)
    return image


def invert(
    model: Backbone,
    image: Tensor,
    layer: str,
    *,
    steps: int = 200,
    tv_weight: float = DEFAULT_TV_WEIGHT,
    jitter: int = 0,
    size: int | tuple[int, int] | None = None,
    seed: int = 0,
    optimizer: str = "adam",
    lr: float | None = None,
    preview_every: int = 20,
    progress: bool | None = None,
    on_progress: Progress | None = None,
) -> Inversion:
    """Reconstruct ``image`` from its activation at ``layer``, starting from seeded noise (Mahendran & Vedaldi).

    Loss: ||Φ(x) − Φ0||² / ||Φ0||² + ``tv_weight`` · TV(x) (mean squared neighbour differences). ``size``
    resizes the image first (an int sets the longer side). ``optimizer``: ``"adam"`` (lr 0.05, the default)
    or ``"lbfgs"`` (lr 1), through :class:`artlab.optimize.ImageOptimizer`. Measured (EfficientNet-Lite0,
    two 64 px sample-corpus pictures, 60 steps): at the stem Adam reached a pixel MSE of 0.007-0.010 against
    L-BFGS's 0.019, in less time; at stage3/stage5 the two were level. ``jitter``: random circular shift
    (px) of the image before each forward pass (Adam only: L-BFGS's line search needs one fixed objective,
    so ``jitter > 0`` with it is refused), a regulariser against the aliasing of strided layers at deep
    layers; it blurs shallow ones (stem MSE 0.011-0.031 with jitter 2), hence the default 0. The model's
    device is used; reproducible for a seed.
    """
    if not isinstance(model, Backbone):
        raise TypeError(f"model must be an artlab Backbone, got {type(model).__name__}")
    layer_name = model.resolve_layer(layer)  # ValueError naming the valid layers
    optimizer, lr = check_optimizer(optimizer, lr, {"lbfgs": 1.0, "adam": 0.05})
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if isinstance(preview_every, bool) or not isinstance(preview_every, int) or preview_every < 0:
        raise ValueError(f"preview_every must be an int >= 0, got {preview_every!r}")
    if not (isinstance(tv_weight, (int, float)) and math.isfinite(tv_weight) and tv_weight >= 0):
        raise ValueError(f"tv_weight must be a finite number >= 0, got {tv_weight!r}")
    if isinstance(jitter, bool) or not isinstance(jitter, int) or jitter < 0:
        raise ValueError(f"jitter must be an int >= 0, got {jitter!r}")
    if jitter and optimizer == "lbfgs":
        raise ValueError("jitter needs optimizer='adam': L-BFGS's line search needs one fixed objective "
                         "(use jitter=0 or None with 'lbfgs')")
    dev = model_device(model)
    image = _one_image(image, size).to(dev)
    with torch.no_grad():
        target = model(image, [layer_name])[layer_name].detach()
    norm = target.square().sum().clamp_min(1e-12)
    generator = torch.Generator().manual_seed(int(seed))
    start = torch.rand(image.shape, generator=generator)
    shifts = [tuple(int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=generator))
              for _ in range(steps)] if jitter else []
    state: dict = {"shift": (0, 0)}
    tau = float(tv_weight)

    def objective(x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        dy, dx = state["shift"]
        # departure: the paper's jitter crops; a circular roll keeps the size (the target's map size)
        shifted = torch.roll(x, shifts=(dy, dx), dims=(-2, -1)) if (dy or dx) else x
        feats = model(shifted, [layer_name])[layer_name]
        content = (feats - target).square().sum() / norm
        tv = _tv(x)
        return content + tau * tv, {"content": content, "tv": tv}

    optim = ImageOptimizer(objective, start.to(dev), optimizer=optimizer, lr=lr)
    return Inversion(optim, layer_name, steps, preview_every, shifts, state, progress, on_progress)


def inversion_strip(model: Backbone, image: Tensor, layers: Sequence[str] | None = None, *,
                    progress: bool | None = None, on_progress: Progress | None = None, **kw) -> dict[str, Tensor]:
    """Invert ``image`` at each of ``layers`` (default ``model.spec.inspect_layers``, shallow to deep).

    Returns {layer: best reconstruction (1×3×H×W CPU)}; ``kw`` go to :func:`invert`. ``on_progress``
    is called once per finished layer.
    """
    layers = list(layers) if layers is not None else list(model.spec.inspect_layers)
    if not layers:
        layers = list(model.layer_names)
    for layer in layers:
        model.resolve_layer(layer)
    out: dict[str, Tensor] = {}
    bar = progress_bar(len(layers), "inversion strip", enabled=progress, unit="layer")
    try:
        for i, layer in enumerate(layers):
            run = invert(model, image, layer, progress=False, **kw).run()  # the strip's bar counts layers
            best = run.best_image
            assert best is not None
            out[layer] = best
            bar.update(1)
            if on_progress is not None:
                on_progress("inversion strip", i + 1, len(layers))
    finally:
        bar.close()
    return out


def plot_inversion_strip(images_by_name: Mapping[str, Tensor], strips: Mapping[str, Mapping[str, Tensor]],
                         model: Backbone, *, size: float = 1.8) -> ArtlabFigure:
    """One row per image (e.g. "painting", "photo"): the original, then its reconstruction at each layer."""
    names = [name for name in images_by_name if name in strips]
    if not names:
        raise ValueError(f"no strip for any of {list(images_by_name)}; strips has {list(strips)}")
    layers: list[str] = list(dict.fromkeys(layer for name in names for layer in strips[name]))
    cols = 1 + len(layers)
    fig = ArtlabFigure(figsize=(size * cols, size * len(names) + 0.8))
    axes = fig.subplots(len(names), cols, squeeze=False)
    for r, name in enumerate(names):
        row = [("original", images_by_name[name])] + [(layer, strips[name].get(layer)) for layer in layers]
        for c, (caption, image) in enumerate(row):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if image is not None:
                ax.imshow(to_numpy_hwc(ensure_image_batch(image)[:1].detach().cpu())[0])
            if r == 0:
                ax.set_title(caption, fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.suptitle("What each layer keeps: images reconstructed from their activations (shallow → deep)", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return stamp_model(fig, model)
