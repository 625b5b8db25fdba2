"""How a CNN sees art: feature maps, channel statistics, spectra and per-layer domain shift.

Two scales of question, one submodule each, all names re-exported here:

* **One painting, one photo** (:mod:`~artlab.activations.inspection`).
  :class:`ActivationCache` memoises forward passes so a widget can switch layers without
  re-running the network; :func:`channel_stats`, :func:`top_channels`,
  :func:`top_difference` and :func:`disagreement` say which channels fire and where a
  painting and a photo disagree; :func:`radial_spectrum` says at which spatial
  frequencies a layer's maps carry their energy.
* **Two sets of images** (paintings vs photos). :func:`domain_shift`
  (:mod:`~artlab.activations.shift`) pools each layer's maps to one vector per image
  (:func:`pooled_features`, :mod:`~artlab.activations.pooled`) and measures, layer by
  layer, how far apart the two clouds of vectors are
  (:mod:`~artlab.activations.statistics`): the Fréchet distance (the FID formula), KID
  (unbiased polynomial-kernel MMD²), an RBF-kernel MMD² with a permutation test, and the
  accuracy of a linear probe. Every number comes with n, the feature dimension, a
  bootstrap interval and a note when n is too small for it.

Small samples are the normal case here (tens of images against 64-512 channels):
when n ≤ dim a covariance is singular, so the Fréchet distance switches to a
Ledoit-Wolf shrinkage covariance and a :class:`SmallSampleWarning` is raised; KID and
the MMD test are unbiased and remain valid at small n. All randomness (bootstrap,
permutations, CV folds) comes from ``seed`` via numpy Generators: same seed, same table.
"""

from __future__ import annotations

from artlab.activations.inspection import (
    CHANNEL_STATS,
    ActivationCache,
    ChannelStats,
    channel_stats,
    disagreement,
    example_maps,
    feature_maps,
    layer_spectra,
    plot_spectra,
    radial_spectrum,
    top_channels,
    top_difference,
)
from artlab.activations.pooled import FeatureStore, ImageSet, pooled_features
from artlab.activations.shift import DomainShift, default_layers, domain_shift
from artlab.activations.statistics import (
    MEASURES,
    MIN_PER_SET,
    SmallSampleWarning,
    bootstrap_ci,
    frechet_distance,
    kid,
    mmd_test,
    probe_accuracy,
)

__all__ = [
    "MEASURES",
    "CHANNEL_STATS",
    "SmallSampleWarning",
    "ActivationCache",
    "FeatureStore",
    "ChannelStats",
    "DomainShift",
    "feature_maps",
    "channel_stats",
    "top_channels",
    "top_difference",
    "disagreement",
    "example_maps",
    "radial_spectrum",
    "layer_spectra",
    "plot_spectra",
    "pooled_features",
    "frechet_distance",
    "kid",
    "mmd_test",
    "probe_accuracy",
    "bootstrap_ci",
    "domain_shift",
    "default_layers",
    "ImageSet",
    "MIN_PER_SET",
]
