"""Style distance: how different two images' Grams are, per layer and in all (Gatys et al.'s style loss).

:func:`style_distance` compares two images (or two :class:`~artlab.gram.GramSet` s) and
returns the per-layer terms and their weighted total as a :class:`StyleDistance`;
:func:`style_distance_matrix` does it for every pair of a set of images, computing each
image's Grams once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from artlab.gram.checks import check_normalize, single_image, style_layers
from artlab.gram.matrices import GramSet, compute_grams
from artlab.images import ensure_image_batch
from artlab.models import (
    Backbone,
    BackboneSpec,
    default_layer_weights,
    registered_backbones,
)

__all__ = ["StyleDistance", "style_layer_weights", "style_distance", "style_distance_matrix"]


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


def style_layer_weights(layers: list[str], layer_weights: Mapping[str, float] | None,
                        model: Backbone | BackboneSpec | None = None) -> dict[str, float]:
    """The weight w_l of each compared layer: ``layer_weights`` (one finite weight >= 0 per layer, checked)
    or, when None, the network's default (:func:`artlab.models.default_layer_weights`), or 1/len(layers)
    without a network (Gatys et al.). Style distances and texture synthesis weight their layers with it."""
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
    return compute_grams(model, single_image(x, which), layers, normalize=normalize)


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
        check_normalize(normalize)
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
    weights = style_layer_weights(layers, layer_weights, network)
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
    normalize = check_normalize(normalize)
    if isinstance(images, Tensor):
        batch = ensure_image_batch(images)
        singles = [batch[i : i + 1] for i in range(batch.shape[0])]
    else:
        singles = [single_image(img, f"images[{i}]") for i, img in enumerate(images)]
    if len(singles) < 2:
        raise ValueError(f"need at least two images to compare, got {len(singles)}")
    layers = style_layers(model, layers)
    weights = style_layer_weights(layers, layer_weights, model)
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
