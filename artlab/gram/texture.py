"""What a Gram keeps: texture synthesis from Grams alone (Gatys, Ecker & Bethge 2015).

:func:`synthesize_texture` optimises an image from seeded noise until its Grams match a
target's, one :class:`SynthesisStep` per optimiser step (a :class:`artlab.runs.Run`, so
widgets, scripts and tests drive the same loop and can stop it); :func:`texture_from`
runs it to the end, with a progress bar in notebooks and terminals. The loop is
:class:`artlab.optimize.ImageOptimizer` (shared with style transfer), with the same memory
check before anything large is computed (:class:`TextureTooLarge`). :func:`total_variation`
is the smoothness prior both use.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from artlab.gram.checks import (
    check_image_size,
    output_size,
    positive_int,
    single_image,
    style_layers,
)
from artlab.gram.distance import style_layer_weights
from artlab.gram.matrices import GramSet, compute_grams, gram
from artlab.images import load_image, result_metadata, save_image
from artlab.models import Backbone, features
from artlab.optimize import (
    ImageOptimizer,
    OptimizationTooLarge,
    available_memory,
    check_memory,
    check_optimizer,
)
from artlab.optimize import estimate_memory as _estimate_memory
from artlab.runs import Run, drive

__all__ = [
    "SynthesisStep",
    "TextureSynthesis",
    "TextureTooLarge",
    "total_variation",
    "texture_loss",
    "synthesize_texture",
    "texture_from",
]


@dataclass
class SynthesisStep:
    """One step of :func:`synthesize_texture`.

    ``step`` counts from 0. ``loss`` and ``per_layer`` are the style loss of the
    image at the start of this step (what the optimiser evaluated). ``image`` is a
    preview (1×3×H×W, a detached CPU clone of the best image so far) on preview steps
    and on the last step, else None; ``best_loss`` is the loss of that best image.
    ``status`` is ``"ok"``, or ``"nonfinite"`` on the last step of a run stopped by a
    NaN/inf loss or gradient (the best image so far is kept).
    """

    step: int
    loss: float
    per_layer: dict[str, float]
    image: Tensor | None
    best_loss: float
    status: str = "ok"


def total_variation(x: Tensor, *, wrap: bool = False) -> Tensor:
    """Mean squared difference of vertical and horizontal neighbours (``wrap``: with the left/right
    wrap-around pair, for 360° panoramas). The smoothness prior of style transfer's τ term."""
    dy = (x[..., 1:, :] - x[..., :-1, :]).square().mean()
    dx = (torch.roll(x, -1, dims=-1) - x) if wrap else (x[..., 1:] - x[..., :-1])
    return dy + dx.square().mean()


def texture_loss(model: Backbone, x: Tensor, targets: Mapping[str, Tensor], weights: Mapping[str, float],
                 normalize: str, tv_weight: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """Σ_l w_l mean((G_l(x) − target_l)²) (+ τ·TV(x)) and its per-layer terms (differentiable in x).

    The objective :func:`synthesize_texture` optimises; ``targets`` maps layer -> the
    target's C×C Gram (normalised with ``normalize``). Public so that benchmarks time the
    very loss the synthesis uses.
    """
    feats = features(model, x, list(targets))
    terms = {layer: (gram(feats[layer], normalize)[0] - target).square().mean() for layer, target in targets.items()}
    loss = sum(weights[layer] * term for layer, term in terms.items())
    if tv_weight > 0:
        loss = loss + tv_weight * total_variation(x)
    return loss, terms


class TextureSynthesis(Run[SynthesisStep]):
    """The run :func:`synthesize_texture` returns (an :class:`artlab.runs.Run`): iterate it for its steps.

    Besides iterating, it exposes ``best_image`` (1×3×H×W CPU tensor, None before the
    first step) and ``best_loss``, so a consumer that stops early (``break``, then
    ``close()``) still has the best image so far.
    """

    def __init__(self, optimizer: ImageOptimizer, steps: int, preview_every: int, *, model_label: str = "",
                 settings: Mapping[str, object] | None = None) -> None:
        self._optimizer = optimizer
        self.steps = steps
        self.preview_every = preview_every
        self.model_label = model_label  # which network made the texture: saved with it (metadata)
        self.settings = dict(settings or {})
        self.steps_done = 0

    def _steps(self) -> Iterator[SynthesisStep]:
        optim, steps, preview_every = self._optimizer, self.steps, self.preview_every
        for step in range(steps):
            update = optim.step()
            last = step == steps - 1 or update.status != "ok"
            if step == steps - 1 and update.status == "ok":
                optim.evaluate()  # the final image has not been scored yet; it may be the best
            preview = last or (preview_every > 0 and (step + 1) % preview_every == 0)
            image = optim.best_image if preview else None
            self.steps_done = step + 1
            yield SynthesisStep(step, update.loss, update.terms, image, optim.best_loss, update.status)
            if update.status != "ok":
                return

    @property
    def best_image(self) -> Tensor | None:
        """The lowest-loss image so far (1×3×H×W CPU), None before the first step."""
        return self._optimizer.best_image

    @property
    def best_loss(self) -> float:
        """The loss of :attr:`best_image` (inf before the first step)."""
        return self._optimizer.best_loss

    def result(self, *, progress: bool | None = None) -> Tensor:
        """Take the remaining steps and return the best image (1×3×H×W CPU).

        ``progress``: a bar with the steps, an ETA and the current loss; None: on in
        notebooks and terminals (:func:`artlab.runs.wants_progress`), False: silent.
        """
        drive(self, total=self.steps, done=self.steps_done, desc="texture synthesis", progress=progress,
              postfix=lambda step: {"loss": f"{step.loss:.4g}"})
        best = self.best_image
        if best is None:
            raise RuntimeError("the synthesis was closed before its first step; nothing was computed")
        return best

    @property
    def metadata(self) -> dict[str, str]:
        """What a saved texture says about how it was made: the network's label, "texture", the settings."""
        return result_metadata(self.model_label or "unknown network", kind="texture", settings=self.settings)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save :attr:`best_image` with the network's label in its metadata (see :func:`artlab.images.save_image`)."""
        best = self.best_image
        if best is None:
            raise ValueError("nothing to save yet: iterate the synthesis (or call result()) first")
        return save_image(best, path, metadata=self.metadata)


class TextureTooLarge(OptimizationTooLarge):
    """A texture synthesis would not fit in memory; ``largest_size`` is the longest side that would."""


def _check_texture_memory(model: Backbone, size: tuple[int, int], optimizer: str, layers: Sequence[str], *,
                          with_target: bool, device: torch.device) -> int:
    """Estimated bytes of a synthesis at ``size``; TextureTooLarge (naming the size that fits) if it would not fit.

    The same estimate as style transfer (:func:`artlab.optimize.estimate_memory`): the
    optimisation's forward and backward pass, the optimiser's state, the image, and for an
    image target its resized copy and the forward pass that takes its Grams (at ``size``).
    """
    def needed_at(shape: tuple[int, int]) -> int:
        h, w = shape
        return _estimate_memory(model, shape, optimizer, layers=layers, targets=[shape] if with_target else [],
                                held=(2 if with_target else 1) * h * w)

    return check_memory(needed_at, size, what=f"a texture synthesis at {size[0]}×{size[1]} px with {model.name}",
                        device=device, available=available_memory(device), error=TextureTooLarge, optimizer=optimizer)


def synthesize_texture(
    model: Backbone,
    target: GramSet | Tensor,
    layers: Sequence[str] | None = None,
    *,
    size: int | tuple[int, int] | None = None,
    steps: int = 200,
    optimizer: str = "lbfgs",
    lr: float | None = None,
    seed: int = 0,
    preview_every: int = 10,
    init: Tensor | None = None,
    device: str | torch.device | None = None,
    layer_weights: Mapping[str, float] | None = None,
    tv_weight: float | None = None,
) -> TextureSynthesis:
    """Gatys texture synthesis: optimise an image from seeded noise until its Grams match the target's.

    target: a :class:`GramSet` (from the same model; ``layers`` default to its layers
    and its normalisation is used) or an image (its Grams are computed at ``size``,
    default its own size, at ``layers``, default the model's style layers).
    The output has ``size`` (an int sets the longer side; default the target image's
    size, or ``init``'s). Loss: Σ_l w_l mean((G_l(x) − G_l(target))²), w_l from
    ``layer_weights`` (one per layer) or the network's default (1/len(layers) for VGG;
    see :func:`style_distance` for how this relates to the paper's E_l), plus ``tv_weight`` τ
    times the total variation of the image (None: the network's ``spec.texture_tv_weight``,
    0 for VGG as in the paper; departure for EfficientNet-Lite, whose first layer has stride
    2 and so leaves pixel-level high frequencies unconstrained: from noise they stay as
    rainbow speckle unless a little smoothness is asked for).

    optimizer:
      * ``"lbfgs"`` (default; lr default 1): ``torch.optim.LBFGS`` with
        ``max_iter=1``, so each yielded step is one L-BFGS iteration, with a strong
        Wolfe line search (up to 20 trials) and a restart from steepest descent
        whenever a step makes no progress. Measured (VGG-19 random init, 96 px
        painting, 30 steps): the loss fell to 3.9e-4× its start (0.57× when the line
        search had a single trial, torch's default budget for ``max_iter=1``). A step
        costs the line search's forward/backward passes (often one: the step's
        starting evaluation reuses the previous line search's last one).
      * ``"adam"`` (lr default 0.05 in [0, 1] pixel units): one evaluation per step.

    The loop is :class:`artlab.optimize.ImageOptimizer` (shared with style transfer);
    a NaN/inf loss or gradient stops the run with a step of ``status="nonfinite"``.
    Before anything large is computed (the target's Grams included), the memory is
    estimated as for style transfer (:func:`artlab.optimize.estimate_memory`); a size that
    would not fit raises :class:`TextureTooLarge` naming the largest size that would.

    Departures from the paper, both choices of this implementation: Gatys et al. start
    from white noise and run L-BFGS on unconstrained pixels of the mean-subtracted
    network input; here the optimised pixels are artlab images in [0, 1] (the model
    normalises them), started from uniform noise drawn with ``torch.Generator``
    seeded by ``seed`` (or from ``init``), and **clamped to [0, 1] after every step**
    so every preview is a valid image. The objective is divided by its first value:
    L-BFGS's curvature test (yᵀs > 1e-10) and tolerances are absolute, and the raw
    "gatys" losses are tiny; yielded losses are unscaled.

    Returns a :class:`TextureSynthesis` iterator: one :class:`SynthesisStep` per step;
    stop any time (``break``/``close()``). The best image so far is kept: every
    preview and the last step's ``image`` are the best image so far (the final image
    is evaluated once more after the last step so it can win), and the iterator's
    ``best_image`` holds it after an early stop. Deterministic for a seed (same
    device, threads and torch version). ``device`` must be the model's device (the
    default); the model is never moved.
    """
    if not isinstance(model, Backbone):
        raise TypeError(f"model must be an artlab Backbone, got {type(model).__name__}")
    model_device = model.mean.device
    if device is not None and torch.device(device) != model_device:
        # torch.device("cuda") and "cuda:0" differ as objects; compare the type and index that matter
        want = torch.device(device)
        if want.type != model_device.type or (want.index is not None and want.index != model_device.index):
            raise ValueError(f"device={want} but the model is on {model_device}; move the model with "
                             f"model.to({str(want)!r}) first or leave device=None")
    steps = positive_int(steps, "steps")
    optimizer, lr = check_optimizer(optimizer, lr, {"lbfgs": 1.0, "adam": 0.05})
    if isinstance(preview_every, bool) or not isinstance(preview_every, (int, np.integer)) or preview_every < 0:
        raise ValueError(f"preview_every must be an integer >= 0 (0: only the last step), got {preview_every!r}")

    if isinstance(target, GramSet):
        if target.model_name != model.name:
            raise ValueError(f"the target's Grams come from {target.model_name} but model is {model.name}: "
                             "compute the target's Grams with the same model")
        layers = list(layers) if layers is not None else target.layers()
        missing = [layer for layer in layers if layer not in target.grams]
        if missing:
            raise ValueError(f"the target GramSet has no Grams at {missing} (it has {target.layers()}); "
                             "compute them with compute_grams(model, image, layers)")
        layers = style_layers(model, layers)
        target_set, like = target, target.image_size
    elif isinstance(target, Tensor):
        image = single_image(target, "target")
        like = (int(image.shape[-2]), int(image.shape[-1]))
        if size is not None:
            like = output_size(size, like)
        layers = style_layers(model, layers)
        target_set = None  # computed below, once the memory check has passed
    else:
        raise TypeError(f"target must be a GramSet or an image tensor, got {type(target).__name__}")

    if init is not None:
        init = single_image(init, "init")
        init_size = (int(init.shape[-2]), int(init.shape[-1]))
        out_size = output_size(size, like) if size is not None else init_size
        if out_size != init_size:
            raise ValueError(f"init is {init_size[0]}×{init_size[1]} px but size asks for "
                             f"{out_size[0]}×{out_size[1]}; resize init or drop size")
    else:
        out_size = output_size(size, like)
    check_image_size(model, out_size, layers)
    _check_texture_memory(model, out_size, optimizer, layers, with_target=target_set is None, device=model_device)
    if target_set is None:  # an image target: its Grams at the output's size
        target_set = compute_grams(model, image if like == tuple(image.shape[-2:]) else load_image(image, like), layers)
        layers = target_set.layers()

    targets = {layer: target_set.grams[layer].detach().to(model_device, torch.float32) for layer in layers}
    weights = style_layer_weights(layers, layer_weights, model)
    normalize = target_set.normalize
    if init is None:
        generator = torch.Generator().manual_seed(int(seed))
        start = torch.rand(1, 3, *out_size, generator=generator)
    else:
        start = init.detach().clone()

    tau = float(model.spec.texture_tv_weight if tv_weight is None else tv_weight)
    if not (math.isfinite(tau) and tau >= 0):
        raise ValueError(f"tv_weight must be a finite number >= 0, got {tv_weight!r}")

    def objective(x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return texture_loss(model, x, targets, weights, normalize, tau)

    optim = ImageOptimizer(objective, start.to(model_device), optimizer=optimizer, lr=lr)
    settings = {"layers": list(layers), "size": list(out_size), "steps": steps, "optimizer": optimizer,
                "seed": int(seed), "tv_weight": tau}
    return TextureSynthesis(optim, steps, preview_every, model_label=model.label, settings=settings)


def texture_from(model: Backbone, target: GramSet | Tensor, layers: Sequence[str] | None = None, *,
                 progress: bool | None = None, **kwargs) -> Tensor:
    """Run :func:`synthesize_texture` to the end and return the best image (1×3×H×W, CPU).

    ``kwargs`` are :func:`synthesize_texture`'s. ``progress``: a bar with the steps, an
    ETA and the current loss; None (default): on in notebooks and terminals, False: silent
    (:func:`artlab.runs.wants_progress`). To keep the network's label with the saved
    picture, use ``synthesis = synthesize_texture(...); synthesis.result(); synthesis.save("texture.png")``.
    """
    return synthesize_texture(model, target, layers, **kwargs).result(progress=progress)
