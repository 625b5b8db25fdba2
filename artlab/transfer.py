"""Neural style transfer (Gatys, Ecker & Bethge 2016) and the controls that came after it.

An image is optimised so that its deep features match a *content* image at one
layer (relu4_2 for VGG) and its Gram matrices match one or more *style* images at
several layers (relu1_1 … relu5_1):

    L(x) = α · E_content(x) + β · Σ_l w_l E_l(x) [+ γ · E_histogram(x)] [+ τ · TV(x)]

:func:`stylize` returns a :class:`StyleTransfer`, an iterator that yields one
:class:`TransferStep` per optimiser step (per-term and per-layer losses, a preview
every few steps), so a widget, a script and a test drive the same loop and can
stop it; :func:`transfer` runs it to the end. The optimisation loop itself (L-BFGS
with a strong Wolfe line search and restarts, or Adam; clamping; loss scaling; best
image; NaN detection) is :class:`artlab.optimize.ImageOptimizer`, shared with
:func:`artlab.gram.synthesize_texture`.

Controls (all in :class:`TransferSettings`):

* weights α, β (or their ratio), TV τ, per-layer weights w_l, layers, size, steps,
  optimiser, init (content, noise, style or an image: warm start), seed, device;
* several styles blended with weights (``style_blend``);
* colour preservation (Gatys et al. 2017, "Controlling perceptual factors"):
  luminance-only transfer, or the style's colours matched to the content first;
* a histogram loss on feature distributions (Risser, Wilmot & Barnes 2017) that
  curbs the washed-out and unstable results of Gram-only losses;
* coarse-to-fine optimisation over several scales (Gatys et al. 2017);
* panorama mode for 360° equirectangular images: horizontal wrap-around padding in
  every convolution and pooling (:func:`circular_padding`), so the left and right
  edges meet seamlessly (check with :func:`seam_error`).

Around it: a memory estimate before every run (:func:`estimate_memory`; too large
raises :class:`TransferTooLarge` naming the largest size that fits), automatic
style suggestions by deep-patch similarity (:func:`suggest_styles`), sequences and
videos with warm starts (:func:`stylize_frames`, :func:`stylize_video`), GIF/MP4
export (:func:`save_gif`, :func:`save_mp4`, :func:`progression_gif`) and the
content/style ratio figure of the lesson (:func:`plot_ratio_sweep`).

Departures from Gatys et al. 2016, each also commented where it happens: losses are
means instead of the paper's sums with factors ½ and 1/(4N²M²) (Grams normalised by
C·H·W, as :func:`artlab.gram.gram` explains); pixels are artlab images in [0, 1],
clamped after every step; the default init is the content image, not white noise;
the forward pass stops at the deepest layer the loss needs; target Grams are
computed once per scale; several styles are blended through one weighted target
Gram per layer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from artlab.gram import _check_image_size, _output_size, _style_layers, gram, total_variation
from artlab.images import ensure_image_batch, load_image, to_numpy_hwc
from artlab.models import Backbone, best_backbone, default_layer_weights, features, receptive_field
from artlab.optimize import (
    MEMORY_MARGIN,
    ImageOptimizer,
    OptimizationTooLarge,
    OptimizerStep,
    _deepest_layer,
    available_memory,
    check_memory,
    check_optimizer,
    largest_side,
)
from artlab.optimize import estimate_memory as _estimate

__all__ = [
    "COLOR_MODES",
    "INIT_MODES",
    "LOSS_MODES",
    "TransferSettings",
    "TransferStep",
    "StyleTransfer",
    "TransferTooLarge",
    "FrameResult",
    "stylize",
    "transfer",
    "estimate_memory",
    "available_memory",
    "largest_size",
    "circular_padding",
    "seam_error",
    "rgb_to_yiq",
    "yiq_to_rgb",
    "match_color",
    "match_luminance",
    "suggest_styles",
    "stylize_frames",
    "stylize_video",
    "save_gif",
    "save_mp4",
    "progression_gif",
    "plot_ratio_sweep",
]

#: ``color``: keep the style's colours, transfer luminance only, or recolour the style like the content first.
COLOR_MODES = ("none", "luminance", "histogram")
#: ``init`` (besides an image tensor): start from the content, from seeded noise, or from the style.
INIT_MODES = ("content", "noise", "style")
#: ``loss``: Gram matrices only (Gatys), or Grams plus per-layer feature histograms (Risser et al.).
LOSS_MODES = ("gram", "gram+histogram")

_DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02}
_NONFINITE = "nonfinite: stopped, kept last good image"
_MEMORY_MARGIN = MEMORY_MARGIN  # a run must fit in this fraction of the available memory


# --------------------------------------------------------------------------- settings


def _number(value: object, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return value


def _count(value: object, name: str, minimum: int = 1) -> int:
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
            _number(getattr(self, name), name)
        sw = 1.0 if self.style_weight is None else _number(self.style_weight, "style_weight")
        if self.loss not in LOSS_MODES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(map(repr, LOSS_MODES))}")
        # without a model, per-layer weights can only be judged when every style layer is named
        named = self.layer_weights or {}
        layers_off = self.style_layers is not None and all(
            layer in named and _number(named[layer], f"layer_weights[{layer!r}]") == 0 for layer in self.style_layers)
        self.check_objective(style_on=sw > 0 and not layers_off)
        check_optimizer(self.optimizer, self.lr, _DEFAULT_LR)
        if isinstance(self.init, Tensor):
            ensure_image_batch(self.init, "init")
        elif self.init not in INIT_MODES:
            raise ValueError(f"unknown init {self.init!r}; choose one of {', '.join(map(repr, INIT_MODES))} "
                             "or pass an image tensor (a warm start)")
        if self.color not in COLOR_MODES:
            raise ValueError(f"unknown color {self.color!r}; choose one of {', '.join(map(repr, COLOR_MODES))}")
        _count(self.steps, "steps")
        _count(self.scales, "scales")
        _count(self.preview_every, "preview_every", 0)
        if self.scale_steps is not None:
            steps = list(self.scale_steps)
            if len(steps) != self.scales:
                raise ValueError(f"scale_steps has {len(steps)} entries but scales={self.scales}; give one "
                                 "step count per scale (coarse to fine) or drop scale_steps")
            for s in steps:
                _count(s, "scale_steps entries")
        elif self.steps < self.scales:
            raise ValueError(f"steps={self.steps} cannot be split over scales={self.scales}; use steps >= scales")
        if self.size is not None:
            _output_size(self.size, (1, 1))  # raises for a bad size
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.style_blend is not None:
            blend = [_number(b, "style_blend weights") for b in self.style_blend]
            if not blend or sum(blend) <= 0:
                raise ValueError(f"style_blend needs at least one weight > 0, got {self.style_blend!r}")
        if self.layer_weights is not None:
            for layer, weight in self.layer_weights.items():
                _number(weight, f"layer_weights[{layer!r}]")
        if not isinstance(self.panorama, bool):
            raise ValueError(f"panorama must be True or False, got {self.panorama!r}")
        return self


# --------------------------------------------------------------------------- colour


# YIQ (NTSC): Y is luminance, I and Q carry the chroma. Gatys et al. 2017 use YIQ for luminance-only transfer.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ.double()).float()


def rgb_to_yiq(images: Tensor) -> Tensor:
    """N×3×H×W RGB in [0, 1] -> YIQ (Y in [0, 1]; I, Q signed chroma)."""
    return torch.einsum("ij,njhw->nihw", _RGB_TO_YIQ.to(images.device, images.dtype), images)


def yiq_to_rgb(yiq: Tensor) -> Tensor:
    """N×3×H×W YIQ -> RGB (not clamped: out-of-gamut colours fall outside [0, 1])."""
    return torch.einsum("ij,njhw->nihw", _YIQ_TO_RGB.to(yiq.device, yiq.dtype), yiq)


def match_luminance(style: Tensor, content: Tensor) -> Tensor:
    """The style's luminance (N×1×H×W), shifted and scaled to the content's luminance mean and std.

    Gatys et al. 2017 do this before luminance-only transfer, so the style's brightness
    and contrast do not overwrite the content's.
    """
    ys, yc = rgb_to_yiq(style)[:, :1], rgb_to_yiq(content)[:, :1]
    std_s = ys.std().clamp_min(1e-6)  # a flat style: keep it flat
    return ((ys - ys.mean()) * (yc.std() / std_s) + yc.mean()).clamp(0.0, 1.0)


def _sqrtm(cov: Tensor, power: float) -> Tensor:
    values, vectors = torch.linalg.eigh(cov)
    return vectors @ torch.diag(values.clamp_min(1e-5) ** power) @ vectors.T


def match_color(style: Tensor, content: Tensor) -> Tensor:
    """The style recoloured so its RGB mean and covariance are the content's (1×3×H×W in [0, 1]).

    The linear colour transfer of Gatys et al. 2017 ("colour histogram matching",
    after Hertzmann's Image Analogies), with symmetric matrix square roots:
    x' = Σ_c^½ Σ_s^−½ (x − μ_s) + μ_c. A grayscale style (rank-one covariance) is
    regularised (eigenvalues floored at 1e-5) and simply takes the content's palette
    along its luminance axis.
    """
    s = ensure_image_batch(style, "style").double()
    c = ensure_image_batch(content, "content").double()
    fs, fc = s.flatten(2)[0], c.flatten(2)[0]  # 3 × pixels
    mu_s, mu_c = fs.mean(1, keepdim=True), fc.mean(1, keepdim=True)
    cov_s = torch.cov(fs) + 1e-6 * torch.eye(3, dtype=fs.dtype, device=fs.device)
    cov_c = torch.cov(fc) + 1e-6 * torch.eye(3, dtype=fc.dtype, device=fc.device)
    a = _sqrtm(cov_c, 0.5) @ _sqrtm(cov_s, -0.5)
    out = (a @ (fs - mu_s) + mu_c).reshape(s.shape)
    return out.clamp(0.0, 1.0).to(style.dtype if style.is_floating_point() else torch.float32)


# --------------------------------------------------------------------------- panorama


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[-1]))


def _wrap_pad(module: nn.Module, args: tuple, *, pad: tuple[int, int, int, int], value: float) -> tuple:
    left, right, top, bottom = pad
    x = F.pad(args[0], (left, right, 0, 0), mode="circular") if left or right else args[0]
    if top or bottom:
        x = F.pad(x, (0, 0, top, bottom), value=value)
    return (x, *args[1:])


@contextlib.contextmanager
def circular_padding(model: Backbone) -> Iterator[Backbone]:
    """Within the block, every padded Conv2d / pooling of ``model`` wraps around horizontally.

    For 360° equirectangular panoramas, whose left and right edges are neighbours:
    each padded layer gets its padding set to 0 and a forward pre-hook that pads the
    input itself, circularly along the width and with zeros along the height (with
    −inf for max pooling, which is how max pooling pads). Explicit ``ZeroPad2d`` layers
    (EfficientNet's asymmetric "SAME" padding) wrap the same way. So a unit at the left edge
    sees the right edge as its neighbour, as it would in the middle of a wider image.
    Everything is restored on exit, also when an error is raised inside the block.
    Average pooling with ``count_include_pad=False`` is padded with zeros vertically
    (an approximation at the top and bottom rows); VGG and ResNet do not use it.
    The model is changed in place while the block runs: do not share it with another
    thread meanwhile.
    """
    changed: list[tuple[nn.Module, object]] = []
    handles = []
    try:
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                if isinstance(module.padding, str) or module.padding_mode != "zeros":
                    raise ValueError(f"circular_padding supports zero-padded convolutions with numeric padding, "
                                     f"got padding={module.padding!r}, padding_mode={module.padding_mode!r}")
                ph, pw = _pair(module.padding)
                if ph or pw:
                    changed.append((module, module.padding))
                    module.padding = (0, 0)
                    hook = partial(_wrap_pad, pad=(pw, pw, ph, ph), value=0.0)
                    handles.append(module.register_forward_pre_hook(hook))
            elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
                ph, pw = _pair(module.padding)
                if ph or pw:
                    value = -math.inf if isinstance(module, nn.MaxPool2d) else 0.0
                    changed.append((module, module.padding))
                    module.padding = 0
                    hook = partial(_wrap_pad, pad=(pw, pw, ph, ph), value=value)
                    handles.append(module.register_forward_pre_hook(hook))
            elif isinstance(module, nn.ZeroPad2d):
                # EfficientNet's TensorFlow-"SAME" padding (asymmetric: the odd pixel right/bottom)
                left, right, top, bottom = module.padding
                if left or right or top or bottom:
                    changed.append((module, module.padding))
                    module.padding = (0, 0, 0, 0)
                    hook = partial(_wrap_pad, pad=(left, right, top, bottom), value=0.0)
                    handles.append(module.register_forward_pre_hook(hook))
        yield model
    finally:
        for handle in handles:
            handle.remove()
        for module, padding in reversed(changed):
            module.padding = padding


def seam_error(image: Tensor) -> float:
    """How visible the left/right seam of a panorama is: ≈ 1 seamless, larger for a seam.

    Mean absolute difference between the leftmost and rightmost columns, relative to
    the mean absolute difference between adjacent columns inside the image. When the
    image wraps around seamlessly, its last and first columns differ like any two
    neighbours (ratio ≈ 1). A constant image gives 0.
    """
    x = ensure_image_batch(image).detach().double()
    if x.shape[-1] < 2:
        raise ValueError(f"seam_error needs an image at least 2 px wide, got {tuple(x.shape[-2:])}")
    seam = float((x[..., 0] - x[..., -1]).abs().mean())
    adjacent = float((x[..., 1:] - x[..., :-1]).abs().mean())
    if adjacent == 0:
        return 0.0 if seam == 0 else math.inf
    return seam / adjacent


# --------------------------------------------------------------------------- memory


class TransferTooLarge(OptimizationTooLarge):
    """A style transfer would not fit in memory; ``largest_size`` is the longest side that would.

    ``largest_size`` is None when no size fits, or when a style image is the problem (a
    very elongated one is enlarged until the deepest layer sees it): the message names it.
    """


def _style_shape(style: tuple[int, int], long_side: int, stride: int) -> tuple[int, int]:
    """The (h, w) a style of shape ``style`` is resized to for an output whose longer side is
    ``long_side``: that longer side, its own aspect kept, enlarged until its shorter side
    reaches the deepest layer's ``stride`` (as :meth:`StyleTransfer._style_at` does)."""
    h, w = int(style[0]), int(style[1])
    long_side = max(long_side, math.ceil(stride * max(h, w) / min(h, w)))
    scale = long_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def _stride(model: Backbone, layers: Sequence[str]) -> int:
    try:
        return receptive_field(model, _deepest_layer(model, layers))[1]
    except ValueError:
        return 1


def _default_layers(model: Backbone) -> list[str]:
    return [*model.spec.style_layers, *([model.spec.content_layer] if model.spec.content_layer else [])]


def _needed_layers(model: Backbone, settings: TransferSettings) -> tuple[list[str], str, list[str]]:
    """(style layers, content layer, histogram layers) of a run, validated against the model."""
    style = _style_layers(model, settings.style_layers)
    content = settings.content_layer or model.spec.content_layer
    if content is None:
        raise ValueError(f"{model.name} has no default content layer; pass content_layer=...")
    content = model.resolve_layer(content)
    hist: list[str] = []
    if settings.loss == "gram+histogram":
        if settings.histogram_layers is None:
            hist = [style[0]] + ([style[3]] if len(style) > 3 else [])  # Risser et al.: relu1_1 and relu4_1
        else:
            hist = _style_layers(model, settings.histogram_layers)
    return style, content, hist


def estimate_memory(model: Backbone, size: int | tuple[int, int], n_styles: int = 1, optimizer: str = "lbfgs",
                    *, layers: Sequence[str] | None = None, history_size: int = 50,
                    styles: Sequence[tuple[int, int]] | None = None) -> int:
    """Bytes a style transfer at ``size`` (an int: a square of that side; or (h, w)) is expected to need.

    The one estimate of every image optimisation, :func:`artlab.optimize.estimate_memory`
    (activations of the forward and backward pass up to the deepest of ``layers``, default
    the model's style and content layers; optimiser state; images held), with the images
    of a style transfer: the content (and its colour copy) and, per style, the style and
    its resized copy, at least two output-sized images each.

    ``styles``: the (height, width) of each style image as given (then ``n_styles`` is
    their number). Each is resized to the output's longer side, and a very elongated one
    further, until its shorter side reaches the deepest layer's stride (so that layer has
    a feature map): its target forward pass at that size is counted too, so a 1×100000
    strip, enlarged to 16×1,600,000 px, is refused before anything is allocated.
    Without ``styles`` each style counts as output-sized.
    """
    if not isinstance(model, Backbone):
        raise TypeError(f"model must be an artlab Backbone, got {type(model).__name__}")
    h, w = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    layers = list(layers) if layers is not None else _default_layers(model)
    targets: list[tuple[int, int]] = []
    if styles is None:
        held = (2 + 2 * _count(n_styles, "n_styles")) * h * w  # content (+ colour copy) and styles (+ resized)
    else:
        stride = _stride(model, layers)
        held = 2 * h * w
        for shape in styles:
            resized = _style_shape(shape, max(h, w), stride)
            targets.append(resized)
            held += max(2 * h * w, int(shape[0]) * int(shape[1]) + resized[0] * resized[1])
    return _estimate(model, (h, w), optimizer, layers=layers, history_size=history_size, targets=targets, held=held)


def largest_size(model: Backbone, aspect: float = 1.0, n_styles: int = 1, optimizer: str = "lbfgs", *,
                 layers: Sequence[str] | None = None, device: str | torch.device | None = None,
                 available: int | None = None, styles: Sequence[tuple[int, int]] | None = None) -> int | None:
    """The longest side (px) whose run fits in memory for an image of ``aspect`` = height/width; None if none does.

    ``styles`` as in :func:`estimate_memory` (the style images' shapes; default: output-sized).
    """
    if layers is None:
        layers = _default_layers(model)
    if available is None:
        available = available_memory(device if device is not None else model.mean.device)
    return largest_side(lambda shape: estimate_memory(model, shape, n_styles, optimizer, layers=layers,
                                                      styles=styles), aspect, available)


def _check_memory(model: Backbone, size: tuple[int, int], n_styles: int, optimizer: str, layers: Sequence[str],
                  device: torch.device, styles: Sequence[tuple[int, int]] | None = None) -> int:
    """The estimated bytes of a run; raise TransferTooLarge if it would not fit.

    The message names the largest size that fits, or, when a style image alone is too
    large whatever the size (a thin strip enlarged for the deepest layer), that image
    and what to do with it.
    """
    available = available_memory(device)  # this module's name: tests and callers may replace it

    def needed_at(shape: tuple[int, int]) -> int:
        return estimate_memory(model, shape, n_styles, optimizer, layers=layers, styles=styles)

    def culprit() -> str | None:
        if not styles:
            return None
        plain = estimate_memory(model, size, len(styles), optimizer, layers=layers)  # styles as if output-sized
        if plain > _MEMORY_MARGIN * available:
            return None  # the size is the problem
        stride = _stride(model, layers)
        worst = max(range(len(styles)), key=lambda i: math.prod(_style_shape(styles[i], max(size), stride)))
        h, w = (int(n) for n in styles[worst])
        rh, rw = _style_shape(styles[worst], max(size), stride)
        name = "the style image" if len(styles) == 1 else f"style image {worst}"
        return (f"{name} ({h:,}×{w:,} px, aspect ratio 1:{max(h, w) / min(h, w):,.0f}) is so elongated that it "
                f"would be enlarged to {rh:,}×{rw:,} px so that its shorter side reaches the {stride} px stride of "
                f"{_deepest_layer(model, layers)}; crop it to a less elongated piece (at most about 1:"
                f"{max(1, max(size) // stride)} at this size) or leave the deepest layer out of style_layers")

    return check_memory(
        needed_at, size, what=f"a style transfer at {size[0]}×{size[1]} px with {model.name}", device=device,
        available=available, error=TransferTooLarge, optimizer=optimizer, culprit=culprit,
    )


# --------------------------------------------------------------------------- inputs


def _as_image(src: object, name: str) -> Tensor:
    """One RGB image 1×3×H×W from a tensor (grayscale 1-channel accepted), array, PIL image or path."""
    if isinstance(src, Tensor):
        t = src
        if t.ndim == 2:
            t = t[None, None]
        elif t.ndim == 3 and t.shape[0] == 1:
            t = t[None]
        if t.ndim == 4 and t.shape[1] == 1:  # grayscale: replicate to RGB, as load_image does for files
            t = t.expand(-1, 3, -1, -1)
        t = ensure_image_batch(t, name)
        if t.shape[0] != 1:
            raise ValueError(f"{name} must be one image (1×3×H×W), got a batch of {t.shape[0]}")
        return t.detach().float().cpu().contiguous()
    return load_image(src)  # type: ignore[arg-type]


def _as_styles(styles: object) -> list[Tensor]:
    if isinstance(styles, Tensor) and styles.ndim == 4 and styles.shape[0] > 1:
        return [_as_image(styles[i : i + 1], f"styles[{i}]") for i in range(styles.shape[0])]
    if isinstance(styles, (list, tuple)):
        if not styles:
            raise ValueError("styles is empty; pass at least one style image")
        return [_as_image(s, f"styles[{i}]") for i, s in enumerate(styles)]
    return [_as_image(styles, "style")]


def _resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Antialiased bilinear resize of 1×C×H×W (any C, e.g. a luminance image) to exactly ``size``."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image.clone()
    return F.interpolate(image, size=tuple(size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def _check_device(model: Backbone, device: str | torch.device | None) -> torch.device:
    model_device = model.mean.device
    if device is not None:
        want = torch.device(device)
        # torch.device("cuda") and "cuda:0" differ as objects; compare what matters
        if want.type != model_device.type or (want.index is not None and want.index != model_device.index):
            raise ValueError(f"device={want} but the model is on {model_device}; move the model with "
                             f"model.to({str(want)!r}) first or leave device=None")
    return model_device


def _style_weights(model: Backbone, layers: list[str], given: Mapping[str, float] | None) -> dict[str, float]:
    # Gatys et al.: w_l = 1/(number of layers); networks with Grams of very different sizes
    # (EfficientNet-Lite) bring their own balance (artlab.models.default_layer_weights)
    weights = default_layer_weights(model, layers)
    if given:
        resolved = {}
        # match by canonical name: "stage2" (an alias) and "stage2.1" name the same style layer
        by_canonical = {model.resolve_layer(layer): layer for layer in layers}
        for layer, weight in given.items():
            name = by_canonical.get(model.resolve_layer(layer))
            if name is None:
                raise ValueError(f"layer_weights names {layer!r}, which is not a style layer {layers}; "
                                 "add it to style_layers or remove it from layer_weights")
            resolved[name] = float(weight)
        weights.update(resolved)
    return weights


# --------------------------------------------------------------------------- steps


@dataclass
class TransferStep:
    """One optimiser step of :func:`stylize`.

    ``step`` counts from 0 over all scales; ``scale`` is the index of the current scale
    (0 = coarsest) and ``size`` its (height, width). ``loss`` is the total loss of the
    image at the start of the step and ``content``, ``style``, ``tv``, ``histogram``
    its *weighted* terms (they add up to ``loss``); ``per_layer`` holds the unweighted
    style terms mean((G_l(x) − G_l(style))²) per layer and ``histogram_per_layer`` the
    unweighted histogram terms. ``image`` is a preview (detached CPU 1×3×H×W, the best
    image so far at the current scale, colours restored) every ``preview_every`` steps,
    on the last step of each scale and on a failure, else None. ``best_loss`` is the
    loss of the best image at the current scale. ``status`` is ``"ok"`` or
    ``"nonfinite: stopped, kept last good image"``.
    """

    step: int
    scale: int
    size: tuple[int, int]
    loss: float
    content: float
    style: float
    tv: float
    histogram: float
    per_layer: dict[str, float]
    image: Tensor | None
    best_loss: float
    status: str = "ok"
    histogram_per_layer: dict[str, float] = field(default_factory=dict)


@dataclass
class _Scale:
    index: int
    size: tuple[int, int]
    steps: int


def _remap(feats: Tensor, target_sorted: Tensor) -> Tensor:
    """R(O): each channel's values replaced by the target's values of the same rank (exact histogram matching)."""
    flat = feats.detach().flatten(2)[0]  # C × N
    order = flat.argsort(dim=1)
    return torch.empty_like(flat).scatter_(1, order, target_sorted).view_as(feats)


def _quantiles(feats: Tensor, n: int) -> Tensor:
    """Each channel's sorted values resampled to n points (C × n), linear interpolation between ranks."""
    values = feats.flatten(2)[0].sort(dim=1).values  # C × M
    m = values.shape[1]
    if m == n:
        return values
    pos = torch.linspace(0, m - 1, n, device=values.device, dtype=values.dtype)
    lo = pos.floor().long().clamp(max=m - 1)
    hi = (lo + 1).clamp(max=m - 1)
    frac = pos - lo
    return values[:, lo] * (1 - frac) + values[:, hi] * frac


class StyleTransfer(Iterator[TransferStep]):
    """The iterator :func:`stylize` returns: one :class:`TransferStep` per optimiser step.

    Stop any time (``break`` then :meth:`close`); :attr:`best_image` keeps the best
    image so far, :attr:`current_image` the image being optimised (for warm restarts),
    :attr:`history` the loss of every step, :attr:`frames` every preview (for
    :func:`progression_gif`). :meth:`result` runs to the end and returns the image.
    ``size`` is the output's (height, width), ``scales`` the plan (size and steps per
    scale), ``estimated_bytes`` the memory estimate checked before the run.

    Interrupted (a ``KeyboardInterrupt``: Ctrl+C, or Jupyter's stop button, during a
    step): the step in progress is undone (the image goes back to where that step
    began; L-BFGS restarts its curvature memory, which an interrupted line search
    leaves half-updated), the exception propagates, :attr:`best_image` and
    :attr:`history` keep everything done so far, and iterating the run again (or
    :meth:`result`) resumes: step numbers and :attr:`history` count on from where
    they stopped, they do not start from zero. :func:`transfer` catches the interrupt
    and returns :attr:`best_image` with a warning instead.
    """

    def __init__(self, content: Tensor, styles: list[Tensor], model: Backbone, settings: TransferSettings,
                 device: torch.device) -> None:
        settings = settings.for_model(model)
        self.settings = settings
        self.model = model
        self.device = device
        self.history: list[float] = []
        self.frames: list[Tensor] = []
        self.status = "ok"
        self._content = content  # RGB, CPU, original size
        self._styles = styles
        blend = settings.style_blend if settings.style_blend is not None else [1.0] * len(styles)
        if len(blend) != len(styles):
            raise ValueError(f"style_blend has {len(blend)} weights but {len(styles)} style images were given; "
                             "give one weight per style")
        total = float(sum(blend))
        self.blend = [float(b) / total for b in blend]
        self.style_layers, self.content_layer, self.histogram_layers = _needed_layers(model, settings)
        self.layer_weights = _style_weights(model, self.style_layers, settings.layer_weights)
        settings.check_objective(style_on=settings.style_weight > 0 and any(w > 0 for w in self.layer_weights.values()))
        self._wanted = list(dict.fromkeys([*self.style_layers, self.content_layer, *self.histogram_layers]))
        final = _output_size(settings.size, tuple(content.shape[-2:])) if settings.size is not None \
            else (int(content.shape[-2]), int(content.shape[-1]))
        self.size = final
        self.scales = self._plan(final)
        self._channels = 1 if settings.color == "luminance" else 3
        self._optim: ImageOptimizer | None = None
        self._provisional: Tensor | None = None  # the image a scale starts from, before its first step
        self._chroma: dict[tuple[int, int], Tensor] = {}
        self.estimated_bytes = 0
        # where the loop stands, kept here rather than in the generator's frame, so that a new
        # generator can resume after a KeyboardInterrupt ended the old one (see __next__)
        self._scale_index = 0  # the scale being optimised
        self._built = -1  # the scale self._optim belongs to (-1: none yet)
        self._scale_step = 0  # steps done at the current scale
        self._step = 0  # steps done in all
        self._closed = False
        self._steps: Iterator[TransferStep] | None = self._run()

    # ----------------------------------------------------------------- planning

    def _plan(self, final: tuple[int, int]) -> list[_Scale]:
        settings = self.settings
        deepest = _deepest_layer(self.model, self._wanted)
        _check_image_size(self.model, final, self._wanted, stacklevel=4)
        scales = []
        for k, steps in enumerate(settings.steps_per_scale()):
            div = 2 ** (settings.scales - 1 - k)
            size = (max(1, round(final[0] / div)), max(1, round(final[1] / div)))
            scales.append(_Scale(k, size, steps))
        try:
            _, stride = receptive_field(self.model, deepest)
        except ValueError:
            stride = 1
        self._stride = stride
        coarse = scales[0].size
        if min(coarse) < stride:
            most = max(1, int(math.log2(max(1, min(final) // stride))) + 1)
            raise ValueError(
                f"with scales={settings.scales} the coarsest scale is {coarse[0]}×{coarse[1]} px, smaller than the "
                f"{stride} px that {deepest} needs; use scales<={most} or a larger size"
            )
        return scales

    # ----------------------------------------------------------------- images in optimisation space

    def _resized(self, image: Tensor, size: tuple[int, int]) -> Tensor:
        return _resize(image, size)

    def _content_at(self, size: tuple[int, int]) -> Tensor:
        """The content at ``size`` as the optimiser sees it (luminance only in "luminance" mode)."""
        content = self._resized(self._content, size)
        return rgb_to_yiq(content)[:, :1].clamp(0.0, 1.0) if self._channels == 1 else content

    def _style_at(self, style: Tensor, long_side: int) -> Tensor:
        """A style resized to the content's longer side (its own aspect kept), colour-treated, RGB.

        A very elongated style is enlarged further until its shorter side reaches the
        deepest layer's stride, so that layer still has a feature map to take a Gram of.
        """
        h, w = style.shape[-2:]
        long_side = max(long_side, math.ceil(self._stride * max(h, w) / min(h, w)))
        style = load_image(style, long_side)
        color = self.settings.color
        if color == "luminance":
            return match_luminance(style, self._content).expand(-1, 3, -1, -1)
        if color == "histogram":
            return match_color(style, self._content)
        return style

    def _init_image(self, size: tuple[int, int]) -> Tensor:
        init = self.settings.init
        if isinstance(init, Tensor):
            image = self._resized(_as_image(init, "init"), size)
            return rgb_to_yiq(image)[:, :1].clamp(0.0, 1.0) if self._channels == 1 else image
        if init == "content":
            return self._content_at(size)
        if init == "noise":
            # Gatys et al. start from white noise; uniform noise in [0, 1] drawn from a private generator
            generator = torch.Generator().manual_seed(int(self.settings.seed))
            return torch.rand(1, self._channels, *size, generator=generator)
        heaviest = self._styles[int(np.argmax(self.blend))]
        style = self._resized(self._style_at(heaviest, max(size)), size)  # stretched to the output's shape
        return style[:, :1].clone() if self._channels == 1 else style

    def _finish(self, image: Tensor | None) -> Tensor | None:
        """An optimiser image (CPU) as an RGB picture: the content's chroma put back in luminance mode."""
        if image is None:
            return None
        image = image.detach().cpu()
        if self._channels == 3:
            return image.clamp(0.0, 1.0)
        size = tuple(image.shape[-2:])
        if size not in self._chroma:
            self._chroma[size] = rgb_to_yiq(self._resized(self._content, size))[:, 1:]
        return yiq_to_rgb(torch.cat([image, self._chroma[size]], dim=1)).clamp(0.0, 1.0)

    # ----------------------------------------------------------------- targets and objective

    def _padding(self) -> contextlib.AbstractContextManager:
        return circular_padding(self.model) if self.settings.panorama else contextlib.nullcontext()

    def _targets(self, size: tuple[int, int]) -> tuple[Tensor | None, dict[str, Tensor], dict[str, Tensor]]:
        """Content features, blended style Grams and blended histogram targets at one scale (computed once)."""
        s = self.settings
        device = self.device
        content = self._content_at(size).expand(-1, 3, -1, -1).to(device)
        with self._padding():  # the content is a panorama too: its features wrap around
            feats = features(self.model, content, self._wanted)
        content_target = feats[self.content_layer].detach() if s.content_weight > 0 else None
        grams: dict[str, Tensor] = {}
        hist: dict[str, Tensor] = {}
        for style, weight in zip(self._styles, self.blend):
            if weight == 0:
                continue
            image = self._style_at(style, max(size)).to(device)
            style_feats = features(self.model, image, [*self.style_layers, *self.histogram_layers])
            for layer in self.style_layers:
                # Σ_i b_i ‖G − G_i‖² = ‖G − Σ_i b_i G_i‖² + const (Σ b_i = 1): one blended target, same gradient
                g = gram(style_feats[layer], "gatys")[0] * weight
                grams[layer] = grams[layer] + g if layer in grams else g
            for layer in self.histogram_layers:
                # blending quantile functions = the Wasserstein barycentre of the styles' histograms
                n = feats[layer].shape[-2] * feats[layer].shape[-1]
                q = _quantiles(style_feats[layer], n) * weight
                hist[layer] = hist[layer] + q if layer in hist else q
        return content_target, grams, hist

    def _objective(self, size: tuple[int, int]):
        s = self.settings
        content_target, grams, hist = self._targets(size)
        cw, sw, tw = s.content_weight, s.style_weight, s.tv_weight
        hw = s.histogram_weight if self.histogram_layers else 0.0
        needs_features = cw > 0 or sw > 0 or hw > 0
        weights = self.layer_weights
        zero = torch.zeros((), device=self.device)

        def objective(y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
            x = y.expand(-1, 3, -1, -1) if y.shape[1] == 1 else y  # luminance: the grey image as RGB
            terms: dict[str, Tensor] = {"content": zero, "style": zero, "histogram": zero, "tv": zero}
            if needs_features:
                with self._padding():
                    feats = features(self.model, x, self._wanted)  # stops at the deepest needed layer
                if cw > 0:
                    # Gatys et al.: ½ Σ (F − P)²; here the mean (size-independent), factor ½ dropped
                    terms["content"] = cw * (feats[self.content_layer] - content_target).square().mean()
                if sw > 0:
                    per = {layer: (gram(feats[layer], "gatys")[0] - grams[layer]).square().mean()
                           for layer in self.style_layers}
                    terms["style"] = sw * sum(weights[layer] * per[layer] for layer in per)
                    terms.update({f"style/{layer}": v for layer, v in per.items()})
                if hw > 0:
                    # Risser et al. 2017: ‖O − R(O)‖², R(O) the histogram-matched activations, held constant
                    per = {layer: (feats[layer] - _remap(feats[layer], hist[layer])).square().mean()
                           for layer in self.histogram_layers}
                    terms["histogram"] = hw * sum(per.values()) / len(per)
                    terms.update({f"histogram/{layer}": v for layer, v in per.items()})
            if tw > 0:
                terms["tv"] = tw * total_variation(y, wrap=s.panorama)
            total = terms["content"] + terms["style"] + terms["histogram"] + terms["tv"]
            return total, terms

        return objective

    # ----------------------------------------------------------------- the loop

    def _run(self) -> Iterator[TransferStep]:
        """The loop over scales and steps, resumable: it reads and advances the position attributes
        (``_scale_index``, ``_scale_step``, ``_step``), so a fresh generator continues where an
        interrupted one stopped."""
        s = self.settings
        lr = check_optimizer(s.optimizer, s.lr, _DEFAULT_LR)[1]
        while self._scale_index < len(self.scales):
            scale = self.scales[self._scale_index]
            if self._built != self._scale_index:
                # coarse-to-fine (Gatys et al. 2017): the previous scale's best image, upsampled, starts this one
                if self._optim is None:
                    image = self._init_image(scale.size)
                else:
                    best = self._optim.best_image
                    image = best if best is not None else self._provisional
                start = self._resized(image, scale.size).to(self.device)
                optim = ImageOptimizer(self._objective(scale.size), start, optimizer=s.optimizer, lr=lr)
                # assigned together only once built: an interrupt while building changes nothing
                self._provisional, self._optim, self._built = start.cpu(), optim, self._scale_index
            optim = self._optim
            assert optim is not None
            while self._scale_step < scale.steps:
                update = self._undoable_step(optim)
                i, step = self._scale_step, self._step
                self._scale_step, self._step = i + 1, step + 1
                self.history.append(update.loss)
                failed = update.status != "ok"
                last = i == scale.steps - 1
                if last and not failed:
                    optim.evaluate()  # the final image of this scale may be the best
                preview = last or failed or (s.preview_every > 0 and (step + 1) % s.preview_every == 0)
                picture = self.best_image if preview else None
                if picture is not None:
                    self.frames.append(picture)
                if failed:
                    self.status = _NONFINITE
                terms = update.terms
                yield TransferStep(
                    step=step, scale=scale.index, size=scale.size, loss=update.loss,
                    content=terms.get("content", math.nan), style=terms.get("style", math.nan),
                    tv=terms.get("tv", math.nan), histogram=terms.get("histogram", math.nan),
                    per_layer={k.split("/", 1)[1]: v for k, v in terms.items() if k.startswith("style/")},
                    image=picture, best_loss=optim.best_loss, status=self.status,
                    histogram_per_layer={k.split("/", 1)[1]: v for k, v in terms.items()
                                         if k.startswith("histogram/")},
                )
                if failed:
                    return
            self._scale_index, self._scale_step = self._scale_index + 1, 0

    def _undoable_step(self, optim: ImageOptimizer) -> OptimizerStep:
        """One optimiser step; a KeyboardInterrupt during it undoes the step, then propagates.

        Undone: the pixels go back to where the step began (an interrupted L-BFGS line
        search leaves them at a trial point) and L-BFGS forgets its curvature pairs (torch
        updates them in place before the line search, so they may be half-written; the
        next step restarts from steepest descent, as after a step without progress).
        Adam's moments are only written after the gradient, so they are kept.
        """
        before = optim.x.detach().clone()
        try:
            return optim.step()
        except KeyboardInterrupt:
            with torch.no_grad():
                optim.x.copy_(before)
            if optim.optimizer == "lbfgs":
                optim._opt.state.clear()  # as ImageOptimizer does itself after a step without progress
            raise

    # ----------------------------------------------------------------- iterator protocol

    def __iter__(self) -> StyleTransfer:
        return self

    def __next__(self) -> TransferStep:
        """The next step; after a KeyboardInterrupt, a fresh loop resumes at the interrupted step."""
        if self._closed:
            raise StopIteration
        if self._steps is None:  # the last step was interrupted: its generator is finished
            self._steps = self._run()
        try:
            return next(self._steps)
        except KeyboardInterrupt:
            self._steps = None  # an exception ends a generator; the position attributes survive
            raise
        except StopIteration:
            self._closed = True
            raise

    def close(self) -> None:
        """Stop the run for good (it cannot be resumed); the best image so far stays available."""
        self._closed = True
        if self._steps is not None:
            self._steps.close()  # type: ignore[attr-defined]

    @property
    def best_image(self) -> Tensor | None:
        """The best image so far at the current scale (1×3×H×W CPU, colours restored); None before the start."""
        best = self._optim.best_image if self._optim is not None else None
        return self._finish(best if best is not None else self._provisional)

    @property
    def best_loss(self) -> float:
        """The loss of :attr:`best_image` (inf before the first step of a scale)."""
        return self._optim.best_loss if self._optim is not None else math.inf

    @property
    def current_image(self) -> Tensor | None:
        """The image being optimised now (1×3×H×W CPU, colours restored): pass it as ``init`` to warm-restart."""
        if self._optim is None:
            return self._finish(self._provisional)
        return self._finish(self._optim.current_image)

    def result(self) -> Tensor:
        """Run to the end (from wherever the iteration is) and return the best final image."""
        for _ in self:
            pass
        image = self.best_image
        if image is None:
            raise RuntimeError("the transfer was closed before its first step; nothing was computed")
        return image


# --------------------------------------------------------------------------- entry points


def _settings(settings: TransferSettings | None, overrides: Mapping[str, object]) -> TransferSettings:
    if settings is None:
        settings = TransferSettings()
    elif not isinstance(settings, TransferSettings):
        raise TypeError(f"settings must be a TransferSettings, got {type(settings).__name__}")
    return settings.replace(**overrides) if overrides else settings.validate()


def _default_model(device: str | torch.device | None) -> Backbone:
    # the best trained network here: ImageNet VGG-19 if cached, else the bundled EfficientNet-Lite0
    return best_backbone(device=device)


def stylize(content: object, styles: object, model: Backbone | None = None,
            settings: TransferSettings | None = None, **overrides: object) -> StyleTransfer:
    """Start a style transfer of ``content`` in the style of ``styles``; iterate it for the steps.

    content: one image (1×3×H×W tensor in [0, 1], or a path / PIL image / array,
    read with :func:`artlab.images.load_image`). styles: one image or a list (or an
    N×3×H×W batch); grayscale images become RGB. Each style is resized so its longer
    side equals the output's longer side (its own aspect ratio kept: Grams average
    over positions, so the shapes need not match). model: default
    :func:`artlab.models.best_backbone` (VGG-19 if cached, else EfficientNet-Lite0).
    settings: a :class:`TransferSettings`; ``**overrides`` change single fields (``stylize(c, s, steps=50, init=previous)``).

    Before anything runs, the settings are validated (``ValueError`` with what to
    change) and the memory is estimated: a run that would not fit raises
    :class:`TransferTooLarge` naming the largest size that would. A NaN/inf loss or
    gradient stops the run with a step of status "nonfinite: ..." and keeps the last
    good image; nothing raises. Deterministic for a seed (same device and torch).
    """
    settings = _settings(settings, overrides)
    content_image = _as_image(content, "content")
    style_images = _as_styles(styles)
    if model is None:
        model = _default_model(settings.device)
    elif not isinstance(model, Backbone):
        raise TypeError(f"model must be an artlab Backbone, got {type(model).__name__}")
    device = _check_device(model, settings.device)
    run = StyleTransfer(content_image, style_images, model, settings, device)
    run.estimated_bytes = _check_memory(model, run.size, len(style_images), settings.optimizer, run._wanted, device,
                                        styles=[tuple(s.shape[-2:]) for s in style_images])
    return run


def transfer(content: object, styles: object, model: Backbone | None = None,
             settings: TransferSettings | None = None, **overrides: object) -> Tensor:
    """Run :func:`stylize` to the end and return the result (1×3×H×W, CPU).

    Interrupted (Ctrl+C, or Jupyter's stop button) after at least one step: returns the
    best image so far instead of losing the work, with a ``UserWarning`` saying how many
    steps ran (as scikit-learn's iterative estimators do). To continue it, pass that
    image back as a warm start, ``transfer(..., init=image, steps=remaining)`` (one
    scale); to be able to resume the very same run, use :func:`stylize` and iterate the
    :class:`StyleTransfer` again after the interrupt. An interrupt before the first
    step (while the targets are computed) propagates: there is nothing to return.
    """
    run = stylize(content, styles, model, settings, **overrides)
    try:
        return run.result()
    except KeyboardInterrupt:
        image = run.best_image
        if not run.history or image is None:
            raise
        total = run.settings.total_steps
        warnings.warn(
            f"transfer interrupted after {len(run.history)} of {total} steps; returning the best image so far "
            f"(loss {run.best_loss:.4g}). To continue: transfer(..., init=<this image>, "
            f"steps={total - len(run.history)}), or use stylize() and iterate the run again to resume it",
            UserWarning, stacklevel=2,
        )
        return image


# --------------------------------------------------------------------------- style suggestions


def _patches(feats: Tensor) -> Tensor:
    """3×3 patches of a 1×C×H×W feature map as unit vectors (L × 9C)."""
    patches = F.unfold(feats, kernel_size=3)[0].T  # L × 9C
    return F.normalize(patches, dim=1)


def _patch_score(content_patches: Tensor, style_patches: Tensor, chunk: int = 4096) -> float:
    """Mean over content patches of the best cosine similarity to any style patch."""
    best = []
    for i in range(0, content_patches.shape[0], chunk):
        best.append((content_patches[i : i + chunk] @ style_patches.T).max(dim=1).values)
    return float(torch.cat(best).mean())


def suggest_styles(content: object, candidates: object, model: Backbone | None = None, k: int = 3,
                   layer: str | None = None, *, size: int = 128) -> list[tuple[int | Path, float]]:
    """Rank style images by deep-patch similarity to ``content``; the ``k`` best as (key, score).

    Each image (resized to ``size`` on the longer side) goes through ``model`` to
    ``layer`` (default: the model's middle style layer, relu3_1 for VGG, stage3 for
    EfficientNet-Lite); its 3×3 patches of feature vectors are normalised to unit length.
    For every content patch the most similar candidate patch (cosine similarity) is
    found, and the score is the mean of these best similarities (1 = every content
    patch has an exact counterpart): styles whose local structures can redraw the
    content rank first (the patch matching of Li & Wand 2016, used as a score).

    candidates: an :class:`artlab.data.Collection` (keys are the items' paths), a
    list of images or paths, or an N×3×H×W batch (keys are indices).
    """
    from artlab.data import Collection

    k = _count(k, "k")
    if model is None:
        model = _default_model(None)
    style = model.spec.style_layers
    layer = model.resolve_layer(layer if layer is not None else style[len(style) // 2] if style else "")
    if isinstance(candidates, Collection):
        keys: list[int | Path] = list(candidates.paths)
        sources: list[object] = list(keys)
    elif isinstance(candidates, Tensor) and candidates.ndim == 4:
        keys, sources = list(range(candidates.shape[0])), [candidates[i : i + 1] for i in range(candidates.shape[0])]
    elif isinstance(candidates, (list, tuple)):
        keys, sources = list(range(len(candidates))), list(candidates)
    else:
        raise TypeError("candidates must be a Collection, a list of images or paths, or an N×3×H×W batch, "
                        f"got {type(candidates).__name__}")
    if not sources:
        raise ValueError("no candidate styles given")
    device = model.mean.device

    def patches(src: object, name: str) -> Tensor:
        image = load_image(_as_image(src, name), size).to(device)
        feats = features(model, image, [layer])[layer]
        if min(feats.shape[-2:]) < 3:
            raise ValueError(f"at size={size} the {layer} map is {tuple(feats.shape[-2:])}, too small for 3×3 "
                             f"patches; use a larger size or an earlier layer")
        return _patches(feats)

    reference = patches(content, "content")
    scores = [(key, _patch_score(reference, patches(src, f"candidates[{i}]")))
              for i, (key, src) in enumerate(zip(keys, sources))]
    scores.sort(key=lambda pair: -pair[1])
    return scores[:k]


# --------------------------------------------------------------------------- sequences and export


@dataclass
class FrameResult:
    """One stylised frame of :func:`stylize_frames`: its index, image (1×3×H×W CPU), last loss and status."""

    index: int
    image: Tensor
    loss: float
    status: str
    steps: int


def _frame_source(frames: object) -> Iterable[object]:
    if isinstance(frames, Tensor):
        batch = ensure_image_batch(frames, "frames")
        return (batch[i : i + 1] for i in range(batch.shape[0]))
    if isinstance(frames, (str, os.PathLike)):
        raise TypeError("frames must be a list of images or an N×3×H×W batch; for a video file use stylize_video")
    return frames  # type: ignore[return-value]


def stylize_frames(frames: object, styles: object, settings: TransferSettings | None = None,
                   model: Backbone | None = None, *, warm_steps: int | None = None,
                   **overrides: object) -> Iterator[FrameResult]:
    """Stylise a sequence of frames, each starting from the previous frame's result (a generator).

    frames: an N×3×H×W batch, or any iterable of images/paths (consumed lazily, so a
    video's frames need not all be in memory). The first frame starts from
    ``settings.init``; every later one from the previous output (a warm start, so
    consecutive results stay alike and need fewer steps: ``warm_steps``, default
    ``settings.steps``; one scale, as coarse-to-fine would throw the warm start's
    detail away). Departure from Ruder et al. 2016: no optical-flow warping and no
    temporal loss, only the warm start.
    """
    settings = _settings(settings, overrides)
    styles_list = _as_styles(styles)
    if model is None:
        model = _default_model(settings.device)
    warm = settings.replace(steps=_count(warm_steps, "warm_steps") if warm_steps is not None else settings.steps,
                            scales=1, scale_steps=None)
    previous: Tensor | None = None
    for index, frame in enumerate(_frame_source(frames)):
        current = settings if previous is None else warm.replace(init=previous)
        run = stylize(frame, styles_list, model, current)
        losses = [step.loss for step in run]
        image = run.best_image
        assert image is not None
        previous = image
        yield FrameResult(index, image, losses[-1] if losses else math.nan, run.status, len(losses))


def _uint8_frames(frames: object, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """Images (a batch or a list of 1×3×H×W of any sizes) as H×W×3 uint8 arrays, all at one size."""
    if isinstance(frames, Tensor):
        batch = ensure_image_batch(frames, "frames")
        images = [batch[i : i + 1] for i in range(batch.shape[0])]
    else:
        images = [_as_image(f, f"frames[{i}]") for i, f in enumerate(frames)]  # type: ignore[arg-type]
    if not images:
        raise ValueError("no frames to write")
    size = size or tuple(images[-1].shape[-2:])  # the last (final, largest) frame sets the size
    out = []
    for image in images:
        if tuple(image.shape[-2:]) != size:
            image = _resize(image, size)
        out.append(np.round(to_numpy_hwc(image)[0] * 255).astype(np.uint8))
    return out


def _fps(fps: float) -> float:
    return _number(fps, "fps", positive=True)


def save_gif(frames: object, path: str | os.PathLike, fps: float = 10, *, loop: int = 0) -> Path:
    """Write frames (N×3×H×W, or a list of images of any sizes: resized to the last one's) as an animated GIF.

    Pillow merges consecutive identical frames (their durations add up).
    """
    import imageio.v3 as iio

    arrays = _uint8_frames(frames)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.stack(arrays), extension=".gif", duration=1000.0 / _fps(fps), loop=loop)
    return path


def _even(array: np.ndarray) -> np.ndarray:
    """Pad to even height and width (edge pixels repeated): H.264 in yuv420p needs even sides."""
    h, w = array.shape[:2]
    return np.pad(array, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _mp4_writer(path: Path, fps: float):
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    return imageio.get_writer(path, format="FFMPEG", mode="I", fps=_fps(fps), codec="libx264",
                              pixelformat="yuv420p", macro_block_size=2, quality=8)


def save_mp4(frames: object, path: str | os.PathLike, fps: float = 10) -> Path:
    """Write frames as an H.264 MP4 (imageio-ffmpeg); odd sides are padded to even by repeating the edge."""
    arrays = _uint8_frames(frames)
    path = Path(path)
    writer = _mp4_writer(path, fps)
    try:
        for array in arrays:
            writer.append_data(_even(array))
    finally:
        writer.close()
    return path


def progression_gif(transfer: StyleTransfer, path: str | os.PathLike, fps: float = 5) -> Path:
    """The previews of a run (its :attr:`StyleTransfer.frames`, coarse scales upsampled) as a GIF."""
    if not isinstance(transfer, StyleTransfer):
        raise TypeError("progression_gif takes the StyleTransfer that stylize() returned, "
                        f"got {type(transfer).__name__}")
    if not transfer.frames:
        raise ValueError("the run has no preview frames yet: iterate it first (previews come every "
                         f"preview_every={transfer.settings.preview_every} steps and on each scale's last step)")
    return save_gif(transfer.frames, path, fps)


def stylize_video(path_in: str | os.PathLike, path_out: str | os.PathLike, styles: object,
                  settings: TransferSettings | None = None, model: Backbone | None = None, *,
                  fps: float | None = None, max_frames: int | None = None, warm_steps: int | None = None,
                  **overrides: object) -> Path:
    """Stylise a video file frame by frame (warm starts, :func:`stylize_frames`) into an MP4 or GIF.

    Frames are read with imageio's ffmpeg reader and written as they are done
    (``path_out``'s extension decides: .gif, otherwise MP4). ``fps`` defaults to the
    input's; ``max_frames`` stops early (a preview of a long clip).
    """
    import imageio.v2 as imageio

    path_in, path_out = Path(path_in), Path(path_out)
    if not path_in.is_file():
        raise FileNotFoundError(f"no video at {path_in}")
    reader = imageio.get_reader(path_in, format="FFMPEG")
    try:
        meta_fps = float(reader.get_meta_data().get("fps") or 10)

        def source() -> Iterator[Tensor]:
            for i, array in enumerate(reader):
                if max_frames is not None and i >= max_frames:
                    return
                yield load_image(np.asarray(array))

        results = stylize_frames(source(), styles, settings, model, warm_steps=warm_steps, **overrides)
        rate = fps or meta_fps
        if path_out.suffix.lower() == ".gif":
            return save_gif([r.image for r in results], path_out, rate)
        writer = _mp4_writer(path_out, rate)
        try:
            for result in results:
                writer.append_data(_even(_uint8_frames([result.image])[0]))
        finally:
            writer.close()
        return path_out
    finally:
        reader.close()


# --------------------------------------------------------------------------- the lesson's figure


def plot_ratio_sweep(content: object, style: object, model: Backbone | None = None,
                     ratios: Sequence[float] = (1e2, 1e4, 1e6), steps: int = 50, *, size: int = 128,
                     settings: TransferSettings | None = None):
    """Content, style, then one result per style/content weight ratio β/α (an :class:`ArtlabFigure`).

    Every run uses the same settings (``settings``, default content init, L-BFGS)
    except the ratio, so the row shows what the ratio alone does: low ratios keep the
    photo, high ratios dissolve it into the style. The model label is stamped on it.
    """
    from artlab.figures import ArtlabFigure, stamp_model

    if model is None:
        model = _default_model(None)
    ratios = [_number(r, "ratios", positive=True) for r in ratios]
    if not ratios:
        raise ValueError("ratios is empty; pass e.g. (1e2, 1e4, 1e6)")
    base = _settings(settings, {"steps": _count(steps, "steps"), "size": size, "preview_every": 0})
    content_image = load_image(_as_image(content, "content"), size)
    style_image = load_image(_as_image(style, "style"), size)
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # receptive-field warnings at lesson sizes
        for ratio in ratios:
            # stylize().result(), not transfer(): Ctrl+C stops the whole sweep, not just one panel
            results.append(stylize(content_image, style_image, model,
                                   base.replace(content_weight=1.0, style_weight=ratio)).result())
    panels = [("content", content_image), ("style", style_image)]
    panels += [(f"β/α = {ratio:.0e}", image) for ratio, image in zip(ratios, results)]
    fig = ArtlabFigure(figsize=(2.2 * len(panels), 2.6))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(to_numpy_hwc(image)[0])
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Style transfer: the style/content ratio · {steps} steps · {model.label}", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return stamp_model(fig, model)
