"""DeepDream: amplify whatever a layer already sees in an image (Mordvintsev, Olah & Tyka, 2015).

"Inceptionism: Going Deeper into Neural Networks" (Google Research blog, 2015) and its reference notebook:
instead of asking for one unit from noise (:mod:`artlab.explain.channels`), start from a real image and
ascend the gradient of ½·‖a‖² of a whole layer's activation a (or one channel's): whatever the layer
faintly detects gets stronger, and the image fills with it. The recipe, as in the notebook:

* **normalised gradient steps**: x ← x + lr · g / mean(|g|), so the step size does not depend on the
  layer's scale;
* **random jitter**: the image is rolled by a random shift (up to ``jitter`` px) before each step and
  rolled back after, which hides the tiling artefacts of strided layers;
* **octaves**: the image is processed small to large (each octave ``octave_scale`` times the previous);
  the detail added at one octave is upscaled and carried into the next, so patterns appear at several
  scales.

Departures: the pixels are artlab images in [0, 1] and are clamped after each step (the notebook works on
mean-subtracted 0-255 values without bounds); the objective is the *mean* of a² rather than its sum, so
the reported value does not grow with the image size (the normalised step makes the two equivalent).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from artlab.images import ensure_image_batch
from artlab.models import Backbone, model_device
from artlab.runs import Progress, Run, progress_bar

__all__ = ["DreamStep", "DeepDream", "deepdream", "dream_value"]


@dataclass
class DreamStep:
    """One ascent step at one octave (0 = smallest): ``value`` the objective before the step; ``image`` the
    current image at that octave's size (1×3×h×w CPU) on preview steps and each octave's last, else None."""

    step: int
    octave: int
    value: float
    image: Tensor | None = None


def dream_value(acts: Tensor, channel: int | None) -> Tensor:
    """The DeepDream objective: mean of the squared activation (of one channel when ``channel`` is given)."""
    a = acts if channel is None else acts[:, channel]
    return 0.5 * a.square().mean()


class DeepDream(Run[DreamStep]):
    """The run :func:`deepdream` returns: ``image`` (the current image, CPU, at the current octave's size until
    the last octave), ``values`` (objective per step); a stopped run keeps them. ``best_image`` is ``image``
    (a dream has no target to be closest to: each step is meant to go further)."""

    def __init__(self, model: Backbone, image: Tensor, layer: str, channel: int | None, *, octaves: int,
                 octave_scale: float, steps_per_octave: int, lr: float, jitter: int, generator: torch.Generator,
                 preview_every: int, progress: bool | None, on_progress: Progress | None) -> None:
        self.model = model
        self.original = image
        self.layer = layer
        self.channel = channel
        self.octaves = octaves
        self.octave_scale = octave_scale
        self.steps_per_octave = steps_per_octave
        self.lr = lr
        self.jitter = jitter
        self.generator = generator
        self.preview_every = preview_every
        self.progress = progress
        self.on_progress = on_progress
        self.values: list[float] = []
        self.image: Tensor = image.detach().cpu().clone()

    @property
    def best_image(self) -> Tensor:
        """The dreamed image so far (same as ``image``)."""
        return self.image

    def _sizes(self) -> list[tuple[int, int]]:
        h, w = self.original.shape[-2:]
        sizes = []
        for k in range(self.octaves - 1, -1, -1):  # smallest first
            f = self.octave_scale ** k
            sizes.append((max(8, round(h / f)), max(8, round(w / f))))
        return sizes

    def _steps(self) -> Iterator[DreamStep]:
        model, layer, gen = self.model, self.layer, self.generator
        total = self.octaves * self.steps_per_octave
        requires = [p.requires_grad for p in model.parameters()]
        bar = progress_bar(total, "deepdream", enabled=self.progress)
        sizes = self._sizes()
        detail: Tensor | None = None
        step = 0
        try:
            for p in model.parameters():
                p.requires_grad_(False)
            for octave, size in enumerate(sizes):
                base = F.interpolate(self.original, size=size, mode="bilinear", antialias=True,
                                     align_corners=False) if size != tuple(self.original.shape[-2:]) else self.original
                if detail is not None:  # carry what earlier octaves added, upscaled (the notebook's "detail")
                    detail = F.interpolate(detail, size=size, mode="bilinear", align_corners=False)
                x = (base + detail).clamp(0, 1) if detail is not None else base.clone()
                for i in range(self.steps_per_octave):
                    oy, ox = (int(v) for v in torch.randint(-self.jitter, self.jitter + 1, (2,), generator=gen)) \
                        if self.jitter else (0, 0)
                    rolled = torch.roll(x, (oy, ox), dims=(-2, -1)).requires_grad_(True)
                    with torch.enable_grad():
                        value = dream_value(model(rolled, [layer])[layer], self.channel)
                        (grad,) = torch.autograd.grad(value, rolled)
                    grad = torch.roll(grad, (-oy, -ox), dims=(-2, -1))
                    v = float(value.detach())
                    if not math.isfinite(v):
                        raise FloatingPointError(f"the DeepDream objective became {v}; try a smaller lr")
                    x = (x + self.lr * grad / grad.abs().mean().clamp_min(1e-8)).clamp(0, 1).detach()
                    self.values.append(v)
                    self.image = x.cpu()
                    step += 1
                    bar.update(1)
                    if self.on_progress is not None:
                        self.on_progress("deepdream", step, total)
                    last = i == self.steps_per_octave - 1
                    preview = last or (self.preview_every > 0 and step % self.preview_every == 0)
                    yield DreamStep(step - 1, octave, v, self.image.clone() if preview else None)
                detail = x - base
        finally:
            bar.close()
            for p, r in zip(model.parameters(), requires):
                p.requires_grad_(r)


def deepdream(
    model: Backbone,
    image: Tensor,
    layer: str,
    *,
    channel: int | None = None,
    octaves: int = 3,
    octave_scale: float = 1.4,
    steps_per_octave: int = 10,
    lr: float = 0.01,
    jitter: int = 16,
    seed: int = 0,
    preview_every: int = 5,
    progress: bool | None = None,
    on_progress: Progress | None = None,
) -> DeepDream:
    """DeepDream ``image`` (1×3×H×W in [0, 1]) at ``layer`` (or one ``channel`` of it); returns a :class:`DeepDream`.

    ``octaves`` scales from H/``octave_scale``^(octaves−1) up to H, ``steps_per_octave`` normalised gradient
    steps each of size ``lr`` (in [0, 1] pixel units: 0.01 is about the notebook's 1.5 on 0-255), random
    roll of up to ``jitter`` px per step (seeded by ``seed``). The model's device is used; the final image
    has the input's size.
    """
    if not isinstance(model, Backbone):
        raise TypeError(f"model must be an artlab Backbone, got {type(model).__name__}")
    if not isinstance(image, Tensor) or image.ndim not in (3, 4) or (image.ndim == 4 and image.shape[0] != 1):
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"image must be one image, 1×3×H×W or 3×H×W in [0, 1], got {shape}")
    image = ensure_image_batch(image, "image")
    layer = model.resolve_layer(layer)  # ValueError naming the valid layers
    for name, value, lo in (("octaves", octaves, 1), ("steps_per_octave", steps_per_octave, 1),
                            ("jitter", jitter, 0), ("preview_every", preview_every, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    for name, value in (("octave_scale", octave_scale), ("lr", lr)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if octave_scale < 1:
        raise ValueError(f"octave_scale must be >= 1 (each octave larger than the last), got {octave_scale}")
    dev = model_device(model)
    image = image.to(dev)
    if channel is not None:
        with torch.no_grad():
            n = int(model(image, [layer])[layer].shape[1])
        if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < n:
            raise ValueError(f"channel {channel!r} is out of range for layer {layer!r}, which has {n} channels "
                             f"(valid: 0..{n - 1})")
    generator = torch.Generator().manual_seed(int(seed))
    return DeepDream(model, image, layer, channel, octaves=octaves, octave_scale=float(octave_scale),
                     steps_per_octave=steps_per_octave, lr=float(lr), jitter=jitter, generator=generator,
                     preview_every=preview_every, progress=progress, on_progress=on_progress)
