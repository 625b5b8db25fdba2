"""Panorama mode: style transfer of 360° equirectangular images whose left and right edges meet.

:func:`circular_padding` makes every convolution and pooling of a network wrap around
horizontally while a block runs, so the optimised image has no seam;
:func:`seam_error` measures how visible the seam is.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn

from artlab.images import ensure_image_batch
from artlab.models import Backbone

__all__ = ["circular_padding", "seam_error"]


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
