"""Gram matrices: what "style" is to a CNN (Gatys, Ecker & Bethge 2015, 2016).

A layer's feature map with C channels over H×W positions, flattened to F (C × H·W),
has the Gram matrix G = F Fᵀ: entry (i, j) says how strongly channels i and j fire
*together*, summed over all positions. Summing over positions throws away where
things are and keeps which features co-occur, which is why Grams describe texture
and style rather than content.

This module holds the pure functions behind notebook 02 and the GramInspector
widget:

* :func:`gram`, :func:`compute_grams` (a :class:`GramSet` per image);
* :func:`style_distance` (per-layer Gatys style loss terms) and
  :func:`style_distance_matrix` for a set of images;
* inspection helpers: :func:`cluster_order`, :func:`gram_block`,
  :func:`top_differing_pairs`, :func:`eigen_spectrum`;
* what a Gram forgets: :func:`shuffle_patches`, :func:`shuffle_experiment`;
* what it keeps: :func:`synthesize_texture` (a generator, so widgets, scripts and
  tests drive the same loop and can stop it) and :func:`texture_from`.

Sizes are checked against each layer's receptive field and stride
(:func:`artlab.models.receptive_field`): too small an image is refused with the
size it needs, or warned about when the deepest layer would see the whole image.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from artlab.images import ensure_image_batch, load_image
from artlab.models import Backbone, BackboneSpec, default_layer_weights, features, receptive_field, \
    registered_backbones
from artlab.optimize import ImageOptimizer, OptimizationTooLarge, available_memory, check_memory, check_optimizer
from artlab.optimize import estimate_memory as _estimate_memory

__all__ = [
    "NORMALIZATIONS",
    "FlatImageWarning",
    "ReceptiveFieldWarning",
    "GramSet",
    "StyleDistance",
    "SynthesisStep",
    "TextureSynthesis",
    "TextureTooLarge",
    "gram",
    "compute_grams",
    "style_distance",
    "style_distance_matrix",
    "cluster_order",
    "gram_block",
    "top_differing_pairs",
    "eigen_spectrum",
    "shuffle_patches",
    "shuffle_experiment",
    "synthesize_texture",
    "texture_from",
    "total_variation",
]

#: How :func:`gram` scales F Fᵀ: by C·H·W ("gatys"), by H·W ("hw") or not at all ("none").
NORMALIZATIONS = ("gatys", "hw", "none")

_FLAT_STD = 1e-4  # per-channel spatial standard deviation below which an image counts as flat


class FlatImageWarning(UserWarning):
    """An image without spatial variation: its Grams only encode a constant colour."""


class ReceptiveFieldWarning(UserWarning):
    """An image smaller than a layer's receptive field: that layer sees it whole."""


# --------------------------------------------------------------------------- the Gram matrix


def _check_normalize(normalize: object) -> str:
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize {normalize!r}; choose one of {', '.join(map(repr, NORMALIZATIONS))}")
    return normalize  # type: ignore[return-value]


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
    normalize = _check_normalize(normalize)
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


# --------------------------------------------------------------------------- GramSet


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


def _style_layers(model: Backbone, layers: Sequence[str] | str | None) -> list[str]:
    """``layers`` as a list (default: the model's style layers), validated against the model."""
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
    return max(layers, key=lambda layer: model._index[model.resolve_layer(layer)])


def _check_image_size(model: Backbone, size: tuple[int, int], layers: Sequence[str], *, stacklevel: int = 3) -> None:
    """Refuse images whose deepest feature map would vanish; warn when the deepest layer sees them whole."""
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


def _check_flat(image: Tensor, *, stacklevel: int = 3) -> None:
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


def _single_image(image: Tensor, name: str = "image") -> Tensor:
    image = ensure_image_batch(image, name)
    if image.shape[0] != 1:
        raise ValueError(
            f"{name} must be one image (1×3×H×W), got a batch of {image.shape[0]}; "
            "call once per image, or use style_distance_matrix for a set of images"
        )
    return image


def _grams_of(model: Backbone, image: Tensor, layers: list[str], normalize: str, dtype: torch.dtype | None,
              extra: Sequence[str] = ()) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Grams at ``layers`` and raw features at ``extra`` layers, from one forward pass."""
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
    normalize = _check_normalize(normalize)
    image = _single_image(image)
    layers = _style_layers(model, layers)
    size = (int(image.shape[-2]), int(image.shape[-1]))
    _check_image_size(model, size, layers)
    _check_flat(image)
    grams, _ = _grams_of(model, image, layers, normalize, dtype)
    return GramSet(model.name, model.label, normalize, size, grams)


# --------------------------------------------------------------------------- style distance


@dataclass
class StyleDistance:
    """Per-layer style loss terms between two images and their weighted total.

    ``per_layer[l]`` is mean((G_a − G_b)²) at layer l, ``weights[l]`` its weight w_l,
    ``total`` = Σ_l w_l · per_layer[l].
    """

    layers: list[str]
    per_layer: dict[str, float]
    weights: dict[str, float]
    total: float
    normalize: str

    def as_rows(self) -> list[dict]:
        """Tidy rows (one per layer): layer, distance, weight, weighted."""
        return [
            {"layer": layer, "distance": self.per_layer[layer], "weight": self.weights[layer],
             "weighted": self.weights[layer] * self.per_layer[layer]}
            for layer in self.layers
        ]


def _layer_distance(a: Tensor, b: Tensor) -> Tensor:
    """mean((a − b)²) over the last two axes, in float64 (differences of small Grams lose digits in float32)."""
    return (a.double() - b.double()).square().mean(dim=(-2, -1))


def _layer_weights(layers: list[str], layer_weights: Mapping[str, float] | None,
                   model: Backbone | BackboneSpec | None = None) -> dict[str, float]:
    if layer_weights is None:
        if model is not None:  # the network's own balance of its style layers, else 1/n
            return default_layer_weights(model, layers)
        return {layer: 1.0 / len(layers) for layer in layers}  # Gatys et al.: w_l = 1/(number of layers)
    unknown = [k for k in layer_weights if k not in layers]
    missing = [layer for layer in layers if layer not in layer_weights]
    if unknown or missing:
        raise ValueError(
            f"layer_weights must give one weight per compared layer {layers}; "
            + "; ".join(part for part in (f"missing {missing}" if missing else "",
                                           f"not compared {unknown}" if unknown else "") if part)
        )
    weights = {layer: float(layer_weights[layer]) for layer in layers}
    bad = {k: v for k, v in weights.items() if not (math.isfinite(v) and v >= 0)}
    if bad:
        raise ValueError(f"layer weights must be finite and >= 0, got {bad}")
    return weights


def _as_gram_set(x: GramSet | Tensor, which: str, model: Backbone | None, layers: list[str] | None,
                 normalize: str) -> GramSet:
    if isinstance(x, GramSet):
        return x
    if not isinstance(x, Tensor):
        raise TypeError(f"{which} must be a GramSet or an image tensor, got {type(x).__name__}")
    if model is None:
        raise ValueError(f"{which} is an image: pass model=... so its Grams can be computed (or pass GramSets)")
    return compute_grams(model, _single_image(x, which), layers, normalize=normalize)


def style_distance(
    a: GramSet | Tensor,
    b: GramSet | Tensor,
    *,
    model: Backbone | None = None,
    layers: Sequence[str] | None = None,
    normalize: str | None = None,
    layer_weights: Mapping[str, float] | None = None,
) -> StyleDistance:
    """Per-layer Gatys style loss terms between ``a`` and ``b``, and their weighted total.

    ``a`` and ``b`` are two :class:`GramSet` s, or images (1×3×H×W) with ``model=``
    (their Grams are computed at ``layers``, default the model's style layers, under
    ``normalize``, default "gatys"); one of each works too.

    Per layer: E_l = mean((G_a − G_b)²) = Σ_ij (G_a − G_b)²_ij / C². Gatys et al.
    define E_l = 1/(4 N_l² M_l²) Σ_ij (G − A)²_ij on unnormalised Grams; the term
    here is the paper's times 4/C² for "gatys" Grams (divided by C·H·W), times 4 for
    "hw" Grams and times 4·M_l² for "none" (see :func:`gram`). Departure: a constant
    factor per layer, which only rescales the layer weights. Total: Σ_l w_l E_l with
    w_l from ``layer_weights`` (one weight per layer) or else the network's default
    (:func:`artlab.models.default_layer_weights`: 1/len(layers) for VGG, as in the paper;
    balanced per layer for EfficientNet-Lite).

    Only comparable Grams are compared: a ``ValueError`` says so when the two come
    from different models, normalisations, layer sets or channel counts.
    """
    if normalize is not None:
        _check_normalize(normalize)
    if isinstance(layers, str):
        layers = [layers]
    sets = [x for x in (a, b) if isinstance(x, GramSet)]
    if normalize is None:
        normalize = sets[0].normalize if sets else "gatys"
    if model is not None:
        for name, x in (("A", a), ("B", b)):
            if isinstance(x, GramSet) and x.model_name != model.name:
                raise ValueError(f"{name}'s Grams come from {x.model_name} but model is {model.name}: "
                                 "compute both with the same model")
    # an image compared with a GramSet gets the GramSet's layers
    wanted = list(layers) if layers is not None else (sets[0].layers() if sets else None)
    ga = _as_gram_set(a, "A", model, wanted, normalize)
    gb = _as_gram_set(b, "B", model, wanted, normalize)

    if ga.model_name != gb.model_name:
        raise ValueError(f"A's Grams come from {ga.model_name} but B's from {gb.model_name}: "
                         "compute both with the same model")
    if ga.normalize != gb.normalize:
        raise ValueError(f"A's Grams are normalised with {ga.normalize!r} but B's with {gb.normalize!r}: "
                         "compute both with the same normalize")
    if ga.normalize != normalize:
        raise ValueError(f"the Grams are normalised with {ga.normalize!r} but normalize={normalize!r} was "
                         "asked for: compute them with that normalize, or leave normalize=None")
    if layers is None:
        if set(ga.grams) != set(gb.grams):
            only_a = [layer for layer in ga.grams if layer not in gb.grams]
            only_b = [layer for layer in gb.grams if layer not in ga.grams]
            raise ValueError(
                f"A and B have Grams at different layers: B lacks {only_a}, A lacks {only_b}; "
                "pass layers=[...] to compare the common ones, or compute both with the same layers"
            )
        layers = ga.layers()
    else:
        layers = list(layers)
        if not layers:
            raise ValueError("no layers given; pass at least one layer name")
        missing_a = [layer for layer in layers if layer not in ga.grams]
        missing_b = [layer for layer in layers if layer not in gb.grams]
        if missing_a or missing_b:
            raise ValueError(
                f"requested layers are missing: A lacks {missing_a}, B lacks {missing_b} "
                f"(A has {ga.layers()}, B has {gb.layers()})"
            )
    for layer in layers:
        sa, sb = tuple(ga.grams[layer].shape), tuple(gb.grams[layer].shape)
        if sa != sb:
            raise ValueError(f"at {layer}, A's Gram is {sa[0]}×{sa[-1]} but B's is {sb[0]}×{sb[-1]}: "
                             "different channel counts, so the two cannot be compared")
    network = model if model is not None else registered_backbones().get(ga.model_name)
    weights = _layer_weights(layers, layer_weights, network)
    per_layer = {layer: float(_layer_distance(ga.grams[layer], gb.grams[layer].to(ga.grams[layer].device)))
                 for layer in layers}
    total = float(sum(weights[layer] * per_layer[layer] for layer in layers))
    return StyleDistance(layers, per_layer, weights, total, normalize)


def style_distance_matrix(
    model: Backbone,
    images: Tensor | Sequence[Tensor],
    layers: Sequence[str] | None = None,
    *,
    normalize: str = "gatys",
    layer_weights: Mapping[str, float] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Style distances between every pair of images: the N×N total and the per-layer N×N matrices.

    ``images``: an N×3×H×W batch, or a sequence of single images (sizes may differ).
    Each image's Grams are computed once; the matrices are float64, symmetric, with
    a zero diagonal, and entry (i, j) equals ``style_distance(i, j).total``.
    """
    normalize = _check_normalize(normalize)
    if isinstance(images, Tensor):
        batch = ensure_image_batch(images)
        singles = [batch[i : i + 1] for i in range(batch.shape[0])]
    else:
        singles = [_single_image(img, f"images[{i}]") for i, img in enumerate(images)]
    if len(singles) < 2:
        raise ValueError(f"need at least two images to compare, got {len(singles)}")
    layers = _style_layers(model, layers)
    weights = _layer_weights(layers, layer_weights, model)
    sets = [compute_grams(model, img, layers, normalize=normalize) for img in singles]
    n = len(sets)
    per_layer: dict[str, Tensor] = {}
    for layer in layers:
        stack = torch.stack([s.grams[layer] for s in sets]).double()
        d = torch.zeros(n, n, dtype=torch.float64)
        for i in range(n - 1):  # one row at a time: N×C×C memory, not N²×C×C
            row = _layer_distance(stack[i].unsqueeze(0), stack[i + 1 :]).cpu()
            d[i, i + 1 :] = row
            d[i + 1 :, i] = row
        per_layer[layer] = d
    total = sum(weights[layer] * per_layer[layer] for layer in layers)
    return total, per_layer


# --------------------------------------------------------------------------- inspection


def _square(g: Tensor, name: str) -> Tensor:
    if not isinstance(g, Tensor):
        raise TypeError(f"{name} must be a C×C tensor, got {type(g).__name__}")
    if g.ndim == 3 and g.shape[0] == 1:
        g = g[0]
    if g.ndim != 2 or g.shape[0] != g.shape[1]:
        raise ValueError(f"{name} must be a square C×C Gram matrix, got shape {tuple(g.shape)}")
    return g


def cluster_order(*grams: Tensor) -> list[int]:
    """One channel order for one or more C×C Grams that puts correlated channels next to each other.

    Hierarchical clustering (SciPy, average linkage) of the channels, each described
    by its rows in all given Grams concatenated, with correlation distance
    (1 − Pearson r). Passing A's and B's Grams together gives ONE order for both, so
    their heatmaps line up block for block. Channels whose concatenated row is
    constant (e.g. dead channels: all-zero rows) have no correlation; they go last,
    in index order, instead of producing NaN distances. Deterministic.
    """
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import pdist

    if not grams:
        raise ValueError("cluster_order needs at least one C×C Gram")
    mats = [_square(g, f"grams[{i}]").detach().double().cpu() for i, g in enumerate(grams)]
    sizes = {m.shape[0] for m in mats}
    if len(sizes) != 1:
        raise ValueError(f"all Grams must have the same channel count, got {sorted(sizes)}")
    rows = torch.cat(mats, dim=1).numpy()
    if not np.isfinite(rows).all():
        raise ValueError("the Grams contain NaN or infinite values")
    spread = rows.std(axis=1)
    scale = max(float(np.abs(rows).max()), 1e-300)
    varying = np.flatnonzero(spread > 1e-12 * scale)
    constant = [int(i) for i in np.flatnonzero(spread <= 1e-12 * scale)]
    if len(varying) < 3:
        return [int(i) for i in varying] + constant
    dist = pdist(rows[varying], metric="correlation")
    dist = np.clip(np.nan_to_num(dist, nan=1.0), 0.0, 2.0)  # guard against rounding just outside [0, 2]
    tree = linkage(dist, method="average")
    return [int(varying[i]) for i in leaves_list(tree)] + constant


def gram_block(g: Tensor, order: Sequence[int] | None, start: int, size: int) -> Tensor:
    """The ``size``×``size`` block at (``start``, ``start``) of ``g`` with rows and columns in ``order``.

    ``order`` None keeps the channel index order. The block is clipped at the end of
    the matrix (a block of 64 starting at channel 500 of 512 is 12×12).
    """
    g = _square(g, "g")
    c = g.shape[0]
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or not 0 <= start < c:
        raise ValueError(f"start must be an integer channel position in [0, {c - 1}], got {start!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if order is None:
        index = torch.arange(c)
    else:
        index = torch.as_tensor(list(order), dtype=torch.long)
        if index.numel() != c or not torch.equal(torch.sort(index).values, torch.arange(c)):
            raise ValueError(f"order must be a permutation of range({c}) (one entry per channel), "
                             f"got {index.numel()} entries")
    index = index[start : min(start + int(size), c)].to(g.device)
    return g.index_select(0, index).index_select(1, index)


def top_differing_pairs(a: Tensor, b: Tensor, k: int = 10) -> list[dict]:
    """The ``k`` channel pairs (i <= j, diagonal included) where two Grams differ most.

    Rows {i, j, a, b, diff} with diff = a − b, sorted by |diff|, largest first (ties
    in index order).
    """
    a, b = _square(a, "a"), _square(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    a64, b64 = a.detach().double().cpu(), b.detach().double().to(a.device).cpu()
    i, j = torch.triu_indices(a.shape[0], a.shape[0])
    diff = a64[i, j] - b64[i, j]
    order = torch.sort(diff.abs(), descending=True, stable=True).indices[:k]
    return [{"i": int(i[t]), "j": int(j[t]), "a": float(a64[i[t], j[t]]), "b": float(b64[i[t], j[t]]),
             "diff": float(diff[t])} for t in order]


def eigen_spectrum(g: Tensor) -> Tensor:
    """Eigenvalues of a Gram (float64), largest first, clipped at 0.

    A Gram is symmetric positive semi-definite; tiny negative eigenvalues are rounding
    error. How fast the spectrum falls says how many independent feature directions
    the layer uses for this image.
    """
    g = _square(g, "g").detach().double()
    values = torch.linalg.eigvalsh(g)  # ascending
    return values.flip(0).clamp_min(0.0)


# --------------------------------------------------------------------------- what a Gram forgets


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _crop_to_tiles(images: Tensor, tile: int) -> Tensor:
    """Centre crop so that height and width are multiples of ``tile``."""
    h, w = images.shape[-2:]
    if tile > min(h, w):
        raise ValueError(f"tile {tile} px is larger than the image ({h}×{w} px); use tile <= {min(h, w)}")
    ch, cw = h - h % tile, w - w % tile
    top, left = (h - ch) // 2, (w - cw) // 2
    return images[..., top : top + ch, left : left + cw]


def shuffle_patches(images: Tensor, tile: int, *, seed: int = 0) -> Tensor:
    """Cut images into ``tile``×``tile`` tiles, permute the tiles, and put them back together.

    When height or width is not a multiple of ``tile``, the images are first
    **centre-cropped** to the largest multiple (so the result can be smaller than the
    input; :func:`shuffle_experiment` compares against the same crop). One seeded
    permutation is used for the whole batch; it is never the identity when there are
    at least two tiles (a shuffle that moves nothing would show nothing). ``tile``
    must be at most the shorter side.
    """
    images = ensure_image_batch(images)
    tile = _positive_int(tile, "tile")
    x = _crop_to_tiles(images, tile)
    n, c, h, w = x.shape
    rows, cols = h // tile, w // tile
    count = rows * cols
    generator = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(count, generator=generator)
    while count > 1 and torch.equal(perm, torch.arange(count)):
        perm = torch.randperm(count, generator=generator)
    tiles = x.reshape(n, c, rows, tile, cols, tile).permute(0, 2, 4, 1, 3, 5).reshape(n, count, c, tile, tile)
    tiles = tiles[:, perm.to(x.device)]
    return tiles.reshape(n, rows, cols, c, tile, tile).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w).contiguous()


def shuffle_experiment(
    model: Backbone,
    image: Tensor,
    tiles: Sequence[int] = (128, 64, 32, 16),
    *,
    layers: Sequence[str] | None = None,
    content_layer: str | None = None,
    normalize: str = "gatys",
    seed: int = 0,
) -> list[dict]:
    """Style vs content distance between an image and tile-shuffled versions of it.

    For each tile size: :func:`shuffle_patches`, then the style distance
    (:func:`style_distance` at ``layers``) and the content distance (mean squared
    feature difference at ``content_layer``, default the model's, relu4_2 for VGG,
    as in Gatys et al.'s content loss up to its factor ½) to the original (cropped
    like the shuffled image when the size is not a multiple of the tile). Grams sum
    over positions, so style distance stays small while content distance grows as
    the tiles shrink. Rows: {tile, style_distance, content_distance}.
    """
    normalize = _check_normalize(normalize)
    image = _single_image(image)
    layers = _style_layers(model, layers)
    content_layer = content_layer or model.spec.content_layer
    if content_layer is None:
        raise ValueError(f"{model.name} has no default content layer; pass content_layer=...")
    model.resolve_layer(content_layer)
    tiles = [_positive_int(t, "tile") for t in tiles]
    if not tiles:
        raise ValueError("no tile sizes given")
    _check_image_size(model, tuple(image.shape[-2:]), [*layers, content_layer])
    _check_flat(image)
    originals: dict[tuple[int, int], tuple[GramSet, Tensor]] = {}
    rows = []
    for tile in tiles:
        original = _crop_to_tiles(image, tile)
        key = tuple(original.shape[-2:])
        if key not in originals:
            grams, content = _grams_of(model, original, layers, normalize, None, [content_layer])
            originals[key] = (GramSet(model.name, model.label, normalize, key, grams), content[content_layer])
        ref_grams, ref_content = originals[key]
        shuffled = shuffle_patches(original, tile, seed=seed)
        grams, content = _grams_of(model, shuffled, layers, normalize, None, [content_layer])
        style = style_distance(ref_grams, GramSet(model.name, model.label, normalize, key, grams)).total
        content_d = float((content[content_layer].double() - ref_content.double()).square().mean())
        rows.append({"tile": tile, "style_distance": style, "content_distance": content_d})
    return rows


# --------------------------------------------------------------------------- what a Gram keeps


@dataclass
class SynthesisStep:
    """One step of :func:`synthesize_texture`.

    ``step`` counts from 0. ``loss`` and ``per_layer`` are the style loss of the
    image at the start of this step (what the optimiser evaluated). ``image`` is a
    preview (1×3×H×W, a detached CPU clone of the best image so far) on preview steps
    and on the last step, else None; ``best_loss`` is the loss of that best image.
    ``status`` is ``"ok"``, or ``"nonfinite"`` on the last step of a run stopped by a
    NaN/inf loss or gradient (the best image so far is kept).
    """

    step: int
    loss: float
    per_layer: dict[str, float]
    image: Tensor | None
    best_loss: float
    status: str = "ok"


def total_variation(x: Tensor, *, wrap: bool = False) -> Tensor:
    """Mean squared difference of vertical and horizontal neighbours (``wrap``: with the left/right
    wrap-around pair, for 360° panoramas). The smoothness prior of style transfer's τ term."""
    dy = (x[..., 1:, :] - x[..., :-1, :]).square().mean()
    dx = (torch.roll(x, -1, dims=-1) - x) if wrap else (x[..., 1:] - x[..., :-1])
    return dy + dx.square().mean()


def _texture_loss(model: Backbone, x: Tensor, targets: Mapping[str, Tensor], weights: Mapping[str, float],
                  normalize: str, tv_weight: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """Σ_l w_l mean((G_l(x) − target_l)²) (+ τ·TV(x)) and its per-layer terms (differentiable in x)."""
    feats = features(model, x, list(targets))
    terms = {layer: (gram(feats[layer], normalize)[0] - target).square().mean() for layer, target in targets.items()}
    loss = sum(weights[layer] * term for layer, term in terms.items())
    if tv_weight > 0:
        loss = loss + tv_weight * total_variation(x)
    return loss, terms


def _output_size(size: int | tuple[int, int] | None, like: tuple[int, int]) -> tuple[int, int]:
    if size is None:
        return like
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        side = _positive_int(size, "size")
        scale = side / max(like)  # an int sets the longer side, as in artlab.images.load_image
        return max(1, round(like[0] * scale)), max(1, round(like[1] * scale))
    if isinstance(size, Sequence) and len(size) == 2:
        return _positive_int(size[0], "size[0]"), _positive_int(size[1], "size[1]")
    raise ValueError(f"size must be an int (longer side), a (height, width) pair or None, got {size!r}")


class TextureSynthesis(Iterator[SynthesisStep]):
    """The iterator :func:`synthesize_texture` returns: yields :class:`SynthesisStep` s.

    Besides iterating, it exposes ``best_image`` (1×3×H×W CPU tensor, None before the
    first step) and ``best_loss``, so a consumer that stops early (``break``, then
    ``close()``) still has the best image so far.
    """

    def __init__(self, steps: Iterator[SynthesisStep], optimizer: ImageOptimizer) -> None:
        self._steps = steps
        self._optimizer = optimizer

    def __iter__(self) -> TextureSynthesis:
        return self

    def __next__(self) -> SynthesisStep:
        return next(self._steps)

    def close(self) -> None:
        """Stop the synthesis (the best image so far stays available)."""
        self._steps.close()  # type: ignore[attr-defined]

    @property
    def best_image(self) -> Tensor | None:
        return self._optimizer.best_image

    @property
    def best_loss(self) -> float:
        return self._optimizer.best_loss


class TextureTooLarge(OptimizationTooLarge):
    """A texture synthesis would not fit in memory; ``largest_size`` is the longest side that would."""


def _check_texture_memory(model: Backbone, size: tuple[int, int], optimizer: str, layers: Sequence[str], *,
                          with_target: bool, device: torch.device) -> int:
    """Estimated bytes of a synthesis at ``size``; TextureTooLarge (naming the size that fits) if it would not fit.

    The same estimate as style transfer (:func:`artlab.optimize.estimate_memory`): the
    optimisation's forward and backward pass, the optimiser's state, the image, and for an
    image target its resized copy and the forward pass that takes its Grams (at ``size``).
    """
    def needed_at(shape: tuple[int, int]) -> int:
        h, w = shape
        return _estimate_memory(model, shape, optimizer, layers=layers, targets=[shape] if with_target else [],
                                held=(2 if with_target else 1) * h * w)

    return check_memory(needed_at, size, what=f"a texture synthesis at {size[0]}×{size[1]} px with {model.name}",
                        device=device, available=available_memory(device), error=TextureTooLarge, optimizer=optimizer)


def synthesize_texture(
    model: Backbone,
    target: GramSet | Tensor,
    layers: Sequence[str] | None = None,
    *,
    size: int | tuple[int, int] | None = None,
    steps: int = 200,
    optimizer: str = "lbfgs",
    lr: float | None = None,
    seed: int = 0,
    preview_every: int = 10,
    init: Tensor | None = None,
    device: str | torch.device | None = None,
    layer_weights: Mapping[str, float] | None = None,
    tv_weight: float | None = None,
) -> TextureSynthesis:
    """Gatys texture synthesis: optimise an image from seeded noise until its Grams match the target's.

    target: a :class:`GramSet` (from the same model; ``layers`` default to its layers
    and its normalisation is used) or an image (its Grams are computed at ``size``,
    default its own size, at ``layers``, default the model's style layers).
    The output has ``size`` (an int sets the longer side; default the target image's
    size, or ``init``'s). Loss: Σ_l w_l mean((G_l(x) − G_l(target))²), w_l from
    ``layer_weights`` (one per layer) or the network's default (1/len(layers) for VGG;
    see :func:`style_distance` for how this relates to the paper's E_l), plus ``tv_weight`` τ
    times the total variation of the image (None: the network's ``spec.texture_tv_weight``,
    0 for VGG as in the paper; departure for EfficientNet-Lite, whose first layer has stride
    2 and so leaves pixel-level high frequencies unconstrained: from noise they stay as
    rainbow speckle unless a little smoothness is asked for).

    optimizer:
      * ``"lbfgs"`` (default; lr default 1): ``torch.optim.LBFGS`` with
        ``max_iter=1``, so each yielded step is one L-BFGS iteration, with a strong
        Wolfe line search (up to 20 trials) and a restart from steepest descent
        whenever a step makes no progress. Measured (VGG-19 random init, 96 px
        painting, 30 steps): the loss fell to 3.9e-4× its start (0.57× when the line
        search had a single trial, torch's default budget for ``max_iter=1``). A step
        costs the line search's forward/backward passes (often one: the step's
        starting evaluation reuses the previous line search's last one).
      * ``"adam"`` (lr default 0.05 in [0, 1] pixel units): one evaluation per step.

    The loop is :class:`artlab.optimize.ImageOptimizer` (shared with style transfer);
    a NaN/inf loss or gradient stops the run with a step of ``status="nonfinite"``.
    Before anything large is computed (the target's Grams included), the memory is
    estimated as for style transfer (:func:`artlab.optimize.estimate_memory`); a size that
    would not fit raises :class:`TextureTooLarge` naming the largest size that would.

    Departures from the paper, both choices of this implementation: Gatys et al. start
    from white noise and run L-BFGS on unconstrained pixels of the mean-subtracted
    network input; here the optimised pixels are artlab images in [0, 1] (the model
    normalises them), started from uniform noise drawn with ``torch.Generator``
    seeded by ``seed`` (or from ``init``), and **clamped to [0, 1] after every step**
    so every preview is a valid image. The objective is divided by its first value:
    L-BFGS's curvature test (yᵀs > 1e-10) and tolerances are absolute, and the raw
    "gatys" losses are tiny; yielded losses are unscaled.

    Returns a :class:`TextureSynthesis` iterator: one :class:`SynthesisStep` per step;
    stop any time (``break``/``close()``). The best image so far is kept: every
    preview and the last step's ``image`` are the best image so far (the final image
    is evaluated once more after the last step so it can win), and the iterator's
    ``best_image`` holds it after an early stop. Deterministic for a seed (same
    device, threads and torch version). ``device`` must be the model's device (the
    default); the model is never moved.
    """
    if not isinstance(model, Backbone):
        raise TypeError(f"model must be an artlab Backbone, got {type(model).__name__}")
    model_device = model.mean.device
    if device is not None and torch.device(device) != model_device:
        # torch.device("cuda") and "cuda:0" differ as objects; compare the type and index that matter
        want = torch.device(device)
        if want.type != model_device.type or (want.index is not None and want.index != model_device.index):
            raise ValueError(f"device={want} but the model is on {model_device}; move the model with "
                             f"model.to({str(want)!r}) first or leave device=None")
    steps = _positive_int(steps, "steps")
    optimizer, lr = check_optimizer(optimizer, lr, {"lbfgs": 1.0, "adam": 0.05})
    if isinstance(preview_every, bool) or not isinstance(preview_every, (int, np.integer)) or preview_every < 0:
        raise ValueError(f"preview_every must be an integer >= 0 (0: only the last step), got {preview_every!r}")

    if isinstance(target, GramSet):
        if target.model_name != model.name:
            raise ValueError(f"the target's Grams come from {target.model_name} but model is {model.name}: "
                             "compute the target's Grams with the same model")
        layers = list(layers) if layers is not None else target.layers()
        missing = [layer for layer in layers if layer not in target.grams]
        if missing:
            raise ValueError(f"the target GramSet has no Grams at {missing} (it has {target.layers()}); "
                             "compute them with compute_grams(model, image, layers)")
        layers = _style_layers(model, layers)
        target_set, like = target, target.image_size
    elif isinstance(target, Tensor):
        image = _single_image(target, "target")
        like = (int(image.shape[-2]), int(image.shape[-1]))
        if size is not None:
            like = _output_size(size, like)
        layers = _style_layers(model, layers)
        target_set = None  # computed below, once the memory check has passed
    else:
        raise TypeError(f"target must be a GramSet or an image tensor, got {type(target).__name__}")

    if init is not None:
        init = _single_image(init, "init")
        init_size = (int(init.shape[-2]), int(init.shape[-1]))
        out_size = _output_size(size, like) if size is not None else init_size
        if out_size != init_size:
            raise ValueError(f"init is {init_size[0]}×{init_size[1]} px but size asks for "
                             f"{out_size[0]}×{out_size[1]}; resize init or drop size")
    else:
        out_size = _output_size(size, like)
    _check_image_size(model, out_size, layers)
    _check_texture_memory(model, out_size, optimizer, layers, with_target=target_set is None, device=model_device)
    if target_set is None:  # an image target: its Grams at the output's size
        target_set = compute_grams(model, image if like == tuple(image.shape[-2:]) else load_image(image, like), layers)
        layers = target_set.layers()

    targets = {layer: target_set.grams[layer].detach().to(model_device, torch.float32) for layer in layers}
    weights = _layer_weights(layers, layer_weights, model)
    normalize = target_set.normalize
    if init is None:
        generator = torch.Generator().manual_seed(int(seed))
        start = torch.rand(1, 3, *out_size, generator=generator)
    else:
        start = init.detach().clone()

    tau = float(model.spec.texture_tv_weight if tv_weight is None else tv_weight)
    if not (math.isfinite(tau) and tau >= 0):
        raise ValueError(f"tv_weight must be a finite number >= 0, got {tv_weight!r}")

    def objective(x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return _texture_loss(model, x, targets, weights, normalize, tau)

    optim = ImageOptimizer(objective, start.to(model_device), optimizer=optimizer, lr=lr)

    def run() -> Iterator[SynthesisStep]:
        for step in range(steps):
            update = optim.step()
            last = step == steps - 1 or update.status != "ok"
            if step == steps - 1 and update.status == "ok":
                optim.evaluate()  # the final image has not been scored yet; it may be the best
            preview = last or (preview_every > 0 and (step + 1) % preview_every == 0)
            image = optim.best_image if preview else None
            yield SynthesisStep(step, update.loss, update.terms, image, optim.best_loss, update.status)
            if update.status != "ok":
                return

    return TextureSynthesis(run(), optim)


def texture_from(model: Backbone, target: GramSet | Tensor, layers: Sequence[str] | None = None, **kwargs) -> Tensor:
    """Run :func:`synthesize_texture` to the end and return the best image (1×3×H×W, CPU)."""
    synthesis = synthesize_texture(model, target, layers, **kwargs)
    for _ in synthesis:
        pass
    best = synthesis.best_image
    assert best is not None  # steps >= 1 is enforced
    return best
