"""Memory: a style transfer is checked against the available memory before anything runs.

:func:`estimate_memory` is :func:`artlab.optimize.estimate_memory` with the images a
style transfer holds (content, styles and their resized copies, a very elongated style
enlarged for the deepest layer); :func:`largest_size` is the longest side that fits;
:func:`check_transfer_memory` raises :class:`TransferTooLarge` naming that size (or the
style image to crop) instead of letting the machine swap or the process be killed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from artlab.models import Backbone, receptive_field
from artlab.optimize import (
    MEMORY_MARGIN,
    OptimizationTooLarge,
    available_memory,
    check_memory,
    deepest_layer,
    largest_side,
)
from artlab.optimize import estimate_memory as _estimate
from artlab.transfer.settings import check_count

__all__ = ["TransferTooLarge", "available_memory", "estimate_memory", "largest_size", "check_transfer_memory"]


class TransferTooLarge(OptimizationTooLarge):
    """A style transfer would not fit in memory; ``largest_size`` is the longest side that would.

    ``largest_size`` is None when no size fits, or when a style image is the problem (a
    very elongated one is enlarged until the deepest layer sees it): the message names it.
    """


def _style_shape(style: tuple[int, int], long_side: int, stride: int) -> tuple[int, int]:
    """The (h, w) a style of shape ``style`` is resized to for an output whose longer side is
    ``long_side``: that longer side, its own aspect kept, enlarged until its shorter side
    reaches the deepest layer's ``stride`` (as the engine's ``StyleTransfer`` resizes styles)."""
    h, w = int(style[0]), int(style[1])
    long_side = max(long_side, math.ceil(stride * max(h, w) / min(h, w)))
    scale = long_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def _stride(model: Backbone, layers: Sequence[str]) -> int:
    try:
        return receptive_field(model, deepest_layer(model, layers))[1]
    except ValueError:
        return 1


def _default_layers(model: Backbone) -> list[str]:
    return [*model.spec.style_layers, *([model.spec.content_layer] if model.spec.content_layer else [])]


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
        held = (2 + 2 * check_count(n_styles, "n_styles")) * h * w  # content (+ colour copy) and styles (+ resized)
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


def check_transfer_memory(model: Backbone, size: tuple[int, int], n_styles: int, optimizer: str,
                          layers: Sequence[str], device: torch.device,
                          styles: Sequence[tuple[int, int]] | None = None) -> int:
    """The estimated bytes of a run at ``size`` = (h, w) on ``device``; raise TransferTooLarge if it would not fit.

    :func:`artlab.transfer.stylize` calls it before anything is allocated.

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
        if plain > MEMORY_MARGIN * available:
            return None  # the size is the problem
        stride = _stride(model, layers)
        worst = max(range(len(styles)), key=lambda i: math.prod(_style_shape(styles[i], max(size), stride)))
        h, w = (int(n) for n in styles[worst])
        rh, rw = _style_shape(styles[worst], max(size), stride)
        name = "the style image" if len(styles) == 1 else f"style image {worst}"
        return (f"{name} ({h:,}×{w:,} px, aspect ratio 1:{max(h, w) / min(h, w):,.0f}) is so elongated that it "
                f"would be enlarged to {rh:,}×{rw:,} px so that its shorter side reaches the {stride} px stride of "
                f"{deepest_layer(model, layers)}; crop it to a less elongated piece (at most about 1:"
                f"{max(1, max(size) // stride)} at this size) or leave the deepest layer out of style_layers")

    return check_memory(
        needed_at, size, what=f"a style transfer at {size[0]}×{size[1]} px with {model.name}", device=device,
        available=available, error=TransferTooLarge, optimizer=optimizer, culprit=culprit,
    )
