"""Projection: find the latent whose image matches a target image (GAN inversion).

Follows the StyleGAN2-ADA projector (design spec 5.3), with these extensions:

* ``space="w+"`` optimises one w per ws row (num_ws × w_dim) instead of one w for all
  rows. W+ fits far more images (also ones the generator cannot really make), at the
  cost of latents that edit less predictably; ``"w"`` is the official choice.
* conditional generators: ``c=<class>`` starts from that class's W mean and takes the
  exploration scale from that class's samples (spec 5.5, "natural extension");
  ``c="optimize"`` also searches a soft class on the simplex (softmax of learned logits,
  starting uniform) jointly with w. The latent is parametrised as w = μ(c) + δ with
  μ(c) = Σ_k c_k·μ_k the mix of the class centroids in W, and a prior
  ``w_prior_weight·‖δ‖²/σ²`` keeps w near the centroid of its class mix, so the class
  moves towards classes whose W region explains the target (σ² = mean squared distance
  of sampled w to their class centroid). Without a class (c=None) on a conditional
  generator, w starts at the class-agnostic mean over random one-hot labels.
* ``pixel_weight`` adds a pixel MSE (on [0, 1] images) to the LPIPS term.
* the best step is kept (``best_ws``, ``best_image``), so stopping early loses nothing.

What stays as in the official projector: Adam (β = 0.9, 0.999) on w (and the noise
buffers), the learning rate ramping up over the first 5% of the steps and down (cosine)
over the last 25%, Gaussian exploration noise on w with scale σ·0.05·(1 − t/0.75)²,
the per-layer noise maps reset to N(0, 1), optimised, penalised by their multi-scale
autocorrelation (weight 1e5) and renormalised after every step, and the images compared
at most at 256 px (area-downsampled above that).

Departures: W statistics are sampled with a seeded ``torch.Generator`` (official: numpy
``RandomState(123)``); the target is centre-cropped and resized with antialiased bilinear
interpolation (official: PIL Lanczos); the loss scores the image clamped to [0, 1] (the
one returned) with the gradient passed straight through the clamp (official: unclamped);
LPIPS inputs below 32 px are upsampled to 32 px. The trajectory holds the ws without
exploration noise (as official); ``best_ws`` is the ws that produced the best-scoring
image (with its noise).

The target is centre-cropped to a square and resized to ``G.img_resolution``.
Runs on the CPU at small resolutions (a 32 or 64 px generator: well under a second a step).

Every setting is a field of one :class:`ProjectionSettings`; ``project(G, target,
settings, **overrides)`` takes it (or the fields as keywords, the old call form). A
:class:`Projection` is an :class:`artlab.runs.Run`: iterate it for steps, ``break`` or
``close()`` whenever you like, ``result()`` for the best latent (with a progress bar in
notebooks and terminals; ``result(progress=False)`` for none).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from artlab.images import ensure_image_batch
from artlab.runs import Run, drive
from artlab.stylegan.generate import ClassSpec, class_label
from artlab.stylegan.perceptual import LPIPSLoss, perceptual_loss

__all__ = [
    "SPACES",
    "ProjectionSettings",
    "ProjectionStep",
    "ProjectionResult",
    "Projection",
    "project",
    "learning_rate",
    "noise_regularization",
    "prepare_target",
]

SPACES = ("w", "w+")
MAX_PERCEPTUAL_RES = 256
MIN_LPIPS_RES = 32


# --------------------------------------------------------------------------- pieces


def learning_rate(t: float, lr: float = 0.1, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """The official schedule at progress t ∈ [0, 1): linear ramp-up, cosine ramp-down, peak ``lr``.

    ``lr·min(1, t/rampup)·(0.5 − 0.5·cos(π·min(1, (1 − t)/rampdown)))``; 0 at t = 0.
    """
    down = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(math.pi * down)
    ramp *= min(1.0, t / rampup) if rampup > 0 else 1.0
    return lr * ramp


def noise_regularization(noise_maps: Sequence[Tensor]) -> Tensor:
    """Multi-scale autocorrelation penalty of noise maps (H×W each; spec 5.3 step 6.6).

    For each map, at its resolution and after each 2×2 average pooling until 8×8:
    (mean of v·v shifted by one pixel horizontally)² + (same vertically)², circular
    shifts. Zero for white noise in expectation; grows when the optimiser hides image
    structure in the noise.
    """
    total = noise_maps[0].new_zeros(()) if noise_maps else torch.zeros(())
    for v in noise_maps:
        x = v.reshape(1, 1, *v.shape[-2:])
        while True:
            total = total + (x * torch.roll(x, 1, dims=3)).mean() ** 2 + (x * torch.roll(x, 1, dims=2)).mean() ** 2
            if x.shape[2] <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return total


def prepare_target(target: Tensor, resolution: int) -> Tensor:
    """One artlab image (1×3×H×W in [0, 1]) centre-cropped to a square and resized to ``resolution``."""
    batch = ensure_image_batch(target, "target")
    if batch.shape[0] != 1:
        raise ValueError(f"project one target image at a time (1×3×H×W), got a batch of {batch.shape[0]}")
    h, w = batch.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    batch = batch[:, :, top : top + s, left : left + s]
    if s != resolution:
        batch = F.interpolate(batch, size=(resolution, resolution), mode="bilinear", align_corners=False,
                              antialias=True).clamp(0.0, 1.0)
    return batch.contiguous()


# --------------------------------------------------------------------------- results


@dataclass
class ProjectionStep:
    """One optimisation step.

    ``loss`` = lpips_weight·lpips + pixel_weight·pixel + noise_regularize·noise_reg +
    w_prior_weight·prior (terms unweighted, NaN when their weight is 0). ``lr``: the
    learning rate used. ``image``: a preview (1×3×R×R in [0, 1], the image this step
    scored) every ``preview_every`` steps and at the last step, else None. ``ws``: the
    (1, num_ws, w_dim) latent before the step's update, without exploration noise (CPU).
    ``c``: the (1, c_dim) class used (soft for ``c="optimize"``), or None.
    """

    step: int
    loss: float
    lpips: float
    pixel: float
    noise_reg: float
    lr: float
    image: Tensor | None
    ws: Tensor
    c: Tensor | None = None
    prior: float = math.nan
    best_loss: float = math.nan


@dataclass
class ProjectionResult:
    """What a projection found: the best step's latent, class, noise and image."""

    ws: Tensor  # (1, num_ws, w_dim): the ws that produced ``image``
    image: Tensor  # 1×3×R×R in [0, 1], rendered with the projection's noise maps
    c: Tensor | None  # (1, c_dim) or None
    loss: float  # its data loss (lpips_weight·lpips + pixel_weight·pixel)
    step: int  # the step it came from (steps_done for the final evaluation)
    steps_done: int
    space: str
    trajectory: Tensor  # (steps_done, num_ws, w_dim), ws per step without exploration noise
    losses: list[float]
    noise: dict[str, Tensor] = field(repr=False, default_factory=dict)  # optimised noise maps at the best step
    target: Tensor | None = field(repr=False, default=None)
    label: str = ""


# --------------------------------------------------------------------------- settings


def _check_weight(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number ≥ 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class ProjectionSettings:
    """Everything a projection can be told, checked when made (a ValueError names the field).

    steps: optimisation steps (official: 1000; 100-300 usually suffice at small sizes).
    space: ``"w"`` (one w, official) or ``"w+"`` (one w per ws row). c: None, a class
    (index, name, soft ``{class: weight}``) or ``"optimize"`` (soft class searched jointly,
    kept on the simplex). lr: peak learning rate of the official schedule, which ramps up
    over the first ``lr_rampup`` and down (cosine) over the last ``lr_rampdown`` of the run.
    noise_regularize: weight of the noise autocorrelation penalty; optimize_noise: optimise
    the per-layer noise maps (official) or keep G's. lpips_weight, pixel_weight: weights of
    the perceptual distance and of pixel MSE. w_prior_weight: weight of ‖w − μ(c)‖²/σ²
    (None: 0.1 with ``c="optimize"``, else 0). initial_noise_factor, noise_ramp_length: the
    exploration noise on w, σ·factor·(1 − t/length)². n_w_samples: latents sampled for the
    W mean and spread. init_ws: start from this latent instead of the mean. seed: seeds the
    W statistics, the noise maps and the exploration noise. device: None = G's.
    perceptual: ``"lpips-vgg"``, ``"lpips-vgg-random"`` (offline; NOT a perceptual metric,
    labelled so), ``"auto"`` (see :func:`artlab.stylegan.perceptual.perceptual_loss`) or a
    callable ``loss(images, target) -> per-image distances`` on [0, 1] images.
    preview_every: attach the image to every N-th step.
    """

    steps: int = 200
    space: str = "w"
    c: ClassSpec | str = None
    lr: float = 0.1
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    noise_regularize: float = 1e5
    optimize_noise: bool = True
    lpips_weight: float = 1.0
    pixel_weight: float = 0.0
    w_prior_weight: float | None = None
    initial_noise_factor: float = 0.05
    noise_ramp_length: float = 0.75
    n_w_samples: int = 10000
    init_ws: Tensor | None = field(default=None, repr=False)
    seed: int = 0
    device: str | torch.device | None = None
    perceptual: str | Callable[[Tensor, Tensor], Tensor] = "lpips-vgg"
    preview_every: int = 10

    def __post_init__(self) -> None:
        steps, space, lr = self.steps, self.space, self.lr
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int, got {steps!r}")
        if space not in SPACES:
            raise ValueError(
                f"space must be 'w' (one w for all layers, official) or 'w+' (one per layer), got {space!r}"
            )
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        every = self.preview_every
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"preview_every must be a positive int, got {every!r}")
        n = self.n_w_samples
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"n_w_samples must be an int ≥ 2, got {n!r}")
        lpips_weight = _check_weight(self.lpips_weight, "lpips_weight")
        pixel_weight = _check_weight(self.pixel_weight, "pixel_weight")
        _check_weight(self.noise_regularize, "noise_regularize")
        if lpips_weight == 0 and pixel_weight == 0:
            raise ValueError("lpips_weight and pixel_weight are both 0: nothing would pull the image to the target")
        if self.w_prior_weight is not None:
            _check_weight(self.w_prior_weight, "w_prior_weight")

    def replace(self, **changes: object) -> ProjectionSettings:
        """A copy with some fields changed; an unknown name is a TypeError that lists the fields."""
        return dataclasses.replace(self, **_known_fields(changes))  # type: ignore[arg-type]


_FIELDS = tuple(f.name for f in dataclasses.fields(ProjectionSettings))


def _known_fields(changes: dict) -> dict:
    unknown = sorted(set(changes) - set(_FIELDS))
    if unknown:
        raise TypeError(f"unknown projection setting(s) {unknown}; ProjectionSettings has {', '.join(_FIELDS)}")
    return changes


# --------------------------------------------------------------------------- the projection


class Projection(Run[ProjectionStep]):
    """A running projection: iterate to take steps (each yields a :class:`ProjectionStep`).

    An :class:`artlab.runs.Run`: stop any time with ``break`` and :meth:`close` (the best
    result so far stays: ``best_ws``, ``best_image``, ``best_c``); :meth:`result` runs the
    remaining steps (unless closed) and returns a :class:`ProjectionResult`. Build it with
    :func:`project`, or ``Projection(G, target, settings, **overrides)``. ``settings`` is the
    :class:`ProjectionSettings` in force. ``label`` names the generator, the space and the
    metric; with a random VGG it contains "LPIPS with random VGG backbone: not a perceptual metric".
    """

    def __init__(self, G, target: Tensor, settings: ProjectionSettings | None = None, **overrides: object) -> None:
        settings = settings or ProjectionSettings()
        if overrides:
            settings = settings.replace(**overrides)
        self.settings = settings
        self.lpips_weight = float(settings.lpips_weight)
        self.pixel_weight = float(settings.pixel_weight)
        self.noise_regularize = float(settings.noise_regularize)
        self.steps, self.space, self.lr = settings.steps, settings.space, float(settings.lr)
        self.lr_rampup, self.lr_rampdown = float(settings.lr_rampup), float(settings.lr_rampdown)
        self.initial_noise_factor = float(settings.initial_noise_factor)
        self.noise_ramp_length = float(settings.noise_ramp_length)
        self.preview_every = settings.preview_every
        self.seed = int(settings.seed)
        device, space, perceptual = settings.device, settings.space, settings.perceptual
        self.device = torch.device(device) if device is not None else G.device
        # Work on a copy: the noise maps are replaced and optimised, G stays untouched.
        self.G = copy.deepcopy(G).eval().requires_grad_(False).to(self.device)
        self.num_ws, self.w_dim = G.num_ws, G.w_dim
        self.resolution = G.img_resolution
        self.target = prepare_target(target, self.resolution).cpu()
        self._target_dev = self.target.to(self.device)
        self._gen = torch.Generator(device=self.device).manual_seed(self.seed)

        self.perceptual = perceptual_loss(perceptual, seed=self.seed, device=self.device) if self.lpips_weight else None
        metric = getattr(self.perceptual, "label", "custom perceptual loss") if self.perceptual else "pixel MSE only"
        self.metric_label = metric
        self.metric_pretrained = getattr(self.perceptual, "pretrained", None)  # None: custom callable or no LPIPS
        self._target_p = self._perceptual_size(self._target_dev)

        self._setup_class(G, settings.c, settings.n_w_samples)
        w_prior_weight = settings.w_prior_weight
        if w_prior_weight is None:
            w_prior_weight = 0.1 if self.class_mode == "optimize" else 0.0
        self.w_prior_weight = float(w_prior_weight)

        rows = self.num_ws if space == "w+" else 1
        delta = torch.zeros(1, rows, self.w_dim, device=self.device)
        if settings.init_ws is not None:
            init = torch.as_tensor(settings.init_ws).detach().to(self.device, torch.float32)
            if init.ndim == 2:
                init = init.unsqueeze(1)
            shape_ok = init.ndim == 3 and init.shape[0] == 1 and init.shape[2] == self.w_dim
            if not shape_ok or init.shape[1] not in (1, self.num_ws):
                raise ValueError(f"init_ws must have shape (1, {self.num_ws}, {self.w_dim}) or (1, {self.w_dim})")
            if rows == 1:
                init = init.mean(dim=1, keepdim=True)  # W: one w for every row
            delta = (init - self._center().detach()).expand(1, rows, self.w_dim).clone()
        self.delta = delta.requires_grad_(True)
        self.noise = self._setup_noise(settings.optimize_noise)
        params = [self.delta] + list(self.noise.values()) + ([self.logits] if self.logits is not None else [])
        self._opt = torch.optim.Adam(params, betas=(0.9, 0.999), lr=self.lr)

        space_name = "W+" if space == "w+" else "W"
        self.label = f"projection into {space_name} of {G.label} · {metric}"
        self.trajectory: list[Tensor] = []
        self.losses: list[float] = []
        self.steps_done = 0
        self.best_loss = math.inf
        self._best: dict = {}
        self._finished = False

    # ----------------------------------------------------------------- setup

    def _setup_class(self, G, c, n: int) -> None:
        """W statistics (centre, spread) and the class parametrisation."""
        self.logits: Tensor | None = None
        self.label_c: Tensor | None = None
        gen = torch.Generator().manual_seed(self.seed + 1)
        if isinstance(c, str) and c == "optimize":
            if G.c_dim < 2:
                raise ValueError(f"c='optimize' needs a class-conditional generator with c_dim ≥ 2 (c_dim={G.c_dim})")
            self.class_mode = "optimize"
            per_class = max(n // G.c_dim, 64)
            z = torch.randn(per_class, G.z_dim, generator=gen)
            centroids, sq = [], 0.0
            for k in range(G.c_dim):
                w = self._map(z, F.one_hot(torch.full((per_class,), k), G.c_dim).float())
                centroids.append(w.mean(dim=0))
                sq += float(((w - centroids[-1]) ** 2).sum(dim=1).mean())
            self.centroids = torch.stack(centroids).to(self.device)  # (c_dim, w_dim)
            self.w_std = math.sqrt(sq / G.c_dim)
            self.logits = torch.zeros(1, G.c_dim, device=self.device, requires_grad=True)
            return
        z = torch.randn(n, G.z_dim, generator=gen)
        if G.c_dim == 0:
            if c is not None:
                class_label(G, c)  # raises: unconditional generator
            self.class_mode, labels = "none", None
        elif c is None:
            # Class-agnostic: the mean over random one-hot labels (like the training-time w_avg).
            self.class_mode = "agnostic"
            labels = F.one_hot(torch.randint(G.c_dim, (n,), generator=gen), G.c_dim).float()
        else:
            self.class_mode = "fixed"
            self.label_c = class_label(G, c)
            labels = self.label_c.repeat(n, 1)
        w = self._map(z, labels)
        self.w_avg = w.mean(dim=0).to(self.device)  # (w_dim,)
        self.w_std = math.sqrt(float(((w - w.mean(dim=0)) ** 2).sum(dim=1).mean()))

    @torch.no_grad()
    def _map(self, z: Tensor, labels: Tensor | None, chunk: int = 2048) -> Tensor:
        out = []
        for s in range(0, z.shape[0], chunk):
            lab = None if labels is None else labels[s : s + chunk].to(self.device)
            w = self.G.mapping(z[s : s + chunk].to(self.device), lab, update_w_avg=False)
            out.append((w[:, 0] if w.ndim == 3 else w).to("cpu", torch.float64))
        return torch.cat(out).to(torch.float32)

    def _setup_noise(self, optimize: bool) -> dict[str, Tensor]:
        """Replace the copy's noise maps by N(0, 1) leaves to optimise (official), or keep them fixed."""
        maps: dict[str, Tensor] = {}
        if not optimize:
            return maps
        for name, module in self.G.synthesis.named_modules():
            if "noise_const" in module._buffers and module._buffers["noise_const"] is not None:
                old = module._buffers["noise_const"]
                leaf = torch.randn(old.shape, generator=self._gen, device=self.device).requires_grad_(True)
                module._buffers["noise_const"] = leaf  # synthesis reads it in noise_mode='const'
                maps[f"{name}.noise_const"] = leaf
        return maps

    def _center(self) -> Tensor:
        """μ(c) as (1, 1, w_dim): the fixed W mean, or the soft class's mix of centroids."""
        if self.logits is not None:
            return (torch.softmax(self.logits, dim=1) @ self.centroids).unsqueeze(1)
        return self.w_avg.view(1, 1, -1)

    def _perceptual_size(self, images: Tensor) -> Tensor:
        if images.shape[-1] > MAX_PERCEPTUAL_RES:  # official: compare at most at 256 px (area)
            return F.interpolate(images, size=(MAX_PERCEPTUAL_RES, MAX_PERCEPTUAL_RES), mode="area")
        if isinstance(self.perceptual, LPIPSLoss) and images.shape[-1] < MIN_LPIPS_RES:
            # VGG16 pools 4 times before relu5_3: below 16 px nothing would be left
            return F.interpolate(images, size=(MIN_LPIPS_RES, MIN_LPIPS_RES), mode="bilinear", align_corners=False)
        return images

    # ----------------------------------------------------------------- state

    def current_c(self) -> Tensor | None:
        """The class in use now: (1, c_dim) on the simplex (CPU), or None."""
        if self.logits is not None:
            return torch.softmax(self.logits.detach(), dim=1).cpu()
        return None if self.label_c is None else self.label_c.clone()

    def current_ws(self) -> Tensor:
        """The current latent (1, num_ws, w_dim) without exploration noise (CPU)."""
        with torch.no_grad():
            return (self._center() + self.delta).expand(1, self.num_ws, self.w_dim).detach().cpu().clone()

    @property
    def best_ws(self) -> Tensor | None:
        """The ws (1, num_ws, w_dim) that produced the best-scoring image so far (CPU), None before step 1."""
        return None if not self._best else self._best["ws"].clone()

    @property
    def best_image(self) -> Tensor | None:
        """The best-scoring image so far (1×3×R×R in [0, 1], CPU)."""
        return None if not self._best else self._best["image"].clone()

    @property
    def best_c(self) -> Tensor | None:
        return None if not self._best or self._best["c"] is None else self._best["c"].clone()

    @property
    def done(self) -> bool:
        """Whether the run is over: every step taken, or closed."""
        return self._closed or self._finished

    # ----------------------------------------------------------------- the loop

    def _forward(self, ws: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        raw = self.G.synthesis(ws, noise_mode="const")
        image = (raw + 1) / 2
        # Departure: the loss scores the clamped image (the one shown and returned), but the
        # gradient passes as if unclamped (straight-through), like the official unclamped loss.
        image = image + (image.clamp(0.0, 1.0) - image).detach()
        terms: dict[str, Tensor] = {}
        data = image.new_zeros(())
        if self.perceptual is not None:
            terms["lpips"] = self.perceptual(self._perceptual_size(image), self._target_p).sum()
            data = data + self.lpips_weight * terms["lpips"]
        if self.pixel_weight:
            terms["pixel"] = F.mse_loss(image, self._target_dev)
            data = data + self.pixel_weight * terms["pixel"]
        terms["data"] = data
        terms["image"] = image
        return data, terms

    def _consider(self, data: float, ws: Tensor, image: Tensor, step: int) -> None:
        if math.isfinite(data) and data < self.best_loss:
            self.best_loss = data
            self._best = {
                "ws": ws.detach().cpu().clone(), "image": image.detach().clamp(0.0, 1.0).cpu(),
                "c": self.current_c(), "step": step,
                "noise": {k: v.detach().cpu().clone() for k, v in self.noise.items()},
            }

    def _steps(self) -> Iterator[ProjectionStep]:
        """One optimisation step per item (see the module docstring); the last also scores the final latent."""
        while self.steps_done < self.steps:
            step = self.steps_done
            t = step / self.steps
            lr = learning_rate(t, self.lr, self.lr_rampup, self.lr_rampdown)
            for group in self._opt.param_groups:
                group["lr"] = lr
            noise_scale = self.w_std * self.initial_noise_factor * max(0.0, 1.0 - t / self.noise_ramp_length) ** 2

            w = self._center() + self.delta  # (1, rows, w_dim)
            w_noisy = w + torch.randn(w.shape, generator=self._gen, device=self.device) * noise_scale
            ws = w_noisy.expand(1, self.num_ws, self.w_dim)
            with torch.enable_grad():
                data, terms = self._forward(ws)
                reg = noise_regularization(list(self.noise.values())) if self.noise else data.new_zeros(())
                prior = (self.delta**2).sum(dim=2).mean() / max(self.w_std**2, 1e-12)
                loss = data + self.noise_regularize * reg + self.w_prior_weight * prior
                value = float(loss.detach())
                if not math.isfinite(value):
                    self._closed = True
                    raise FloatingPointError(
                        f"the projection loss became {value} at step {step}; lower lr (now {self.lr}) or the "
                        "weights. The best result so far is kept (best_ws, best_image)."
                    )
                self._opt.zero_grad(set_to_none=True)
                loss.backward()

            ws_clean = w.detach().expand(1, self.num_ws, self.w_dim).cpu().clone()
            c_now = self.current_c()
            self._consider(float(data.detach()), ws, terms["image"], step)
            self._opt.step()
            with torch.no_grad():  # official: keep every noise map zero-mean, unit-variance
                for v in self.noise.values():
                    v -= v.mean()
                    v *= v.square().mean().rsqrt()
            self.trajectory.append(ws_clean)
            self.losses.append(value)
            self.steps_done += 1
            last = self.steps_done == self.steps
            preview = None
            if step % self.preview_every == 0 or last:
                preview = terms["image"].detach().clamp(0, 1).cpu()
            result = ProjectionStep(
                step=step, loss=value,
                lpips=float(terms["lpips"].detach()) if "lpips" in terms else math.nan,
                pixel=float(terms["pixel"].detach()) if "pixel" in terms else math.nan,
                noise_reg=float(reg.detach()) if self.noise else math.nan, lr=lr, image=preview, ws=ws_clean,
                c=c_now, prior=float(prior.detach()) if self.w_prior_weight else math.nan, best_loss=self.best_loss,
            )
            if last:
                self._finish()
            yield result

    @torch.no_grad()
    def _finish(self) -> None:
        """Score the final latent once (the last update is otherwise never evaluated)."""
        self._finished = True
        ws = (self._center() + self.delta).expand(1, self.num_ws, self.w_dim)
        data, terms = self._forward(ws)
        self._consider(float(data), ws, terms["image"], self.steps_done)

    def result(self, *, progress: bool | None = None) -> ProjectionResult:
        """Run the remaining steps (unless closed) and return the best result.

        ``progress``: a bar with the steps, an ETA and the loss (current and best); None
        (default): on in notebooks and terminals, False: silent
        (:func:`artlab.runs.wants_progress`). Iterating the projection yourself stays silent.
        """
        drive(self, total=self.steps, done=self.steps_done, desc="projection", progress=progress,
              postfix=lambda step: {"loss": f"{step.loss:.4g}", "best": f"{step.best_loss:.4g}"})
        if not self._best:
            self._finish()
        best = self._best
        return ProjectionResult(
            ws=best["ws"].clone(), image=best["image"].clone(), c=None if best["c"] is None else best["c"].clone(),
            loss=self.best_loss, step=best["step"], steps_done=self.steps_done, space=self.space,
            trajectory=torch.cat(self.trajectory) if self.trajectory else torch.empty(0, self.num_ws, self.w_dim),
            losses=list(self.losses), noise=dict(best["noise"]), target=self.target.clone(), label=self.label,
        )


def project(G, target: Tensor, settings: ProjectionSettings | None = None, **overrides: object) -> Projection:
    """Start projecting ``target`` (1×3×H×W in [0, 1]) into G's latent space; returns a :class:`Projection`.

    ``settings``: a :class:`ProjectionSettings` (default: the official choices, 200 steps,
    LPIPS-VGG); ``overrides``: any of its fields as keywords, applied on top (so the old
    ``project(G, target, steps=100, space="w+", ...)`` works unchanged). An unknown keyword
    is a TypeError listing the fields.

    >>> run = project(G, target, steps=100, perceptual="lpips-vgg-random")
    >>> for step in run:              # a widget updates its figure here; run.close() stops
    ...     pass
    >>> best = run.result()           # best.ws, best.image, best.trajectory
    """
    return Projection(G, target, settings, **overrides)
