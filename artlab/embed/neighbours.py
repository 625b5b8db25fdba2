"""An image's nearest neighbours in a collection, by cosine similarity of the centred embeddings.

Scores are centred cosines (the collection's mean vector subtracted first: raw cosines of pooled
ReLU features are all near 1) and, per neighbour, the share of the collection it is closer than.

A query from outside the collection (another file, an image tensor, a PIL image) is
embedded the same way first, with the model the embeddings were made with.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor

from artlab.embed.embeddings import Embeddings, check_same_model, embed_images
from artlab.embed.file_hashes import sha256_file
from artlab.embed.maps import unit_rows
from artlab.images import ensure_image_batch, load_image
from artlab.models import Backbone

__all__ = ["nearest", "query_vector", "similarities"]


def query_vector(emb: Embeddings, query: Any, model: Backbone | None = None,
                 device: str | torch.device | None = None) -> tuple[np.ndarray, int | None]:
    """(vector of ``query``, its row in ``emb`` or None when it is not one of the embedded images).

    ``query`` as in :func:`nearest`. A file with the same bytes as an embedded image
    takes that image's vector (no forward pass); anything else not embedded is embedded
    with ``model`` (required then, and checked to be the one ``emb`` was made with).
    """
    dim = emb.vectors.shape[1]
    if isinstance(query, (bool, np.bool_)):
        raise TypeError("query must be an index, a path, an image or a vector, not a bool")
    if isinstance(query, (int, np.integer)):
        if not -len(emb) <= int(query) < len(emb):
            raise IndexError(f"query index {query} is out of range for {len(emb)} images")
        index = int(query) % len(emb)
        return emb.vectors[index], index
    if isinstance(query, (str, os.PathLike)):
        path = Path(query).expanduser()
        for candidate in (str(path), str(query)):
            if candidate in emb.paths:
                index = emb.paths.index(candidate)
                return emb.vectors[index], index
        if not path.is_file():
            raise FileNotFoundError(f"query {path} is neither one of the embedded paths nor an existing file")
        digest = sha256_file(path)
        if digest in emb.hashes:  # the same bytes under another name: no need to run the network
            return emb.vectors[emb.hashes.index(digest)], None
        return embed_images(emb, check_same_model(emb, model), [path], device)[0], None
    if isinstance(query, (np.ndarray, Tensor)) and (query.ndim == 1 or (query.ndim == 2 and query.shape[0] == 1)):
        vector = np.asarray(query.detach().cpu() if isinstance(query, Tensor) else query, dtype=np.float32).ravel()
        if vector.shape[0] != dim:
            raise ValueError(f"query vector has {vector.shape[0]} values; these embeddings have {dim}")
        return vector, None
    if isinstance(query, Tensor):
        query = ensure_image_batch(query, "query")
        if query.shape[0] != 1:
            raise ValueError(f"query must be one image, got a batch of {query.shape[0]}")
        return embed_images(emb, check_same_model(emb, model), [query], device)[0], None
    if isinstance(query, (np.ndarray, Image.Image)):
        return embed_images(emb, check_same_model(emb, model), [load_image(query)], device)[0], None
    raise TypeError(
        f"query must be an index, a path, an image (tensor/PIL/array) or a vector, got {type(query).__name__}"
    )


def similarities(emb: Embeddings, vector: np.ndarray, *, centre: bool = True) -> np.ndarray:
    """Cosine similarity of ``vector`` to every row of ``emb`` (N,), after centring when ``centre``.

    Centring subtracts the collection's mean vector from both sides first. Pooled ReLU features
    are all positive, so every raw cosine of a collection sits near 1 (0.95–0.99 for any two
    images) and says little; centred, 0 means "as alike as two images of this collection are on
    average" and the scores spread over [-1, 1]. ``centre=False`` gives the raw cosine.
    """
    rows = emb.vectors.astype(np.float64)
    query = np.asarray(vector, dtype=np.float64).ravel()
    if centre:
        mean = rows.mean(axis=0)
        rows, query = rows - mean, query - mean
    return unit_rows(rows) @ (query / max(np.linalg.norm(query), 1e-12))


def nearest(emb: Embeddings, query: Any, k: int = 8, model: Backbone | None = None, *,
            device: str | torch.device | None = None, centre: bool = True) -> pd.DataFrame:
    """The ``k`` images most similar to ``query``, with scores that tell neighbours from strangers.

    ``query``: a row index or an embedded path (the image itself is left out), another
    image file, an image tensor / PIL image / array (embedded with the same model, layer,
    pooling and size, so ``model`` is required), or a vector of length D. Columns: rank,
    index (row in ``emb``), path, ``similarity`` (cosine after subtracting the collection's
    mean vector, see :func:`similarities`; ``centre=False``: the raw cosine, near 1 for every
    image), ``closer_than`` (the percentage of the collection's other images that are less
    similar to the query: 98 reads "closer than 98% of the collection"), then label and the
    other metadata.
    """
    if isinstance(k, bool) or int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    vector, self_index = query_vector(emb, query, model, device)
    sims = similarities(emb, vector, centre=centre)
    order = [i for i in np.argsort(-sims, kind="stable") if i != self_index][: int(k)]
    others = np.sort(np.delete(sims, [self_index]) if self_index is not None else sims)
    beaten = np.searchsorted(others, sims[order], side="left")  # other images less similar than each neighbour
    frame = emb.meta.iloc[order].reset_index(drop=True)
    frame = frame.drop(columns=[c for c in ("rank", "index", "similarity", "closer_than") if c in frame.columns])
    frame.insert(0, "rank", np.arange(1, len(order) + 1))
    frame.insert(1, "index", np.asarray(order, dtype=int))
    if "path" not in frame.columns:
        frame.insert(2, "path", [emb.paths[i] for i in order])
    at = list(frame.columns).index("path") + 1
    frame.insert(at, "similarity", sims[order].astype(float))
    frame.insert(at + 1, "closer_than", 100.0 * beaten / max(len(others) - 1, 1))
    return frame
