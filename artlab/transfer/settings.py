"""The settings of a style transfer: :class:`TransferSettings`, every knob with a default that works.

One dataclass holds the loss weights (α, β or their ratio, τ, γ, per-layer w_l),
layers, size, steps, optimiser, start image, colour mode, coarse-to-fine scales,
panorama mode and quick start; :meth:`TransferSettings.validate` refuses a bad value
with what to change, before any work starts. The mode constants say what the string
settings accept.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from artlab.gram import output_size
from artlab.images import ensure_image_batch
from artlab.models import Backbone
from artlab.optimize import check_optimizer

__all__ = [
    "COLOR_MODES",
    "INIT_MODES",
    "LOSS_MODES",
    "DEFAULT_LR",
    "TransferSettings",
    "check_number",
    "check_count",
    "resolve_settings",
]

#: ``color``: keep the style's colours, transfer luminance only, or recolour the style like the content first.
COLOR_MODES = ("none", "luminance", "histogram")
#: ``init`` (besides an image tensor): start from the content, from seeded noise, or from the style.
INIT_MODES = ("content", "noise", "style")
#: ``loss``: Gram matrices only (Gatys), or Grams plus per-layer feature histograms (Risser et al.).
LOSS_MODES = ("gram", "gram+histogram")
#: The step size ``lr=None`` means, per optimiser (pixel units in [0, 1] for Adam).
DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02}


def check_number(value: object, name: str, *, positive: bool = False) -> float:
    """``value`` as a float; ValueError naming ``name`` unless it is a finite number >= 0 (> 0 if ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return value


def check_count(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (bools refused); ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass
class TransferSettings:
    """Every knob of a style transfer, with defaults that work (see :func:`stylize`).

    Loss weights: ``content_weight`` α, ``style_weight`` β (their ratio β/α is what
    matters: :meth:`from_ratio`, :attr:`ratio`), ``tv_weight`` τ and, with
    ``loss="gram+histogram"``, ``histogram_weight`` γ.
    """

    #: α, weight of the content loss mean((F_l(x) − F_l(content))²) at ``content_layer``.
    content_weight: float = 1.0
    #: β, weight of the style loss Σ_l w_l mean((G_l(x) − G_l(style))²) (Grams normalised by C·H·W).
    #: None: the network's default (``model.spec.style_weight``: VGG 1e5, EfficientNet-Lite 1e4), because
    #: Gram magnitudes differ between networks; :meth:`for_model` fills it in.
    style_weight: float | None = None
    #: τ, weight of the total variation mean((Δx)² + (Δy)²) of the pixels (0: off, as in Gatys et al.).
    tv_weight: float = 0.0
    #: Layers whose Grams are matched; None: the model's style layers (VGG: relu1_1 … relu5_1).
    style_layers: tuple[str, ...] | None = None
    #: {layer: w_l} for some style layers; layers not named keep the default 1/len(style_layers).
    layer_weights: Mapping[str, float] | None = None
    #: The content layer; None: the model's (VGG: relu4_2).
    content_layer: str | None = None
    #: Output size: an int sets the longer side (content's aspect kept), or (height, width); None: content's.
    size: int | tuple[int, int] | None = 256
    #: Optimiser steps in all (split evenly across ``scales`` unless ``scale_steps`` says otherwise).
    steps: int = 200
    #: "lbfgs" (strong Wolfe line search, restarts) or "adam".
    optimizer: str = "lbfgs"
    #: Step size; None: 1.0 for L-BFGS, 0.02 for Adam (pixel units in [0, 1]).
    lr: float | None = None
    #: Start image: "content", "noise" (seeded uniform), "style" (the heaviest style, resized) or an image tensor.
    init: str | Tensor = "content"
    #: Seed of the noise init (a private torch.Generator; the global RNG is never touched).
    seed: int = 0
    #: Where to run; None: the model's device (the model is never moved).
    device: str | torch.device | None = None
    #: Yield a preview image every this many steps (0: only on the last step of each scale).
    preview_every: int = 10
    #: Weights of the style images (normalised to sum 1), e.g. (100, 45); None: equal.
    style_blend: tuple[float, ...] | None = None
    #: "none", "luminance" (transfer luminance only, keep the content's chroma) or "histogram" (recolour styles).
    color: str = "none"
    #: "gram" or "gram+histogram" (adds Risser et al.'s histogram loss at ``histogram_layers``).
    loss: str = "gram"
    #: γ, weight of the histogram loss mean((F_l(x) − R_l(F_l(x)))²) (R: histogram-matched features).
    histogram_weight: float = 1.0
    #: Layers of the histogram loss; None: the first and fourth style layers (VGG: relu1_1, relu4_1, as Risser).
    histogram_layers: tuple[str, ...] | None = None
    #: Coarse-to-fine: optimise at size/2^(scales−1) first, upsample, continue … up to the full size.
    scales: int = 1
    #: Steps per scale, coarse to fine (len == scales); overrides ``steps`` when given.
    scale_steps: tuple[int, ...] | None = None
    #: 360° equirectangular panorama: the left and right edges wrap around (circular padding; exact when
    #: the width is a multiple of the deepest layer's stride, 16 for relu5_1, so pooling windows tile the circle).
    panorama: bool = False
    #: Quick start: first take this many Adam steps at ``quick_size`` px (one step there costs a fraction of
    #: a full-size L-BFGS step), so a first preview comes within about a second on a laptop CPU; the run then
    #: goes on at full size from that result (with init="content": the change the quick start made, upsampled,
    #: added to the sharp full-size content, so no detail is lost). These steps come on top of ``steps``
    #: (:attr:`TransferStep.quick`); 0: off; skipped when the coarsest scale is no larger than ``quick_size``.
    quick_start: int = 0
    #: Longer side (px) of the quick start's image.
    quick_size: int = 128

    @classmethod
    def from_ratio(cls, log10_ratio: float, **changes: object) -> TransferSettings:
        """Settings with content_weight 1 and style_weight 10**log10_ratio (the lesson's slider)."""
        if isinstance(log10_ratio, bool) or not isinstance(log10_ratio, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(log10_ratio)):
            raise ValueError(f"log10_ratio must be a finite number (e.g. 4 for β/α = 1e4), got {log10_ratio!r}")
        return cls(content_weight=1.0, style_weight=10.0 ** float(log10_ratio), **changes).validate()

    @property
    def ratio(self) -> float:
        """β/α, the style-to-content weight ratio (inf when content_weight is 0; nan while β is the
        network's default, not yet known: see :meth:`for_model`)."""
        if self.style_weight is None:
            return math.nan
        return self.style_weight / self.content_weight if self.content_weight else math.inf

    def for_model(self, model: Backbone) -> TransferSettings:
        """These settings with the network's defaults filled in (``style_weight`` None -> the model's β)."""
        if self.style_weight is not None:
            return self
        return dataclasses.replace(self, style_weight=float(model.spec.style_weight))

    @property
    def total_steps(self) -> int:
        """Steps over all scales."""
        return sum(self.steps_per_scale())

    def steps_per_scale(self) -> list[int]:
        """Steps at each scale, coarse to fine: ``scale_steps``, or ``steps`` split evenly (rest to the finest)."""
        if self.scale_steps is not None:
            return [int(s) for s in self.scale_steps]
        base = self.steps // self.scales
        return [base] * (self.scales - 1) + [self.steps - base * (self.scales - 1)]

    def summary(self) -> dict[str, object]:
        """The settings in short, JSON-ready form, for a saved result's metadata (``artlab:settings``).

        Always the loss weights, size, steps and optimiser; any other field only when it
        differs from its default. An image ``init`` (a warm start) is written as "image",
        tuples as lists, a device as its name.
        """
        always = ("content_weight", "style_weight", "size", "steps", "optimizer")
        defaults = TransferSettings()
        shown: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                shown[f.name] = "image"
            elif f.name in always or value != getattr(defaults, f.name):
                shown[f.name] = _plain(value)
        return shown

    def replace(self, **changes: object) -> TransferSettings:
        """A validated copy with some fields changed (unknown names are refused)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unknown setting(s) {unknown}; valid: {[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **changes).validate()

    def check_objective(self, *, style_on: bool) -> None:
        """Raise ValueError when every term of the loss is switched off (nothing to optimise).

        ``style_on``: whether the style term counts, i.e. ``style_weight`` > 0 and at least
        one style layer has a weight > 0 (only known once the model resolves the layers).
        """
        hist_on = self.loss != "gram" and self.histogram_weight > 0
        if self.content_weight > 0 or style_on or self.tv_weight > 0 or hist_on:
            return
        if self.style_weight is None or self.style_weight > 0:
            raise ValueError("nothing to optimise: content_weight is 0 and every style layer weight is 0; "
                             "raise at least one style layer weight above 0 (layer_weights)")
        raise ValueError(
            "nothing to optimise: content_weight, style_weight and tv_weight are all 0"
            + (" (and histogram_weight)" if self.loss != "gram" else "")
            + "; set style_weight > 0 (e.g. 1e5) and content_weight > 0 (e.g. 1)"
        )

    def validate(self) -> TransferSettings:
        """Check every field; raise ValueError saying what is wrong and what to do. Returns self."""
        for name in ("content_weight", "tv_weight", "histogram_weight"):
            check_number(getattr(self, name), name)
        sw = 1.0 if self.style_weight is None else check_number(self.style_weight, "style_weight")
        if self.loss not in LOSS_MODES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(map(repr, LOSS_MODES))}")
        # without a model, per-layer weights can only be judged when every style layer is named
        named = self.layer_weights or {}
        layers_off = self.style_layers is not None and all(
            layer in named and check_number(named[layer], f"layer_weights[{layer!r}]") == 0
            for layer in self.style_layers)
        self.check_objective(style_on=sw > 0 and not layers_off)
        check_optimizer(self.optimizer, self.lr, DEFAULT_LR)
        if isinstance(self.init, Tensor):
            ensure_image_batch(self.init, "init")
        elif self.init not in INIT_MODES:
            raise ValueError(f"unknown init {self.init!r}; choose one of {', '.join(map(repr, INIT_MODES))} "
                             "or pass an image tensor (a warm start)")
        if self.color not in COLOR_MODES:
            raise ValueError(f"unknown color {self.color!r}; choose one of {', '.join(map(repr, COLOR_MODES))}")
        check_count(self.steps, "steps")
        check_count(self.scales, "scales")
        check_count(self.preview_every, "preview_every", 0)
        if self.scale_steps is not None:
            steps = list(self.scale_steps)
            if len(steps) != self.scales:
                raise ValueError(f"scale_steps has {len(steps)} entries but scales={self.scales}; give one "
                                 "step count per scale (coarse to fine) or drop scale_steps")
            for s in steps:
                check_count(s, "scale_steps entries")
        elif self.steps < self.scales:
            raise ValueError(f"steps={self.steps} cannot be split over scales={self.scales}; use steps >= scales")
        if self.size is not None:
            output_size(self.size, (1, 1))  # raises for a bad size
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.style_blend is not None:
            blend = [check_number(b, "style_blend weights") for b in self.style_blend]
            if not blend or sum(blend) <= 0:
                raise ValueError(f"style_blend needs at least one weight > 0, got {self.style_blend!r}")
        if self.layer_weights is not None:
            for layer, weight in self.layer_weights.items():
                check_number(weight, f"layer_weights[{layer!r}]")
        if not isinstance(self.panorama, bool):
            raise ValueError(f"panorama must be True or False, got {self.panorama!r}")
        check_count(self.quick_start, "quick_start", 0)
        check_count(self.quick_size, "quick_size")
        return self


def _plain(value: object) -> object:
    """A settings value as JSON knows it: tuples as lists, mappings as dicts, devices and others as text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def resolve_settings(settings: TransferSettings | None, overrides: Mapping[str, object]) -> TransferSettings:
    """The validated settings of a call: ``settings`` (default :class:`TransferSettings`) with ``overrides`` applied.

    Every entry point takes ``settings`` plus single-field ``**overrides``
    (``stylize(c, s, steps=50)``); unknown fields and bad values raise here, before any work.
    """
    if settings is None:
        settings = TransferSettings()
    elif not isinstance(settings, TransferSettings):
        raise TypeError(f"settings must be a TransferSettings, got {type(settings).__name__}")
    return settings.replace(**overrides) if overrides else settings.validate()
