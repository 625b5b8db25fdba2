"""Gram matrices: what "style" is to a CNN (Gatys, Ecker & Bethge 2015, 2016).

A layer's feature map with C channels over H×W positions, flattened to F (C × H·W),
has the Gram matrix G = F Fᵀ: entry (i, j) says how strongly channels i and j fire
*together*, summed over all positions. Summing over positions throws away where
things are and keeps which features co-occur, which is why Grams describe texture
and style rather than content.

This package holds the pure functions behind notebook 02 and the GramInspector
widget, one idea per module (everything is importable from ``artlab.gram``):

* :mod:`~artlab.gram.matrices`: :func:`gram`, :func:`compute_grams` (a :class:`GramSet` per image);
* :mod:`~artlab.gram.distance`: :func:`style_distance` (per-layer Gatys style loss terms) and
  :func:`style_distance_matrix` for a set of images;
* :mod:`~artlab.gram.inspection`: :func:`cluster_order`, :func:`gram_block`,
  :func:`top_differing_pairs`, :func:`eigen_spectrum`;
* :mod:`~artlab.gram.shuffle`, what a Gram forgets: :func:`shuffle_patches`, :func:`shuffle_experiment`;
* :mod:`~artlab.gram.texture`, what it keeps: :func:`synthesize_texture` (a :class:`artlab.runs.Run`,
  so widgets, scripts and tests drive the same loop and can stop it) and :func:`texture_from`;
* :mod:`~artlab.gram.checks`: the checks all of them (and :mod:`artlab.transfer`) share.

Sizes are checked against each layer's receptive field and stride
(:func:`artlab.models.receptive_field`): too small an image is refused with the
size it needs, or warned about when the deepest layer would see the whole image.
"""

from __future__ import annotations

from artlab.gram.checks import (
    NORMALIZATIONS,
    FlatImageWarning,
    ReceptiveFieldWarning,
    check_image_size,
    output_size,
    style_layers,
)
from artlab.gram.distance import StyleDistance, style_distance, style_distance_matrix
from artlab.gram.inspection import (
    cluster_order,
    eigen_spectrum,
    gram_block,
    top_differing_pairs,
)
from artlab.gram.matrices import GramSet, compute_grams, gram
from artlab.gram.shuffle import shuffle_experiment, shuffle_patches
from artlab.gram.texture import (
    SynthesisStep,
    TextureSynthesis,
    TextureTooLarge,
    synthesize_texture,
    texture_from,
    texture_loss,
    total_variation,
)

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
    "texture_loss",
    "total_variation",
    "check_image_size",
    "output_size",
    "style_layers",
]
