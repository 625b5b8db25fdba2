"""What a channel, a neuron or a direction responds to: feature visualisation by optimisation.

Olah, Mordvintsev & Schubert, "Feature Visualization" (Distill, 2017): start from noise and run gradient
ascent on an image so that one unit of a trained network fires as strongly as possible. Raw-pixel ascent
finds high-frequency noise that excites the unit; the image therefore lives in a decorrelated Fourier
space (:class:`artlab.explain.param.FourierImage`) and is randomly padded, jittered, scaled and rotated
before every forward pass (:func:`artlab.explain.param.random_transforms`).

Objectives say what to maximise. Each is a callable on the dict of activations ``{layer: N×C×H×W}`` that
returns one scalar; they compose with ``+``, ``-`` and scalar ``*``::

    obj = channel("stage4", 12) + 0.5 * channel("stage5", 3)
    obj = channel("stage4", 12) + diversity("stage3", 100)   # with batch > 1: different images per item

:func:`visualize` returns a :class:`ChannelVisualization` (an :class:`artlab.runs.Run`): iterate it for
:class:`VisStep` s, stop whenever; ``image`` is the current batch and ``best_image`` the one that scored
highest so far. Seeded: the same seed gives the same images (same device, threads and torch version).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from artlab.explain.param import FourierImage, random_transforms
from artlab.models import Backbone, model_device
from artlab.runs import Progress, Run, progress_bar

__all__ = ["Objective", "channel", "neuron", "direction", "diversity", "VisStep", "ChannelVisualization",
           "visualize", "visualize_channel"]

Activations = Mapping[str, Tensor]


def _channels_of(act: Tensor) -> int:
    return int(act.shape[1])


class Objective:
    """A quantity to maximise, computed from activations: ``objective(acts) -> 0-dim tensor``.

    ``layers`` are the layers it reads; ``check(model, acts)`` validates its indices against the actual
    activation shapes (called once before optimising, so a wrong index fails with the valid range). Compose
    with ``+``, ``-``, unary ``-`` and multiplication by a number.
    """

    def __init__(self, fn: Callable[[Activations], Tensor], layers: Sequence[str], name: str,
                 checks: Sequence[Callable[[Activations], None]] = ()) -> None:
        self.fn = fn
        self.layers = tuple(dict.fromkeys(layers))
        self.name = name
        self.checks = tuple(checks)

    def __call__(self, acts: Activations) -> Tensor:
        return self.fn(acts)

    def check(self, acts: Activations) -> None:
        """Raise ValueError if an index does not fit the activations (names the valid range)."""
        for check in self.checks:
            check(acts)

    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, (int, float)):
            return Objective(lambda a: self.fn(a) + other, self.layers, f"{self.name} + {other}", self.checks)
        if not isinstance(other, Objective):
            return NotImplemented
        return Objective(lambda a: self.fn(a) + other.fn(a), self.layers + other.layers,
                         f"{self.name} + {other.name}", self.checks + other.checks)

    __radd__ = __add__

    def __neg__(self) -> Objective:
        return Objective(lambda a: -self.fn(a), self.layers, f"-({self.name})", self.checks)

    def __sub__(self, other: Objective | float) -> Objective:
        return self + (-other)

    def __mul__(self, k: float) -> Objective:
        if isinstance(k, bool) or not isinstance(k, (int, float)):
            return NotImplemented
        k = float(k)
        return Objective(lambda a: k * self.fn(a), self.layers, f"{k:g}·{self.name}", self.checks)

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return f"Objective({self.name})"


def _check_index(layer: str, index: object, what: str = "channel") -> Callable[[Activations], None]:
    def check(acts: Activations) -> None:
        n = _channels_of(acts[layer])
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
            raise ValueError(f"{what} {index!r} is out of range for layer {layer!r}, which has {n} channels "
                             f"(valid: 0..{n - 1})")
    return check


def _index(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an int, got {value!r}")
    return int(value)


def channel(layer: str, index: int) -> Objective:
    """The mean activation of channel ``index`` of ``layer`` over all positions (summed over the batch).

    Lucid's ``objectives.channel``; for a 2-D layer (logits) the unit itself.
    """
    index = _index(index, "channel index")

    def fn(acts: Activations) -> Tensor:
        a = acts[layer][:, index]
        return a.reshape(a.shape[0], -1).mean(dim=1).sum()

    return Objective(fn, [layer], f"channel({layer!r}, {index})", [_check_index(layer, index)])


def neuron(layer: str, index: int, x: int | None = None, y: int | None = None) -> Objective:
    """The activation of channel ``index`` at one position (x, y) of ``layer``'s map (default: the centre).

    The centre is taken of whatever map the (randomly transformed) image gives, so it follows the image.
    """
    index = _index(index, "neuron index")
    x = None if x is None else _index(x, "x")
    y = None if y is None else _index(y, "y")

    def fn(acts: Activations) -> Tensor:
        a = acts[layer]
        if a.ndim == 2:
            return a[:, index].sum()
        h, w = a.shape[-2:]
        # a transformed image changes the map's size: clamp so the requested unit always exists
        yy = h // 2 if y is None else min(y, h - 1)
        xx = w // 2 if x is None else min(x, w - 1)
        return a[:, index, yy, xx].sum()

    def check_position(acts: Activations) -> None:
        a = acts[layer]
        if a.ndim == 2:
            return
        h, w = a.shape[-2:]
        if (y is not None and not 0 <= y < h) or (x is not None and not 0 <= x < w):
            raise ValueError(f"position (x={x}, y={y}) lies outside layer {layer!r}'s {h}×{w} map at this size "
                             f"(valid: x in 0..{w - 1}, y in 0..{h - 1})")

    return Objective(fn, [layer], f"neuron({layer!r}, {index}, x={x}, y={y})",
                     [_check_index(layer, index, "neuron"), check_position])


def direction(layer: str, vector: Tensor | Sequence[float]) -> Objective:
    """The projection of ``layer``'s activation vectors onto ``vector`` (a C-vector), averaged over positions.

    Lucid's ``objectives.direction`` takes the raw dot product; here ``vector`` is scaled to unit length
    first, so the value is in activation units whatever the vector's norm.
    """
    v = torch.as_tensor(vector, dtype=torch.float32).flatten()
    if v.numel() == 0 or not bool(torch.isfinite(v).all()) or float(v.norm()) == 0:
        raise ValueError("vector must be a non-zero, finite C-vector")
    v = v / v.norm()

    def fn(acts: Activations) -> Tensor:
        a = acts[layer]
        a = a.reshape(a.shape[0], a.shape[1], -1)
        return torch.einsum("ncp,c->np", a, v.to(a.device, a.dtype)).mean(dim=1).sum()

    def check(acts: Activations) -> None:
        n = _channels_of(acts[layer])
        if v.numel() != n:
            raise ValueError(f"vector has {v.numel()} entries but layer {layer!r} has {n} channels")

    return Objective(fn, [layer], f"direction({layer!r})", [check])


def diversity(layer: str, weight: float = 100.0) -> Objective:
    """Minus ``weight`` × the mean cosine similarity between the batch items' Gram matrices at ``layer``.

    Olah et al. 2017 ("Diversity"): added to another objective with ``batch > 1``, it pushes the batch
    items to excite the unit in different styles. As Lucid's ``objectives.diversity`` (each Gram L2
    normalised, the similarity summed over pairs i≠j, divided by the batch size), negated here because
    objectives are maximised. Lucid's examples use weight 1e2 (its default here). Zero for a batch of one.
    """
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
        raise ValueError(f"weight must be a finite number, got {weight!r}")

    def fn(acts: Activations) -> Tensor:
        a = acts[layer]
        n = a.shape[0]
        if n < 2:
            return a.sum() * 0.0
        flat = a.reshape(n, a.shape[1], -1)
        grams = flat @ flat.transpose(1, 2)
        grams = grams.reshape(n, -1)
        grams = grams / grams.norm(dim=1, keepdim=True).clamp_min(1e-10)
        sim = grams @ grams.T
        return -float(weight) * (sim.sum() - sim.diagonal().sum()) / n

    return Objective(fn, [layer], f"diversity({layer!r}, {weight:g})")


# --------------------------------------------------------------------------- the run


@dataclass
class VisStep:
    """One ascent step: ``value`` is the objective (on the transformed image) before the update; ``image``
    the current batch (N×3×H×W CPU) on preview steps and the last, else None."""

    step: int
    value: float
    image: Tensor | None = None


class ChannelVisualization(Run[VisStep]):
    """The run :func:`visualize` returns. ``image``: the current batch (CPU); ``best_image``: the batch that
    scored highest so far; ``values``: the objective at each step taken. A stopped run keeps all three."""

    def __init__(self, model: Backbone, objective: Objective, param: FourierImage, *, steps: int, lr: float,
                 transforms: bool, generator: torch.Generator, preview_every: int,
                 progress: bool | None, on_progress: Progress | None) -> None:
        self.model = model
        self.objective = objective
        self.param = param
        self.steps = steps
        self.transforms = transforms
        self.generator = generator
        self.preview_every = preview_every
        self.progress = progress
        self.on_progress = on_progress
        self.optimizer = torch.optim.Adam(param.parameters(), lr=lr)
        self.values: list[float] = []
        self.best_value = -math.inf
        self.best_image: Tensor | None = None
        with torch.no_grad():
            self.image: Tensor = param().detach().cpu()

    def _steps(self) -> Iterator[VisStep]:
        model, objective, layers = self.model, self.objective, list(self.objective.layers)
        requires = [p.requires_grad for p in model.parameters()]
        bar = progress_bar(self.steps, "visualize", enabled=self.progress)
        try:
            for p in model.parameters():  # gradients for the image only
                p.requires_grad_(False)
            for step in range(self.steps):
                self.optimizer.zero_grad(set_to_none=True)
                with torch.enable_grad():
                    image = self.param()
                    x = random_transforms(image, generator=self.generator) if self.transforms else image
                    value = objective(model(x, layers))
                    (-value).backward()
                v = float(value.detach())
                if not math.isfinite(v):
                    raise FloatingPointError(f"the objective became {v} at step {step}; try a smaller lr")
                self.values.append(v)
                if v > self.best_value:  # the image that was scored, i.e. before this update
                    self.best_value, self.best_image = v, image.detach().cpu().clone()
                self.optimizer.step()
                with torch.no_grad():
                    self.image = self.param().detach().cpu()
                bar.update(1)
                if self.on_progress is not None:
                    self.on_progress("visualize", step + 1, self.steps)
                last = step == self.steps - 1
                preview = last or (self.preview_every > 0 and (step + 1) % self.preview_every == 0)
                yield VisStep(step, v, self.image.clone() if preview else None)
        finally:
            bar.close()
            for p, r in zip(model.parameters(), requires):
                p.requires_grad_(r)


def _check_model(model: object) -> Backbone:
    if not isinstance(model, Backbone):
        raise TypeError(f"model must be an artlab Backbone (artlab.models.backbone / best_backbone), "
                        f"got {type(model).__name__}")
    return model


def _positive(value: object, name: str, *, zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
        raise ValueError(f"{name} must be an int >= {0 if zero else 1}, got {value!r}")
    return int(value)


def visualize(
    model: Backbone,
    objective: Objective,
    *,
    size: int | tuple[int, int] = 128,
    steps: int = 256,
    lr: float = 0.05,
    batch: int = 1,
    seed: int = 0,
    preview_every: int = 32,
    transforms: bool = True,
    decay: float = 1.0,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    on_progress: Progress | None = None,
) -> ChannelVisualization:
    """Maximise ``objective`` over a batch of images: Adam on a :class:`FourierImage` (Lucid's recipe).

    Each step draws one random transform (pad 12, jitter 8, scale, rotate ±5°, jitter 4:
    :func:`random_transforms`) unless ``transforms=False``, and takes one Adam step (``lr`` 0.05, Lucid's
    default) on the Fourier coefficients. ``seed`` seeds the initial spectrum and every transform draw.
    ``device``: the model's (default); the model is never moved. Errors before anything runs: an unknown
    layer (the message lists the valid ones), an index out of range (names the channel count).
    """
    model = _check_model(model)
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be an Objective (channel(...), neuron(...), ...), got "
                        f"{type(objective).__name__}")
    steps = _positive(steps, "steps")
    batch = _positive(batch, "batch")
    preview_every = _positive(preview_every, "preview_every", zero=True)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    for layer in objective.layers:
        model.resolve_layer(layer)  # ValueError naming the valid layers
    dev = model_device(model)
    if device is not None and torch.device(device).type != dev.type:
        raise ValueError(f"device={device} but the model is on {dev}; move the model first or leave device=None")
    param = FourierImage(size, batch=batch, decay=decay, seed=seed, device=dev)
    with torch.no_grad():  # validate indices against real shapes at this size
        objective.check(model(param(), list(objective.layers)))
    generator = torch.Generator().manual_seed(int(seed) + 1)
    return ChannelVisualization(model, objective, param, steps=steps, lr=float(lr), transforms=bool(transforms),
                                generator=generator, preview_every=preview_every, progress=progress,
                                on_progress=on_progress)


def visualize_channel(model: Backbone, layer: str, index: int, **kw) -> Tensor:
    """Run :func:`visualize` on ``channel(layer, index)`` to the end; returns the final image (N×3×H×W, CPU).

    The final image rather than ``best_image``: each step's value is measured on a random transform, so the
    highest-scoring step is partly luck, while the last image has had every update.
    """
    run = visualize(model, channel(layer, index), **kw)
    run.run()
    return run.image
