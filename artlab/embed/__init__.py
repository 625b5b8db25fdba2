"""Embeddings of a whole collection: cached features, 2-D/3-D maps and neighbours.

A curator's questions about a collection ("which paintings look alike to the network?",
"does it tell Constable from Rousseau?") start from one vector per image:

* :func:`embed` (:mod:`artlab.embed.embeddings`) pools one layer of a CNN into a vector
  per image (:data:`POOLINGS`, :mod:`artlab.embed.pooling`) and keeps them in an on-disk
  cache keyed by content (:mod:`artlab.embed.cache`, :mod:`artlab.embed.file_hashes`):
  only new images are ever computed, and an interrupted run loses nothing it wrote. The
  result is an :class:`Embeddings`.
* :func:`umap_2d`, :func:`umap_3d`, :func:`pca_2d`, :func:`pca_3d`, :func:`tsne_2d`
  (dispatcher :func:`map_points`; :mod:`artlab.embed.maps`) turn them into seeded,
  reproducible maps.
* :func:`nearest` (:mod:`artlab.embed.neighbours`) lists an image's neighbours by centred cosine
  similarity (the collection's mean vector subtracted first) with the share of the collection each one
  beats (``closer_than``); a query image from outside the collection is embedded the same way first.
* :mod:`artlab.embed.browse` is the table behind an embedding map (search, colours,
  selections and their CSV export).

* :func:`linear_probe` and :func:`finetune` (:mod:`artlab.embed.classify`) classify the
  collection: a cross-validated linear probe on the vectors, or a small network trained end
  to end.
:func:`verify_cache` (``artlab cache verify``) checks the cache; ``repair=True`` drops what is bad.
"""

from __future__ import annotations

from artlab.embed.classify import (
    FinetunedClassifier,
    Finetune,
    FinetuneStep,
    ProbeResult,
    finetune,
    linear_probe,
)
from artlab.embed.cache import SHARDS_BEFORE_MERGE, CacheReport, default_cache_dir, verify_cache
from artlab.embed.embeddings import Embeddings, embed, escape_undecodable
from artlab.embed.maps import (
    METHODS,
    map_points,
    pca_2d,
    pca_3d,
    project,
    tsne_2d,
    umap_2d,
    umap_3d,
    umap_ready,
    warm_up_umap,
)
from artlab.embed.neighbours import nearest
from artlab.embed.pooling import GRAM_DIM, POOLINGS, default_layer

__all__ = [
    "POOLINGS",
    "METHODS",
    "GRAM_DIM",
    "SHARDS_BEFORE_MERGE",
    "Embeddings",
    "embed",
    "default_layer",
    "default_cache_dir",
    "escape_undecodable",
    "verify_cache",
    "CacheReport",
    "umap_2d",
    "umap_3d",
    "pca_2d",
    "pca_3d",
    "tsne_2d",
    "map_points",
    "project",
    "warm_up_umap",
    "umap_ready",
    "nearest",
    "ProbeResult",
    "linear_probe",
    "FinetuneStep",
    "FinetunedClassifier",
    "Finetune",
    "finetune",
]
