"""Looking inside Gram matrices: channel orders, blocks, the pairs that differ most, eigen-spectra.

A Gram of a deep layer is hundreds of channels square; these helpers make it readable
(notebook 02, the GramInspector widget): :func:`cluster_order` puts correlated channels
next to each other, :func:`gram_block` cuts out the block on screen,
:func:`top_differing_pairs` lists where two Grams disagree most and
:func:`eigen_spectrum` says how many independent feature directions a layer uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["cluster_order", "gram_block", "top_differing_pairs", "eigen_spectrum"]


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
