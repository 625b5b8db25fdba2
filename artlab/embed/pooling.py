"""How one layer's activation maps become one vector per image: mean, mean+std or a projected Gram matrix."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from functools import lru_cache

import torch
from torch import Tensor

from artlab.gram import gram
from artlab.models import Backbone

__all__ = ["GRAM_DIM", "GRAM_SEED", "POOLINGS", "check_pooling", "default_layer", "pooler"]

#: How one layer's maps become one vector per image (see :func:`pooler`).
POOLINGS = ("mean", "mean+std", "gram")
#: Length of a "gram" embedding (the projected Gram upper triangle).
GRAM_DIM = 256
#: Seed of the Gram projection: fixed, independent of the data, so cached vectors stay valid.
GRAM_SEED = 20240601


def default_layer(model: Backbone, pooling: str = "mean") -> str:
    """The layer :func:`artlab.embed.embed` uses when none is given.

    The network's ``spec.embed_layer`` when it has one: ResNets ``layer4`` (the last
    spatial maps; their mean is exactly what the global pooling passes to the classifier,
    and unlike the pooled vector they still have positions for "mean+std" and "gram");
    EfficientNet-Lite ``stage6`` (measured on paintings of six artists, it separates
    artists better than the 1280-d head, which is tuned to object classes). VGG and others: the model's content layer
    (``relu4_2`` for VGG), deep enough for subject and composition, still spatial.
    """
    check_pooling(pooling)
    if model.spec.embed_layer:
        return model.spec.embed_layer
    if model.spec.content_layer:
        return model.spec.content_layer
    spatial = [n for n in model.layer_names if n not in ("avgpool",) and not n.startswith(("fc", "relu6", "relu7"))]
    return spatial[-1]


def check_pooling(pooling: object) -> str:
    """``pooling`` if it is one of :data:`POOLINGS`; ValueError naming them otherwise."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(map(repr, POOLINGS))}")
    return pooling  # type: ignore[return-value]


def _gram_chunk(seed: int, n_in: int, dim: int, k: int, rows: int) -> Tensor:
    """Rows [k·rows, …) of the Gram projection: N(0, 1/dim), from a Generator seeded by (seed, n_in, dim, k)."""
    tag = hashlib.sha256(f"artlab-gram-projection/{seed}/{n_in}/{dim}/{k}".encode()).digest()
    g = torch.Generator().manual_seed(int.from_bytes(tag[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF)
    count = min(rows, n_in - k * rows)
    return torch.randn(count, dim, generator=g) / math.sqrt(dim)


_PROJECTION_ROWS = 4096
_PROJECTION_BUDGET = 256 * 2**20  # bytes of projection matrix kept in memory between batches


@lru_cache(maxsize=2)
def _gram_projection(seed: int, n_in: int, dim: int) -> tuple[Tensor, ...]:
    """The whole projection as chunks (kept only while it fits in :data:`_PROJECTION_BUDGET`)."""
    chunks = math.ceil(n_in / _PROJECTION_ROWS)
    return tuple(_gram_chunk(seed, n_in, dim, k, _PROJECTION_ROWS) for k in range(chunks))


def _project_triangle(tri: Tensor, dim: int, seed: int) -> Tensor:
    """tri (N×L) @ R (L×dim), R Gaussian; chunk by chunk, in the same order whether cached or not."""
    n_in = tri.shape[1]
    chunks = math.ceil(n_in / _PROJECTION_ROWS)
    cached = _gram_projection(seed, n_in, dim) if n_in * dim * 4 <= _PROJECTION_BUDGET else None
    out = torch.zeros(tri.shape[0], dim)
    for k in range(chunks):
        r = cached[k] if cached is not None else _gram_chunk(seed, n_in, dim, k, _PROJECTION_ROWS)
        out += tri[:, k * _PROJECTION_ROWS : k * _PROJECTION_ROWS + r.shape[0]] @ r
    return out


def pooler(pooling: str, *, gram_dim: int = GRAM_DIM, gram_seed: int = GRAM_SEED) -> Callable[[Tensor], Tensor]:
    """N×C×H×W activations -> N×D float32 vectors on the CPU, for ``pooling``.

    * ``"mean"``: each channel's spatial mean (D = C), what a classifier head sees.
    * ``"mean+std"``: means then spatial standard deviations (D = 2C): first and second
      moments, the statistics adaptive instance normalisation treats as "style".
    * ``"gram"``: the Gram matrix G = F Fᵀ / (H·W) (:func:`artlab.gram.gram`, "hw"
      normalisation, comparable across image sizes); its upper triangle with the
      off-diagonal entries multiplied by √2 (so that Euclidean distances between
      triangles equal Frobenius distances between Grams), projected to ``gram_dim``
      values by a Gaussian random projection R (entries N(0, 1/gram_dim)). R depends
      only on a fixed seed and the sizes, never on the data: the same image gives the
      same vector in every run and the cache stays valid. By Johnson–Lindenstrauss,
      distances between Grams are kept up to a small relative error. When the triangle
      is no longer than ``gram_dim`` (layers with ≤ 22 channels) it is used as is.
    """

    def mean(act: Tensor) -> Tensor:
        act = act.detach()
        return (act.mean(dim=(2, 3)) if act.ndim == 4 else act).to("cpu", torch.float32)

    def mean_std(act: Tensor) -> Tensor:
        act = _spatial(act, "mean+std").float()
        return torch.cat([act.mean(dim=(2, 3)), act.std(dim=(2, 3), unbiased=False)], 1).to("cpu")

    def gram_pool(act: Tensor) -> Tensor:
        g = gram(_spatial(act, "gram").float(), "hw")
        c = g.shape[1]
        iu = torch.triu_indices(c, c, device=g.device)
        weight = torch.where(iu[0] == iu[1], 1.0, math.sqrt(2.0)).to(g.device)
        tri = (g[:, iu[0], iu[1]] * weight).to("cpu")
        return tri if tri.shape[1] <= gram_dim else _project_triangle(tri, gram_dim, gram_seed)

    return {"mean": mean, "mean+std": mean_std, "gram": gram_pool}[check_pooling(pooling)]


def _spatial(act: Tensor, pooling: str) -> Tensor:
    if act.ndim != 4:
        raise ValueError(
            f"pooling {pooling!r} needs a layer with spatial maps (N×C×H×W), got shape {tuple(act.shape)}; "
            "pick a convolutional layer or use pooling='mean'"
        )
    return act.detach()
