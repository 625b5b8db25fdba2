"""The Gram matrix, what "style" is to a CNN (Gatys, Ecker & Bethge 2015, 2016).

A layer's feature map with C channels over H×W positions, flattened to F (C × H·W),
has the Gram matrix G = F Fᵀ: entry (i, j) says how strongly channels i and j fire
*together*, summed over all positions. Summing over positions throws away where
things are and keeps which features co-occur, which is why Grams describe texture
and style rather than content.

:func:`gram` computes it for a batch of feature maps; :func:`compute_grams` gives one
image's Grams at several layers as a :class:`GramSet`, which remembers the network and
normalisation so that only comparable Grams are compared later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from artlab.gram.checks import (
    check_flat,
    check_image_size,
    check_normalize,
    single_image,
    style_layers,
)
from artlab.models import Backbone, features

__all__ = ["gram", "GramSet", "grams_and_features", "compute_grams"]


def gram(features: Tensor, normalize: str = "gatys", *, dtype: torch.dtype | None = None) -> Tensor:
    """Gram matrices of a batch of feature maps: N×C×H×W -> N×C×C, G = F Fᵀ per image.

    One batched matmul over the flattened maps F (N × C × H·W).

    normalize:
      * ``"gatys"``: divide by C·H·W. This is the common implementation (e.g. the
        PyTorch style-transfer tutorial), not the paper's formula: Gatys et al. keep
        G unnormalised and put the scale into the loss, E_l = 1/(4 N_l² M_l²) ·
        Σ_ij (G_ij − A_ij)² with N_l = C channels and M_l = H·W positions. With
        G' = G / (C·H·W), the mean squared difference of G' used by
        :func:`style_distance` equals 4/C² times the paper's E_l (and with "hw" it
        equals exactly 4·E_l). Values are small (≈ mean activation²/C).
      * ``"hw"``: divide by H·W, the per-position average of the channel products;
        comparable across image sizes and the easiest to read (the diagonal is the
        mean squared activation of each channel).
      * ``"none"``: F Fᵀ as is; grows with the image area.

    dtype: compute in this dtype (e.g. ``torch.float64`` for inspection); default
    the features' dtype. Gradients flow through when ``features`` requires grad.
    """
    normalize = check_normalize(normalize)
    if not isinstance(features, Tensor):
        raise TypeError(f"features must be a torch.Tensor N×C×H×W, got {type(features).__name__}")
    if features.ndim != 4:
        hint = (" (a single C×H×W map: add the batch axis with features.unsqueeze(0))" if features.ndim == 3
                else " (flat N×C features from a linear layer have no positions: use a convolutional layer)")
        raise ValueError(f"gram expects feature maps N×C×H×W, got shape {tuple(features.shape)}{hint}")
    if dtype is not None:
        features = features.to(dtype)
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    g = torch.bmm(flat, flat.transpose(1, 2))
    if normalize == "gatys":
        g = g / (c * h * w)
    elif normalize == "hw":
        g = g / (h * w)
    return g


@dataclass
class GramSet:
    """The Grams of one image at several layers, and how they were made.

    ``grams`` maps layer -> C×C tensor (the batch axis removed). ``model_name`` and
    ``normalize`` are checked by :func:`style_distance` so that only comparable
    Grams are compared; ``model_label`` says which weights made them.
    """

    model_name: str
    model_label: str
    normalize: str
    image_size: tuple[int, int]
    grams: dict[str, Tensor] = field(default_factory=dict)

    def layers(self) -> list[str]:
        """The layers, in the order they were computed."""
        return list(self.grams)


def grams_and_features(model: Backbone, image: Tensor, layers: list[str], normalize: str, dtype: torch.dtype | None,
                       extra: Sequence[str] = ()) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Grams (C×C, batch axis removed) at ``layers`` and raw features at ``extra`` layers, from one forward pass.

    No checks: callers validate ``layers`` (:func:`~artlab.gram.checks.style_layers`) and the image first. The
    shuffle experiment uses it to get an image's Grams and content features at once.
    """
    wanted = list(dict.fromkeys([*layers, *extra]))
    feats = features(model, image, wanted)
    grams = {layer: gram(feats[layer], normalize, dtype=dtype)[0] for layer in layers}
    return grams, {layer: feats[layer] for layer in extra}


def compute_grams(
    model: Backbone,
    image: Tensor,
    layers: Sequence[str] | None = None,
    *,
    normalize: str = "gatys",
    dtype: torch.dtype | None = None,
) -> GramSet:
    """The Grams of one image (1×3×H×W or 3×H×W in [0, 1]) at ``layers`` under ``model``.

    ``layers`` defaults to the model's style layers (VGG: relu1_1 … relu5_1, as in
    Gatys et al.). Raises ``ValueError`` when the image is too small for the deepest
    layer (its feature map would vanish) and warns (:class:`ReceptiveFieldWarning`)
    when that layer's receptive field covers the whole image, and
    (:class:`FlatImageWarning`) when the image has no spatial variation.
    """
    normalize = check_normalize(normalize)
    image = single_image(image)
    layers = style_layers(model, layers)
    size = (int(image.shape[-2]), int(image.shape[-1]))
    check_image_size(model, size, layers)
    check_flat(image)
    grams, _ = grams_and_features(model, image, layers, normalize, dtype)
    return GramSet(model.name, model.label, normalize, size, grams)
