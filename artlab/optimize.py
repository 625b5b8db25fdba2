"""Optimising an image against a differentiable objective: the loop behind texture synthesis and style transfer.

Gatys et al. (2015, 2016) make images by gradient descent on the pixels: start
from noise (or a photo) and lower a loss computed from CNN features. Texture
synthesis (:func:`artlab.gram.synthesize_texture`) and style transfer
(:func:`artlab.transfer.stylize`) differ only in the loss, so they share this loop:
:class:`ImageOptimizer` takes one optimiser step per :meth:`~ImageOptimizer.step`
call, which lets generators yield after every step (widgets, scripts and tests drive
the same loop and can stop it).

What the loop does beyond a textbook ``optimizer.step(closure)``, and why:

* **Pixels stay a valid image.** The objective is evaluated at ``x.clamp(0, 1)``
  (so it is defined wherever L-BFGS's line search probes) and ``x`` is clamped after
  every step (so every preview is a valid image). Gatys et al. optimise unconstrained
  pixels of the mean-subtracted network input; this is a departure.
* **L-BFGS with a strong Wolfe line search and restarts** (``torch.optim.LBFGS`` with
  ``max_iter=1``: one iteration per step). torch's default evaluation budget for one
  iteration (``max_eval = max_iter * 5 // 4`` = 1) leaves the line search no second
  trial: when the first trial fails it returns a zero step. The budget is raised to
  ``1 + max_line_search`` (default 21). Measured (texture synthesis, VGG-19 random
  init, a 96 px pointillist painting from the sample corpus, 30 steps): with the
  one-trial search the loss fell to 0.57x of its start, with the real search to
  3.9e-4x. The clamp moves ``x`` behind L-BFGS's back and the ReLU network's loss
  has kinks, so its curvature memory can propose a direction with no decrease;
  whenever a step makes no progress the memory is cleared (a restart from steepest
  descent).
* **Loss scaling.** The objective is divided by its first value: L-BFGS's curvature
  test (yᵀs > 1e-10) and tolerances are absolute, and Gram losses are tiny. Reported
  losses are unscaled.
* **No evaluation is wasted.** A step starts by evaluating the current image, which
  is usually the point the previous step's line search evaluated last. The loss and
  the gradient with respect to the clamped image are cached, so that evaluation is
  reused instead of recomputed (one forward/backward pass per step saved).
* **Pixels on a bound can come back.** The gradient with respect to ``x`` is the
  gradient at the clamped image, zero where ``x`` lies outside [0, 1] (as autograd's
  ``clamp`` gives). *On* a bound autograd gives zero too, which freezes a pixel once
  it has been clamped to 0 or 1 for good; here it is kept when descent would move
  the pixel back inside, and zeroed when it would push it further out (a projected
  gradient: those directions cannot lower the loss and only waste line-search
  trials). Measured (tiny VGG, 64 px, two paintings, texture synthesis and style
  transfer, 30 L-BFGS or 60 Adam steps): a lower final loss than with autograd's
  gradient in 7 of 8 runs (e.g. Adam texture 2.3e-3 vs 4.4e-3 of the first loss);
  passing the gradient on the bounds both ways cost L-BFGS up to 2.7x the
  evaluations and ended higher.
* **Best image tracking.** Every evaluated start-of-step image is a candidate; the
  lowest-loss one is kept (:attr:`ImageOptimizer.best_image`), so an early stop or a
  failure never loses the best result. :meth:`ImageOptimizer.evaluate` scores the
  current image once more (the last step's result would otherwise never be scored).
* **Non-finite detection.** A NaN or infinite loss or gradient stops the optimiser:
  ``x`` goes back to the last image whose loss was finite and the step reports
  ``status="nonfinite"``; the best image stays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from artlab.models import Backbone

__all__ = [
    "OPTIMIZERS",
    "Objective",
    "OptimizerStep",
    "ImageOptimizer",
    "check_optimizer",
    "MEMORY_MARGIN",
    "OptimizationTooLarge",
    "available_memory",
    "estimate_memory",
    "largest_side",
    "deepest_layer",
    "check_memory",
]

#: The optimisers :class:`ImageOptimizer` knows.
OPTIMIZERS = ("lbfgs", "adam")

#: An objective maps an image (1×C×H×W, values in [0, 1], requires grad) to
#: (total loss, named terms). The terms are reported, not optimised.
Objective = Callable[[Tensor], "tuple[Tensor, Mapping[str, Tensor]]"]


def check_optimizer(optimizer: object, lr: object, default_lr: Mapping[str, float]) -> tuple[str, float]:
    """Validate an optimiser name and learning rate; ``lr=None`` takes ``default_lr[optimizer]``."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(map(repr, OPTIMIZERS))}")
    if lr is None:
        lr = default_lr[optimizer]  # type: ignore[index]
    if isinstance(lr, bool) or not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    return optimizer, float(lr)  # type: ignore[return-value]


@dataclass
class OptimizerStep:
    """What one :meth:`ImageOptimizer.step` saw.

    ``loss`` and ``terms`` are those of the image at the start of the step (the
    optimiser's first evaluation), unscaled. ``best_loss`` is the loss of the best
    image so far. ``status`` is ``"ok"`` or ``"nonfinite"`` (the loss or its gradient
    was NaN/inf: the optimiser stopped and ``x`` holds the last finite image).
    """

    loss: float
    terms: dict[str, float]
    best_loss: float
    status: str = "ok"


def _projected(x: Tensor, grad: Tensor) -> Tensor:
    """The gradient of f(clamp(x, 0, 1)) for a descent method: kept inside (0, 1), kept on a bound
    when descent would move the pixel back inside (0 with g < 0, 1 with g > 0), zero otherwise."""
    keep = ((x > 0) & (x < 1)) | ((x == 0) & (grad < 0)) | ((x == 1) & (grad > 0))
    return torch.where(keep, grad, torch.zeros((), dtype=grad.dtype, device=grad.device))


class _NonFinite(Exception):
    """Raised inside the closure to abort a step whose loss or gradient is not finite."""


@dataclass
class _Evaluation:
    image: Tensor  # the clamped image evaluated
    loss: Tensor  # unscaled, 0-dim
    grad: Tensor  # d(scaled loss)/d(image)
    terms: dict[str, float] = field(default_factory=dict)


class ImageOptimizer:
    """Optimise the pixels of one image against ``objective``, one step per :meth:`step` call.

    start: the first image (1×C×H×W in [0, 1], any channel count the objective
    accepts); it is copied to a leaf tensor on its own device. optimizer:
    ``"lbfgs"`` (strong Wolfe line search, ``history_size`` pairs, restarts) or
    ``"adam"``; ``lr`` their step size (L-BFGS: 1 is the natural choice; Adam: in
    [0, 1] pixel units). See the module docstring for what the loop adds to
    ``torch.optim`` and why.
    """

    def __init__(self, objective: Objective, start: Tensor, *, optimizer: str = "lbfgs", lr: float = 1.0,
                 history_size: int = 50, max_line_search: int = 20) -> None:
        optimizer, lr = check_optimizer(optimizer, lr, {})
        self.objective = objective
        self.optimizer = optimizer
        self.x = start.detach().clamp(0.0, 1.0).clone().requires_grad_(True)
        if optimizer == "lbfgs":
            self._opt: torch.optim.Optimizer = torch.optim.LBFGS(
                # max_eval: torch's default is max_iter * 5 // 4 = 1 evaluation, which leaves the line
                # search no trial after the first (it then returns t = 0): allow it a real search
                [self.x], lr=lr, max_iter=1, max_eval=1 + max_line_search, history_size=history_size,
                line_search_fn="strong_wolfe",
            )
        else:
            self._opt = torch.optim.Adam([self.x], lr=lr)
        self._scale: float | None = None  # 1 / first finite loss
        self._cache: _Evaluation | None = None  # the last evaluation with a gradient
        self._first: _Evaluation | None = None  # the first evaluation of the current step
        self._previous = math.inf  # the last step's start loss
        self._last_good = self.x.detach().clone()  # the last image whose loss was finite
        self.best_loss = math.inf
        self._best_image: Tensor | None = None
        self.steps_done = 0
        self.stopped = False

    # ----------------------------------------------------------------- state

    @property
    def best_image(self) -> Tensor | None:
        """The lowest-loss image evaluated so far (a CPU copy), None before the first step."""
        return None if self._best_image is None else self._best_image.clone()

    @property
    def current_image(self) -> Tensor:
        """The image the optimiser holds now (clamped, detached copy on its device)."""
        return self.x.detach().clamp(0.0, 1.0).clone()

    def _consider(self, loss: float, image: Tensor) -> None:
        if math.isfinite(loss) and loss < self.best_loss:
            self.best_loss, self._best_image = loss, image.detach().to("cpu", copy=True)

    # ----------------------------------------------------------------- evaluation

    def _evaluate(self, image: Tensor) -> _Evaluation:
        """Loss and scaled gradient at a clamped image; reuses the cached evaluation of the same image."""
        cache = self._cache
        if cache is not None and cache.image.shape == image.shape and torch.equal(cache.image, image):
            return cache
        image = image.detach().requires_grad_(True)
        with torch.enable_grad():
            loss, terms = self.objective(image)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise _NonFinite
            if self._scale is None:
                self._scale = 1.0 / max(value, 1e-30)
            (grad,) = torch.autograd.grad(loss * self._scale, image)
        if not bool(torch.isfinite(grad).all()):
            raise _NonFinite
        evaluation = _Evaluation(image.detach(), loss.detach(), grad,
                                 {name: float(t.detach()) for name, t in terms.items()})
        self._cache = evaluation
        return evaluation

    def _closure(self) -> Tensor:
        x = self.x
        self._opt.zero_grad(set_to_none=True)
        # L-BFGS's line search tries points outside [0, 1]; the objective is taken at the
        # clamped image, so it is defined everywhere and equals the loss of a valid image.
        evaluation = self._evaluate(x.detach().clamp(0.0, 1.0))
        if self._first is None:
            self._first = evaluation
        # the gradient through x.clamp(0, 1), except on the bounds (see the module docstring)
        x.grad = _projected(x.detach(), evaluation.grad)
        return evaluation.loss * self._scale

    def step(self) -> OptimizerStep:
        """One optimiser step (L-BFGS: one iteration with its line search; Adam: one update)."""
        if self.stopped:
            raise RuntimeError("this optimiser stopped after a non-finite loss; start a new one from best_image")
        self._first = None
        start = self.x.detach().clamp(0.0, 1.0)
        try:
            if self.optimizer == "lbfgs":
                self._opt.step(self._closure)
            else:
                self._closure()
                self._opt.step()
            with torch.no_grad():
                self.x.clamp_(0.0, 1.0)  # departure from the paper: keep a valid image
                if not bool(torch.isfinite(self.x).all()):
                    raise _NonFinite
        except _NonFinite:
            return self._stop()
        first = self._first
        assert first is not None
        loss = float(first.loss)
        self._last_good = start
        self._consider(loss, first.image)
        if self.optimizer == "lbfgs":
            # A step that made no progress (line search step t = 0, or a loss that did not
            # fall) leaves L-BFGS repeating itself: clear its memory, restart from steepest descent.
            if self._opt.state[self.x].get("t", 1.0) == 0 or loss >= self._previous:
                self._opt.state.clear()
            self._previous = loss
        self.steps_done += 1
        return OptimizerStep(loss, dict(first.terms), self.best_loss)

    def _stop(self) -> OptimizerStep:
        """After a non-finite evaluation: put back the last finite image and refuse further steps."""
        self.stopped = True
        first = self._first
        with torch.no_grad():  # the step's start image if its loss was finite, else the one before
            self.x.copy_(first.image if first is not None else self._last_good)
        self._cache = None
        loss = float(first.loss) if first is not None else math.nan
        terms = dict(first.terms) if first is not None else {}
        if first is not None:  # the step's start image was fine; only a later probe failed
            self._consider(loss, first.image)
        return OptimizerStep(loss, terms, self.best_loss, "nonfinite")

    def forget_curvature(self) -> None:
        """Clear L-BFGS's curvature memory (a restart from steepest descent; nothing to do for Adam).

        For callers that undo a step interrupted halfway: torch updates the curvature pairs
        in place before the line search, so an interrupted step may leave them half-written.
        """
        if self.optimizer == "lbfgs":
            self._opt.state.clear()  # as step() does after a step without progress

    def evaluate(self) -> float:
        """Score the current image (no gradient) and keep it if it is the best; returns its loss.

        Call after the last step: a step's result is otherwise only scored by the next step.
        """
        image = self.x.detach().clamp(0.0, 1.0)
        cache = self._cache
        if cache is not None and torch.equal(cache.image, image):
            loss = float(cache.loss)
        else:
            with torch.no_grad():
                loss = float(self.objective(image)[0])
        self._consider(loss, image)
        return loss


# --------------------------------------------------------------------------- memory
#
# One estimate for every image optimisation (texture synthesis in artlab.gram, style
# transfer in artlab.transfer): checked before anything large is allocated, so a size
# that cannot fit is refused with the size that would, instead of the machine swapping
# or the process being killed.

#: A run must fit in this fraction of the available memory.
MEMORY_MARGIN = 0.9

_PROBE = 64  # side of the probe image whose activation sizes are scaled to the real size
_WORKSPACE = 16 * 2**20  # float32 elements (64 MiB) of convolution workspace and the like
_activation_cache: dict[tuple[int, str, str], int] = {}


class OptimizationTooLarge(MemoryError):
    """An image optimisation (texture synthesis, style transfer) would not fit in memory.

    ``needed`` and ``available`` are bytes; ``largest_size`` is the longest output side (px)
    that would fit, or None when no size does or when the size is not the problem (an
    input image is: the message says which and what to do).
    """

    def __init__(self, message: str, *, needed: int, available: int, largest_size: int | None) -> None:
        super().__init__(message)
        self.needed = needed
        self.available = available
        self.largest_size = largest_size


def _cgroup_free() -> int | None:
    """Free memory under this process's cgroup (v2) limit, if there is one."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        return max(0, int(limit) - used)
    except (OSError, ValueError):
        return None


def available_memory(device: str | torch.device = "cpu") -> int:
    """Bytes a run can still allocate on ``device``.

    CUDA: free device memory (``torch.cuda.mem_get_info``) plus what torch has cached
    but not used. CPU: ``MemAvailable`` from /proc/meminfo, capped by the cgroup limit
    when there is one (containers) and by the address space this process may still map
    under ``RLIMIT_AS`` (``ulimit -v``, a sandbox); if none can be read, assumes 4 GiB.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    candidates = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
                break
    except (OSError, ValueError, IndexError):
        pass
    cgroup = _cgroup_free()
    if cgroup is not None:
        candidates.append(cgroup)
    address_space = _address_space_free()
    if address_space is not None:
        candidates.append(address_space)
    return min(candidates) if candidates else 4 * 2**30


def _address_space_free() -> int | None:
    """Bytes of address space left under this process's RLIMIT_AS, if one is set (Linux)."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit == resource.RLIM_INFINITY:
            return None
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return max(0, limit - int(line.split()[1]) * 1024)
    except (ImportError, OSError, ValueError, IndexError, AttributeError):
        pass
    return None


def deepest_layer(model: Backbone, layers: Sequence[str]) -> str:
    """The canonical name of the deepest of ``layers`` (the one a forward pass must reach for all of them)."""
    return model.deepest(layers)


def _activation_elements(model: Backbone, deepest: str) -> int:
    """Elements of every leaf module's output, up to ``deepest``, for a _PROBE×_PROBE image."""
    key = (id(model), model.name, deepest)
    if key not in _activation_cache:
        total = [0]

        def count(_module: nn.Module, _inputs: tuple, output: object) -> None:
            if isinstance(output, Tensor):
                total[0] += output.numel()

        leaves = [m for m in model.net.modules() if not any(True for _ in m.children())]
        handles = [m.register_forward_hook(count) for m in leaves]
        try:
            probe = torch.zeros(1, 3, _PROBE, _PROBE, device=model.mean.device, dtype=model.mean.dtype)
            with torch.no_grad():
                model(probe, [deepest])
        finally:
            for handle in handles:
                handle.remove()
        _activation_cache[key] = total[0]
    return _activation_cache[key]


def estimate_memory(
    model: Backbone, size: tuple[int, int], optimizer: str = "lbfgs", *, layers: Sequence[str],
    history_size: int = 50, targets: Sequence[tuple[int, int]] = (), held: int = 0,
) -> int:
    """Bytes an image optimisation at ``size`` = (h, w) is expected to need at its peak.

    Counted, in float32:

    * the optimisation's forward pass up to the deepest of ``layers`` (every leaf
      module's output, measured once per model on a 64 px probe and scaled by area),
      times 1.5 (activations kept for the backward pass, their gradients and max-pooling
      indices), plus 64 MiB of workspace;
    * the forward passes that compute targets (a style image's or a texture's Grams) at
      each size in ``targets``: without a backward pass, one at a time and before the
      optimisation, so only the largest of them and the optimisation's counts;
    * the optimiser's state (L-BFGS: 2·history_size + 6 image-sized vectors; Adam: 4);
    * ``held``: pixels (H·W; three channels each) of the other images kept meanwhile
      (content, style images and their resized copies, a texture's resized target).

    The model's own weights are not counted (they are already in memory). Calibration
    (VGG-19, CPU, ``benchmarks/bench_transfer.py``): the peak resident memory of 3-step
    style transfers grew by 87, 288 and 797 MiB at 128, 256 and 512 px; the estimate
    says 123, 300 and 1009 MiB, so it errs on the safe side.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(map(repr, OPTIMIZERS))}")
    h, w = int(size[0]), int(size[1])
    per_pixel = _activation_elements(model, deepest_layer(model, layers)) / (_PROBE * _PROBE)
    forward = max([1.5 * per_pixel * h * w] + [per_pixel * int(th) * int(tw) for th, tw in targets])
    pixels = 3 * h * w
    vectors = (2 * history_size + 6) if optimizer == "lbfgs" else 4
    return int(4 * (forward + _WORKSPACE + vectors * pixels + 3 * held))


def largest_side(needed_at: Callable[[tuple[int, int]], int], aspect: float, available: int) -> int | None:
    """The longest side (px) of an output of ``aspect`` = height/width for which
    ``needed_at((h, w))`` fits in :data:`MEMORY_MARGIN` of ``available`` bytes; None if none does."""

    def shape(side: int) -> tuple[int, int]:
        if aspect >= 1:
            return side, max(1, round(side / aspect))
        return max(1, round(side * aspect)), side

    def fits(side: int) -> bool:
        return needed_at(shape(side)) <= MEMORY_MARGIN * available

    lo, hi = 0, 1
    while fits(hi) and hi < 2**17:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo or None


def gib(n: float) -> str:
    """Bytes as "1.23 GiB" (from 256 MiB up) or "123 MiB", for messages."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"


def check_memory(
    needed_at: Callable[[tuple[int, int]], int], size: tuple[int, int], *, what: str, device: str | torch.device,
    available: int, error: type[OptimizationTooLarge] = OptimizationTooLarge, optimizer: str = "lbfgs",
    culprit: Callable[[], str | None] | None = None,
) -> int:
    """The estimated bytes of a run at ``size``; raise ``error`` naming what would fit if it would not.

    ``needed_at(shape)`` is the run's estimate (:func:`estimate_memory`) at an output
    shape; ``what`` names the run in the message ("a style transfer at 512×512 px with
    vgg19"). When the run does not fit, ``culprit()`` may name an input that is too large
    whatever the size (a very elongated style image): the message then says what to do
    with it and ``largest_size`` is None; otherwise the message names the largest size
    that fits (:func:`largest_side`).
    """
    needed = needed_at(size)
    if needed <= MEMORY_MARGIN * available:
        return needed
    head = (f"{what} needs about {gib(needed)} but only {gib(available)} is available on {device} "
            f"({MEMORY_MARGIN:.0%} of it may be used)")
    blame = culprit() if culprit is not None else None
    if blame:
        raise error(f"{head}; {blame}", needed=needed, available=available, largest_size=None)
    side = largest_side(needed_at, size[0] / size[1], available)
    advice = (f"the largest size that fits is about {side} px on the longer side: use size={side}"
              if side else "no size fits; free some memory")
    raise error(
        f"{head}; {advice}" + (", or use optimizer='adam' (less optimiser memory)" if optimizer == "lbfgs" else ""),
        needed=needed, available=available, largest_size=side,
    )

