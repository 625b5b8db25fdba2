"""Checks shared by every Gram computation: layers, normalisations, image sizes and flat images.

Grams are only meaningful for layers the network has, for images large enough that
the deepest layer still has a feature map, and for images with some texture. These
checks refuse what cannot work with a message saying what to do, and warn
(:class:`ReceptiveFieldWarning`, :class:`FlatImageWarning`) about what works but means
little. Sizes are checked against each layer's receptive field and stride
(:func:`artlab.models.receptive_field`). :mod:`artlab.transfer` uses the same checks.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from torch import Tensor

from artlab.images import ensure_image_batch
from artlab.models import Backbone, receptive_field

__all__ = [
    "NORMALIZATIONS",
    "FlatImageWarning",
    "ReceptiveFieldWarning",
    "check_normalize",
    "style_layers",
    "check_image_size",
    "check_flat",
    "single_image",
    "positive_int",
    "output_size",
]

#: How :func:`artlab.gram.gram` scales F Fᵀ: by C·H·W ("gatys"), by H·W ("hw") or not at all ("none").
NORMALIZATIONS = ("gatys", "hw", "none")

_FLAT_STD = 1e-4  # per-channel spatial standard deviation below which an image counts as flat


class FlatImageWarning(UserWarning):
    """An image without spatial variation: its Grams only encode a constant colour."""


class ReceptiveFieldWarning(UserWarning):
    """An image smaller than a layer's receptive field: that layer sees it whole."""


def check_normalize(normalize: object) -> str:
    """``normalize`` if it is one of :data:`NORMALIZATIONS`, else ValueError listing them."""
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize {normalize!r}; choose one of {', '.join(map(repr, NORMALIZATIONS))}")
    return normalize  # type: ignore[return-value]


def style_layers(model: Backbone, layers: Sequence[str] | str | None) -> list[str]:
    """``layers`` as a list (default: the model's style layers), validated against the model.

    A single name becomes a one-item list; an empty list, duplicates or a name the model
    does not have raise ValueError (the last one listing the valid names). Shared by every
    function that takes style layers (Grams, distances, texture synthesis, style transfer).
    """
    if layers is None:
        layers = list(model.spec.style_layers)
        if not layers:
            raise ValueError(f"{model.name} has no default style layers; pass layers=[...] explicitly")
    elif isinstance(layers, str):
        layers = [layers]
    else:
        layers = list(layers)
    if not layers:
        raise ValueError("no layers given; pass at least one layer name, e.g. layers=['relu1_1']")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers contains duplicates: {layers}")
    for layer in layers:
        model.resolve_layer(layer)  # raises with the valid names
    return layers


def _deepest(model: Backbone, layers: Sequence[str]) -> str:
    return max(layers, key=model.depth)


def check_image_size(model: Backbone, size: tuple[int, int], layers: Sequence[str], *, stacklevel: int = 3) -> None:
    """Refuse images whose deepest feature map would vanish; warn when the deepest layer sees them whole.

    ``size`` is the (height, width) the network will see, ``layers`` the layers whose
    features are used. Smaller than the deepest layer's stride: ValueError naming the
    size needed. Smaller than its receptive field: :class:`ReceptiveFieldWarning`
    (that layer's Gram then describes global layout, not texture). ``stacklevel`` points
    the warning at the caller's caller (3: the function that called this one's caller).
    """
    layer = _deepest(model, layers)
    try:
        rf, stride = receptive_field(model, layer)
    except ValueError:  # past a global pool: gram() itself refuses those flat features
        return
    h, w = size
    if min(h, w) < stride:
        raise ValueError(
            f"image is {h}×{w} px but {layer} needs at least {stride}×{stride} (it downsamples by {stride}), "
            f"so its feature map would be empty; use size>={stride} (ideally >={rf}, the layer's receptive "
            f"field) or leave {layer} out of layers"
        )
    if min(h, w) < rf:
        warnings.warn(
            f"image is {h}×{w} px, smaller than the {rf} px receptive field of {layer} ({model.name}): that "
            f"layer sees the whole image at once, so its Gram describes global layout rather than texture. "
            f"Use size>={rf} for texture statistics at {layer}.",
            ReceptiveFieldWarning,
            stacklevel=stacklevel,
        )


def check_flat(image: Tensor, *, stacklevel: int = 3) -> None:
    """Warn (:class:`FlatImageWarning`) when an image has no spatial variation: its Grams are a constant colour."""
    # Per channel: a uniformly coloured image (say pure red) has a large std across channels
    # but none across positions, and it is the positions that Grams summarise.
    spatial_std = image.detach().flatten(2).std(dim=2, unbiased=False)
    if float(spatial_std.max()) < _FLAT_STD:
        warnings.warn(
            "the image is flat (no variation across pixels): its Grams only encode a constant colour, "
            "so style distances to it mean little. Use an image with texture.",
            FlatImageWarning,
            stacklevel=stacklevel,
        )


def single_image(image: Tensor, name: str = "image") -> Tensor:
    """``image`` as a checked 1×3×H×W batch; a batch of several images is refused (``name`` in the message)."""
    image = ensure_image_batch(image, name)
    if image.shape[0] != 1:
        raise ValueError(
            f"{name} must be one image (1×3×H×W), got a batch of {image.shape[0]}; "
            "call once per image, or use style_distance_matrix for a set of images"
        )
    return image


def positive_int(value: object, name: str) -> int:
    """``value`` as an int >= 1 (bools refused); ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def output_size(size: int | tuple[int, int] | None, like: tuple[int, int]) -> tuple[int, int]:
    """The (height, width) a ``size`` setting means for an image shaped ``like``.

    None keeps ``like``; an int sets the longer side, the aspect ratio kept (rounded, at
    least 1 px), as :func:`artlab.images.load_image` does; a (height, width) pair is
    taken as is. Anything else raises ValueError. Texture synthesis and style transfer
    size their outputs with it.
    """
    if size is None:
        return like
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        side = positive_int(size, "size")
        scale = side / max(like)  # an int sets the longer side, as in artlab.images.load_image
        return max(1, round(like[0] * scale)), max(1, round(like[1] * scale))
    if isinstance(size, Sequence) and len(size) == 2:
        return positive_int(size[0], "size[0]"), positive_int(size[1], "size[1]")
    raise ValueError(f"size must be an int (longer side), a (height, width) pair or None, got {size!r}")
