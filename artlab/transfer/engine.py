"""The style transfer itself (Gatys, Ecker & Bethge 2016): :func:`stylize` and the run it returns.

An image is optimised so that its deep features match a *content* image at one
layer (relu4_2 for VGG) and its Gram matrices match one or more *style* images at
several layers (relu1_1 … relu5_1):

    L(x) = α · E_content(x) + β · Σ_l w_l E_l(x) [+ γ · E_histogram(x)] [+ τ · TV(x)]

:func:`stylize` returns a :class:`StyleTransfer`, a :class:`artlab.runs.Run` that
yields one :class:`TransferStep` per optimiser step (per-term and per-layer losses, a
preview every few steps), so a widget, a script and a test drive the same loop and can
stop it; :func:`transfer` runs it to the end. The optimisation loop itself (L-BFGS
with a strong Wolfe line search and restarts, or Adam; clamping; loss scaling; best
image; NaN detection) is :class:`artlab.optimize.ImageOptimizer`, shared with
:func:`artlab.gram.synthesize_texture`.

Beyond the paper: several styles blended through one weighted target Gram per layer;
colour preservation (:mod:`artlab.transfer.colour`); Risser et al.'s histogram loss;
coarse-to-fine scales; panoramas (:mod:`artlab.transfer.panorama`); a quick start at a
small size for a first preview within a second; warm restarts with new settings
(:meth:`StyleTransfer.restart`); resuming after Ctrl+C.

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
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from artlab.gram import (
    check_image_size,
    gram,
    output_size,
    style_layers,
    total_variation,
)
from artlab.images import as_rgb_image, load_image, result_metadata, save_image
from artlab.models import (
    Backbone,
    best_backbone,
    default_layer_weights,
    features,
    receptive_field,
)
from artlab.optimize import (
    ImageOptimizer,
    OptimizerStep,
    check_optimizer,
    deepest_layer,
)
from artlab.runs import Run, drive
from artlab.transfer.colour import match_color, match_luminance, rgb_to_yiq, yiq_to_rgb
from artlab.transfer.memory import check_transfer_memory
from artlab.transfer.panorama import circular_padding
from artlab.transfer.settings import DEFAULT_LR, TransferSettings, resolve_settings

__all__ = ["TransferStep", "StyleTransfer", "as_styles", "stylize", "transfer", "transfer_metadata"]

_NONFINITE = "nonfinite: stopped, kept last good image"


def _needed_layers(model: Backbone, settings: TransferSettings) -> tuple[list[str], str, list[str]]:
    """(style layers, content layer, histogram layers) of a run, validated against the model."""
    style = style_layers(model, settings.style_layers)
    content = settings.content_layer or model.spec.content_layer
    if content is None:
        raise ValueError(f"{model.name} has no default content layer; pass content_layer=...")
    content = model.resolve_layer(content)
    hist: list[str] = []
    if settings.loss == "gram+histogram":
        if settings.histogram_layers is None:
            hist = [style[0]] + ([style[3]] if len(style) > 3 else [])  # Risser et al.: relu1_1 and relu4_1
        else:
            hist = style_layers(model, settings.histogram_layers)
    return style, content, hist


def as_styles(styles: object) -> list[Tensor]:
    """Style images as a list of 1×3×H×W CPU images: one image, a list of them, or an N×3×H×W batch.

    Each goes through :func:`artlab.video.as_rgb_image` (paths, arrays, grayscale accepted).
    """
    if isinstance(styles, Tensor) and styles.ndim == 4 and styles.shape[0] > 1:
        return [as_rgb_image(styles[i : i + 1], f"styles[{i}]") for i in range(styles.shape[0])]
    if isinstance(styles, (list, tuple)):
        if not styles:
            raise ValueError("styles is empty; pass at least one style image")
        return [as_rgb_image(s, f"styles[{i}]") for i, s in enumerate(styles)]
    return [as_rgb_image(styles, "style")]


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

    With a quick start (``TransferSettings.quick_start``) the first steps are taken at
    the small quick size: their ``scale`` is −1 (:attr:`quick` is True) and each carries
    a preview; ``step`` counts them too.
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

    @property
    def quick(self) -> bool:
        """True for a step of the quick start (taken at the small quick size, before the coarsest scale)."""
        return self.scale < 0


@dataclass
class _Scale:
    index: int  # -1: the quick start
    size: tuple[int, int]
    steps: int

    @property
    def quick(self) -> bool:
        return self.index < 0


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


class StyleTransfer(Run[TransferStep]):
    """The run :func:`stylize` returns (an :class:`artlab.runs.Run`): one :class:`TransferStep` per optimiser step.

    Stop any time (``break`` then :meth:`close`); :attr:`best_image` keeps the best
    image so far, :attr:`current_image` the image being optimised (for warm restarts),
    :attr:`history` the loss of every step, :attr:`frames` every preview (for
    :func:`~artlab.transfer.progression_gif`). :meth:`result` runs to the end and returns the image.
    ``size`` is the output's (height, width), ``scales`` the plan (size and steps per
    scale; with a quick start, ``quick`` is its stage, else None), ``estimated_bytes`` the
    memory estimate checked before the run. :meth:`restart` starts a new run from the
    image reached so far with new settings (a warm restart: what a widget does when a
    slider moves mid-run).

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
        final = output_size(settings.size, tuple(content.shape[-2:])) if settings.size is not None \
            else (int(content.shape[-2]), int(content.shape[-1]))
        self.size = final
        self.scales = self._plan(final)
        self.quick = self._plan_quick(tuple(content.shape[-2:]))
        # the stages run in order: the quick start (if any), then the scales coarse to fine
        self._stages = ([self.quick] if self.quick is not None else []) + self.scales
        self._channels = 1 if settings.color == "luminance" else 3
        self._optim: ImageOptimizer | None = None
        self._provisional: Tensor | None = None  # the image a scale starts from, before its first step
        self._chroma: dict[tuple[int, int], Tensor] = {}
        self.estimated_bytes = 0
        # where the loop stands, kept here rather than in the generator's frame, so that a new
        # generator can resume after a KeyboardInterrupt ended the old one (see __next__)
        self._scale_index = 0  # the stage being optimised (an index into self._stages)
        self._built = -1  # the stage self._optim belongs to (-1: none yet)
        self._scale_step = 0  # steps done at the current stage
        self._step = 0  # steps done in all

    # ----------------------------------------------------------------- planning

    def _plan(self, final: tuple[int, int]) -> list[_Scale]:
        settings = self.settings
        deepest = deepest_layer(self.model, self._wanted)
        check_image_size(self.model, final, self._wanted, stacklevel=4)
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

    def _plan_quick(self, content_shape: tuple[int, int]) -> _Scale | None:
        """The quick-start stage (``quick_start`` steps at ``quick_size`` px), or None when off or no smaller."""
        s = self.settings
        if s.quick_start == 0 or max(self.scales[0].size) <= s.quick_size:
            return None
        size = output_size(s.quick_size, content_shape)
        check_image_size(self.model, size, self._wanted, stacklevel=4)
        if min(size) < self._stride:
            raise ValueError(f"quick_size={s.quick_size} gives a {size[0]}×{size[1]} px quick start, smaller than "
                             f"the {self._stride} px that {deepest_layer(self.model, self._wanted)} needs; use a "
                             "larger quick_size or quick_start=0")
        return _Scale(-1, size, s.quick_start)

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
            image = self._resized(as_rgb_image(init, "init"), size)
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

    def _after_quick(self, image: Tensor, size: tuple[int, int]) -> Tensor:
        """The first scale's start from the quick start's small result: with init="content", the content at
        ``size`` plus the upsampled change the quick start made (the content's fine detail stays sharp);
        otherwise the result itself (upsampled by the caller)."""
        if not (isinstance(self.settings.init, str) and self.settings.init == "content"):
            return image
        delta = image - self._content_at(tuple(image.shape[-2:]))
        delta = F.interpolate(delta, size=size, mode="bilinear", align_corners=False)
        return (self._content_at(size) + delta).clamp(0.0, 1.0)

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

    def _steps(self) -> Iterator[TransferStep]:
        """The loop over stages (quick start, scales) and steps, resumable: it reads and advances the
        position attributes (``_scale_index``, ``_scale_step``, ``_step``), so a fresh generator
        continues where an interrupted one stopped."""
        s = self.settings
        lr = check_optimizer(s.optimizer, s.lr, DEFAULT_LR)[1]
        while self._scale_index < len(self._stages):
            scale = self._stages[self._scale_index]
            if self._built != self._scale_index:
                # coarse-to-fine (Gatys et al. 2017): the previous scale's best image, upsampled, starts this one
                if self._optim is None:
                    image = self._init_image(scale.size)
                else:
                    best = self._optim.best_image
                    image = best if best is not None else self._provisional
                    if self._stages[self._scale_index - 1].quick:
                        image = self._after_quick(image, scale.size)
                start = self._resized(image, scale.size).to(self.device)
                # the quick start takes cheap Adam steps; the scales use the optimiser of the settings
                optimizer, step_size = ("adam", DEFAULT_LR["adam"]) if scale.quick else (s.optimizer, lr)
                optim = ImageOptimizer(self._objective(scale.size), start, optimizer=optimizer, lr=step_size)
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
                preview = last or failed or scale.quick or (s.preview_every > 0 and (step + 1) % s.preview_every == 0)
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
            optim.forget_curvature()  # as ImageOptimizer does itself after a step without progress
            raise

    # ----------------------------------------------------------------- iterator protocol

    def __next__(self) -> TransferStep:
        """The next step; after a KeyboardInterrupt, a fresh loop resumes at the interrupted step."""
        try:
            return super().__next__()
        except KeyboardInterrupt:
            self._generator = None  # an exception ends a generator; the position attributes survive
            raise
        except StopIteration:
            self._closed = True
            raise

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

    @property
    def scale_start(self) -> Tensor | None:
        """The image the current stage started from (1×3×H×W CPU, colours restored); None before the start.

        After a quick start: the full-size start made from its result (see ``TransferSettings.quick_start``).
        """
        return self._finish(self._provisional)

    @property
    def needed_layers(self) -> list[str]:
        """Every layer the loss reads: the style, content and histogram layers, each once."""
        return list(self._wanted)

    @property
    def total_steps(self) -> int:
        """Steps of the whole run: the quick start's (if any) and every scale's."""
        return sum(stage.steps for stage in self._stages)

    def restart(self, settings: TransferSettings | None = None, **overrides: object) -> StyleTransfer:
        """A warm restart: close this run and return a new one, with new settings, that starts from the
        image reached so far (:attr:`current_image`, resized to the new output size).

        ``settings`` default to this run's; ``**overrides`` change single fields
        (``run.restart(style_weight=1e6)``). What a live widget does when a control moves
        mid-run: the new weights act on the picture already there instead of starting over.
        The new run has no quick start (it starts warm); before the first step there is no
        image yet, and the new run starts as ``settings`` say. Checks (settings, memory) are
        those of :func:`stylize`.
        """
        settings = resolve_settings(settings if settings is not None else self.settings, overrides)
        image = self.current_image
        self.close()
        if image is not None:
            shape = tuple(self._content.shape[-2:])
            size = output_size(settings.size, shape) if settings.size is not None else shape
            settings = settings.replace(init=_resize(image, size), quick_start=0)
        return stylize(self._content, self._styles, self.model, settings)

    def result(self, *, progress: bool | None = None) -> Tensor:
        """Run to the end (from wherever the iteration is) and return the best final image.

        ``progress``: one bar over every remaining step (all scales, the quick start
        included) with an ETA and the current loss; None: on in notebooks and terminals
        (:func:`artlab.runs.wants_progress`), False: silent.
        """
        drive(self, total=self.total_steps, done=self._step, desc=f"style transfer · {self.model.name}",
              progress=progress, postfix=self._postfix)
        image = self.best_image
        if image is None:
            raise RuntimeError("the transfer was closed before its first step; nothing was computed")
        return image

    def _postfix(self, step: TransferStep) -> dict[str, object]:
        """What the progress bar shows after the bar: the loss, and the size while several are in play."""
        shown: dict[str, object] = {"loss": f"{step.loss:.4g}"}
        if len(self._stages) > 1:
            shown["size"] = f"{step.size[0]}×{step.size[1]}"
        return shown

    @property
    def metadata(self) -> dict[str, str]:
        """What a saved result says about how it was made (:func:`transfer_metadata` of this run)."""
        return transfer_metadata(self.model, self.settings)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save :attr:`best_image` to ``path`` with the network's label and the settings in its metadata.

        PNG keeps them as text chunks, JPEG/WebP/TIFF as EXIF (see
        :func:`artlab.images.save_image`); :func:`artlab.images.read_image_metadata` reads them back.
        """
        image = self.best_image
        if image is None:
            raise ValueError("nothing to save yet: iterate the run (or call result()) first")
        return save_image(image, path, metadata=self.metadata)


def stylize(content: object, styles: object, model: Backbone | None = None,
            settings: TransferSettings | None = None, **overrides: object) -> StyleTransfer:
    """Start a style transfer of ``content`` in the style of ``styles``; iterate it for the steps.

    content: one image (1×3×H×W tensor in [0, 1], or a path / PIL image / array,
    read with :func:`artlab.images.load_image`). styles: one image or a list (or an
    N×3×H×W batch); grayscale images become RGB. Each style is resized so its longer
    side equals the output's longer side (its own aspect ratio kept: Grams average
    over positions, so the shapes need not match). model: default
    :func:`artlab.models.best_backbone` (VGG-19 if cached, else EfficientNet-Lite0).
    settings: a :class:`TransferSettings`; ``**overrides`` change single fields
    (``stylize(c, s, steps=50, init=previous)``).

    Before anything runs, the settings are validated (``ValueError`` with what to
    change) and the memory is estimated: a run that would not fit raises
    :class:`TransferTooLarge` naming the largest size that would. A NaN/inf loss or
    gradient stops the run with a step of status "nonfinite: ..." and keeps the last
    good image; nothing raises. Deterministic for a seed (same device and torch).
    With ``quick_start=n`` the run first takes n cheap steps at ``quick_size`` px, for
    a first preview within about a second (what TransferLab does; see
    :class:`TransferSettings`).
    """
    settings = resolve_settings(settings, overrides)
    content_image = as_rgb_image(content, "content")
    style_images = as_styles(styles)
    if model is None:
        # the best trained network here: ImageNet VGG-19 if cached, else the bundled EfficientNet-Lite0
        model = best_backbone(device=settings.device)
    elif not isinstance(model, Backbone):
        raise TypeError(f"model must be an artlab Backbone, got {type(model).__name__}")
    device = _check_device(model, settings.device)
    run = StyleTransfer(content_image, style_images, model, settings, device)
    run.estimated_bytes = check_transfer_memory(model, run.size, len(style_images), settings.optimizer,
                                                run.needed_layers, device,
                                                styles=[tuple(s.shape[-2:]) for s in style_images])
    return run


def transfer(content: object, styles: object, model: Backbone | None = None,
             settings: TransferSettings | None = None, *, progress: bool | None = None,
             **overrides: object) -> Tensor:
    """Run :func:`stylize` to the end and return the result (1×3×H×W, CPU).

    A run takes seconds to minutes (300 L-BFGS steps at 512 px: several minutes on a
    laptop CPU), so it shows a progress bar with the steps, an ETA and the current loss
    (one bar over all scales): ``progress=None`` (default) shows it in notebooks and
    terminals, ``False`` never (:func:`artlab.runs.wants_progress`; ``ARTLAB_PROGRESS=0``
    turns it off for a whole program). To save the result with the network's label in
    the file, use ``run = stylize(...); run.result(); run.save("out.png")``, or pass
    ``metadata=transfer_metadata(model, settings)`` to :func:`artlab.images.save_image`.

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
        return run.result(progress=progress)
    except KeyboardInterrupt:
        image = run.best_image
        if not run.history or image is None:
            raise
        total = run.total_steps
        warnings.warn(
            f"transfer interrupted after {len(run.history)} of {total} steps; returning the best image so far "
            f"(loss {run.best_loss:.4g}). To continue: transfer(..., init=<this image>, "
            f"steps={total - len(run.history)}), or use stylize() and iterate the run again to resume it",
            UserWarning, stacklevel=2,
        )
        return image


def transfer_metadata(model: Backbone, settings: TransferSettings | None = None) -> dict[str, str]:
    """The metadata a saved style-transfer result carries: the network's label, "style transfer" and
    the settings in short JSON (:meth:`TransferSettings.summary`), for :func:`artlab.images.save_image`.

    Why: a picture made with a random-weight network looks like one made with a trained
    one; the file itself should say which it was.
    """
    if not isinstance(model, Backbone):
        raise TypeError(f"model must be an artlab Backbone, got {type(model).__name__}")
    summary = settings.for_model(model).summary() if settings is not None else None
    return result_metadata(model.label, kind="style transfer", settings=summary)
