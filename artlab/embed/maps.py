"""2-D and 3-D maps of embeddings: UMAP, PCA and t-SNE, seeded and reproducible.

:func:`map_points` dispatches on the method name; :func:`umap_2d`, :func:`umap_3d`,
:func:`pca_2d`, :func:`pca_3d` and :func:`tsne_2d` are the methods themselves. The first
UMAP in a process compiles numba code (~15-25 s): :func:`warm_up_umap` does it ahead
of time (``background=True``: on a daemon thread, once per process) and
:func:`umap_ready` says whether it is done, so a map can show PCA until then.
:class:`LayoutCache` keeps fitted UMAP and t-SNE layouts on disk, keyed by the vectors'
content and the map's parameters, so a map of the same vectors opens at once next time,
without importing umap at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import threading
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from artlab.embed.embeddings import Embeddings
from artlab.embed.locks import atomic_write_bytes

__all__ = [
    "LAYOUTS_KEPT",
    "METHODS",
    "LayoutCache",
    "Layouts",
    "as_matrix",
    "compile_umap",
    "map_points",
    "pca_2d",
    "pca_3d",
    "project",
    "tsne_2d",
    "umap_2d",
    "umap_3d",
    "umap_ready",
    "unit_rows",
    "warm_up_umap",
]

#: Map methods :func:`map_points` knows.
METHODS = ("umap", "pca", "tsne")

Vectors = Embeddings | np.ndarray | Tensor


def as_matrix(data: Vectors, minimum: int = 2) -> np.ndarray:
    """N×D float64 array from Embeddings, an array or a tensor; finite, with at least ``minimum`` rows
    (ValueError saying what is wrong otherwise)."""
    x = data.vectors if isinstance(data, Embeddings) else data
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected an N×D array of vectors, got shape {x.shape}")
    if len(x) < minimum:
        raise ValueError(f"need at least {minimum} vectors, got {len(x)}")
    if not np.isfinite(x).all():
        raise ValueError("the vectors contain NaN or infinite values; recompute the embeddings")
    return x


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (all-zero rows stay zero): dot products become cosine similarities."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _pre_reduce(x: np.ndarray, pca: int | None, metric: str) -> tuple[np.ndarray, str]:
    """Optional PCA before a neighbour-graph method; returns (data, metric to use on it).

    Departure from the usual "PCA, then cosine": PCA centres the data, which changes
    cosine similarities. With metric="cosine" the rows are scaled to unit length first
    (on the unit sphere, Euclidean distance is a monotone function of cosine distance),
    reduced, and the reduced points are compared with the Euclidean metric.
    """
    if pca is None or not pca or x.shape[1] <= int(pca):
        return x, metric
    if metric == "cosine":
        x, metric = unit_rows(x), "euclidean"
    return _pca_scores(x, int(pca)), metric


def _pca_scores(x: np.ndarray, k: int) -> np.ndarray:
    """Scores on the top ``k`` principal components (N×min(k, N, D)), exact and deterministic.

    With more rows than columns, from the eigenvectors of the D×D scatter matrix: for
    20,000×512 vectors 3.5× faster than scikit-learn's full SVD (measured here), which
    matters because the map widgets show PCA while UMAP runs. Signs follow
    scikit-learn's convention: each component's largest loading is positive.
    """
    centred = x - x.mean(0)
    k = min(k, *x.shape)
    if x.shape[0] >= x.shape[1]:
        _, vectors = np.linalg.eigh(centred.T @ centred)
        axes = vectors[:, ::-1][:, :k]  # eigh sorts ascending
    else:
        axes = np.linalg.svd(centred, full_matrices=False)[2][:k].T
    largest = np.abs(axes).argmax(0)
    axes = axes * np.sign(axes[largest, np.arange(k)])
    return centred @ axes


# --------------------------------------------------------------------------- UMAP

# Set once a UMAP has been fitted in this process: numba's compiled code is then in memory.
_umap_warm = False
_umap_lock = threading.Lock()  # the first caller of compile_umap compiles; others wait for it
_warm_thread: threading.Thread | None = None
_warm_thread_lock = threading.Lock()


def _umap(data: Any, dims: int, *, seed: int, n_neighbors: int, min_dist: float, pca: int | None,
          metric: str) -> np.ndarray:
    global _umap_warm
    x = as_matrix(data)
    if len(x) < 4:
        raise ValueError(f"UMAP needs at least 4 images, got {len(x)}; use pca_2d for so few")
    if int(n_neighbors) < 2:
        raise ValueError(f"n_neighbors must be at least 2, got {n_neighbors}")
    x, metric = _pre_reduce(x, pca, metric)
    import umap  # slow first import (numba); see warm_up_umap

    reducer = umap.UMAP(n_components=dims, n_neighbors=min(int(n_neighbors), len(x) - 1), min_dist=min_dist,
                        metric=metric, random_state=seed, n_jobs=1)  # random_state: reproducible, one thread
    threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_jobs.*")
            warnings.filterwarnings("ignore", message=".*Graph is not fully connected.*")
            coords = reducer.fit_transform(x).astype(np.float32)
    finally:
        # umap "restores" numba's thread count through omp_set_num_threads, which (one
        # libgomp in the process) also resets torch's intra-op threads: put them back.
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    _umap_warm = True
    return coords


def umap_2d(data: Vectors, *, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1, pca: int | None = 50,
            metric: str = "cosine") -> np.ndarray:
    """A 2-D UMAP map (N×2) of the vectors; same seed, same map.

    ``n_neighbors`` is capped at N−1; ``pca`` reduces to that many components first (faster
    on wide vectors; None to skip). Needs at least 4 images. The first UMAP in a process
    compiles numba code (~15-25 s): call ``warm_up_umap(background=True)`` early.
    """
    return _umap(data, 2, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist, pca=pca, metric=metric)


def umap_3d(data: Vectors, *, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1, pca: int | None = 50,
            metric: str = "cosine") -> np.ndarray:
    """A 3-D UMAP map (N×3); see :func:`umap_2d`."""
    return _umap(data, 3, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist, pca=pca, metric=metric)


def umap_ready() -> bool:
    """Whether a UMAP was fitted in this process already (its numba code is compiled: the next fit is quick)."""
    return _umap_warm


def warm_up_umap(*, background: bool = False) -> float | threading.Thread:
    """Fit a tiny UMAP so numba compiles now (~15-25 s once per process).

    Returns the seconds taken. ``background=True`` runs :func:`compile_umap` on a daemon
    thread instead (started once per process: later calls return the same thread) and
    returns the thread at once: what a notebook or an app does when it opens, so the
    first real map is quick. A failure there is only a lost head start.
    """
    global _warm_thread
    if background:
        with _warm_thread_lock:
            if _warm_thread is None:
                _warm_thread = threading.Thread(target=_compile_quietly, name="artlab-umap-warm-up", daemon=True)
                _warm_thread.start()
            return _warm_thread
    start = time.perf_counter()
    x = np.random.default_rng(0).normal(size=(32, 8))
    umap_2d(x, n_neighbors=5, pca=None, metric="euclidean")
    return time.perf_counter() - start


def compile_umap() -> bool:
    """Compile UMAP's numba code unless :func:`umap_ready`; True if this call compiled it.

    The first caller compiles (:func:`warm_up_umap`), concurrent callers wait for it, so
    two maps opening at once compile once.
    """
    global _umap_warm
    with _umap_lock:
        if _umap_warm:
            return False
        warm_up_umap()
        _umap_warm = True
        return True


def _compile_quietly() -> None:
    try:
        compile_umap()
    except Exception:  # noqa: BLE001 - only a head start: the first map compiles on demand otherwise
        pass


# --------------------------------------------------------------------------- PCA and t-SNE


def _pca(data: Any, dims: int) -> np.ndarray:
    out = _pca_scores(as_matrix(data), dims)
    if out.shape[1] < dims:  # fewer images or features than dimensions: pad with zeros
        out = np.pad(out, ((0, 0), (0, dims - out.shape[1])))
    return out.astype(np.float32)


def _unused_seed(name: str, seed: int | None) -> None:
    if seed is not None:
        warnings.warn(f"{name}(seed=...) is deprecated and ignored: PCA here is exact and deterministic, so there "
                      "is nothing to seed; the argument will be removed", DeprecationWarning, stacklevel=3)


def pca_2d(data: Vectors, *, seed: int | None = None) -> np.ndarray:
    """The first two principal components (N×2): linear, exact, deterministic, instant.

    ``seed`` is deprecated (it never did anything: there is no randomness to seed) and warns.
    """
    _unused_seed("pca_2d", seed)
    return _pca(data, 2)


def pca_3d(data: Vectors, *, seed: int | None = None) -> np.ndarray:
    """The first three principal components (N×3); ``seed`` deprecated as in :func:`pca_2d`."""
    _unused_seed("pca_3d", seed)
    return _pca(data, 3)


def tsne_2d(data: Vectors, *, seed: int = 0, perplexity: float = 30.0, pca: int | None = 50, metric: str = "cosine",
            dims: int = 2) -> np.ndarray:
    """A t-SNE map (N×2, or N×3 with ``dims=3``; scikit-learn, PCA init); same seed, same map.

    ``perplexity`` is capped at (N−1)/3 so small collections work; ``pca`` and ``metric``
    as in :func:`umap_2d`.
    """
    from sklearn.manifold import TSNE

    x = as_matrix(data, minimum=3)
    x, metric = _pre_reduce(x, pca, metric)
    perplexity = float(min(perplexity, max(1.0, (len(x) - 1) / 3)))
    tsne = TSNE(n_components=dims, perplexity=perplexity, metric=metric, init="pca", random_state=seed)
    with _openmp_threads(1 if len(x) <= 5000 else None):
        return tsne.fit_transform(x).astype(np.float32)


def _openmp_threads(limit: int | None) -> contextlib.AbstractContextManager:
    """Limit OpenMP threads (or nothing). scikit-learn's Barnes-Hut t-SNE gradient spins
    OpenMP threads 1000 times; on a busy 2-core machine one thread was 20-60× faster
    for 36-500 points (measured here), with identical output."""
    if limit is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    return threadpool_limits(limits=limit, user_api="openmp")


# --------------------------------------------------------------------------- one entry point


def map_points(method: str, data: Vectors, dims: int = 2, seed: int = 0, **kw: Any) -> np.ndarray:
    """``method`` ("umap", "pca" or "tsne") map of the vectors in ``dims`` (2 or 3) dimensions, (N, dims).

    ``seed`` seeds UMAP and t-SNE (PCA is exact: nothing to seed). ``kw`` go to the
    method's function (e.g. ``n_neighbors`` for UMAP, ``perplexity`` for t-SNE).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(map(repr, METHODS))}")
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims}")
    if method == "umap":
        return (umap_2d if dims == 2 else umap_3d)(data, seed=seed, **kw)
    if method == "pca":
        return (pca_2d if dims == 2 else pca_3d)(data, **kw)
    return tsne_2d(data, seed=seed, dims=dims, **kw)


#: How many layouts a :class:`LayoutCache` folder keeps (the least recently used go first): ~160 kB each
#: for 20,000 points in 2-D.
LAYOUTS_KEPT = 32
#: Version of the layout cache's key: bump it when a method's output changes for the same parameters.
LAYOUT_CACHE_VERSION = 1
#: The package whose version is part of a cached layout's key (a new UMAP may lay points out differently).
_METHOD_PACKAGE = {"umap": "umap-learn", "tsne": "scikit-learn"}


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)  # reads the installed metadata: no import of umap (and numba)
    except metadata.PackageNotFoundError:
        return "missing"


class LayoutCache:
    """Fitted layouts on disk: one ``.npy`` per (vectors, method, dims, seed, parameters) in ``folder``.

    The file's name is the sha256 of the vectors' bytes, the method, its parameters and the
    version of the package that fits it (:meth:`key`), so changed vectors or settings never
    read an old layout. Files are written to a temporary name and renamed into place
    (:func:`~artlab.embed.locks.atomic_write_bytes`): two processes writing the same layout
    write the same bytes, and a reader sees a whole file or none. A file that is unreadable or
    has the wrong shape is ignored (and removed). Reading a layout marks it as used; after each
    write only the ``keep`` most recently used stay.
    """

    def __init__(self, folder: str | os.PathLike, keep: int = LAYOUTS_KEPT) -> None:
        if isinstance(keep, bool) or int(keep) < 1:
            raise ValueError(f"keep must be at least 1, got {keep!r}")
        self.folder, self.keep = Path(folder).expanduser(), int(keep)

    @staticmethod
    def key(vectors: np.ndarray, method: str, dims: int, seed: int, kw: dict[str, Any]) -> str:
        """The cache key (hex sha256) of ``method``'s layout of ``vectors`` with these settings."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        settings = {"v": LAYOUT_CACHE_VERSION, "method": method, "dims": int(dims), "seed": int(seed),
                    "kw": kw, "shape": list(vectors.shape),
                    "package": _package_version(_METHOD_PACKAGE.get(method, "numpy"))}
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
        digest.update(vectors.tobytes())
        return digest.hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.npy"

    def get(self, key: str, shape: tuple[int, int]) -> np.ndarray | None:
        """The layout stored under ``key`` if it is a finite array of ``shape``, else None."""
        path = self._path(key)
        try:
            coords = np.load(io.BytesIO(path.read_bytes()), allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # damaged: a cache miss, and the next fit replaces it
            path.unlink(missing_ok=True)
            return None
        if coords.shape != tuple(shape) or not np.issubdtype(coords.dtype, np.floating) \
                or not np.isfinite(coords).all():
            path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: kept longest
        return coords.astype(float)

    def put(self, key: str, coords: np.ndarray) -> Path | None:
        """Store ``coords`` under ``key`` (atomically), then trim the folder to ``keep`` files.

        Returns the file, or None when the folder cannot be written (a read-only cache is only slower).
        """
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(coords, dtype=np.float32), allow_pickle=False)
        data = buffer.getvalue()
        path = self._path(key)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, lambda fh: fh.write(data))
        except OSError:
            return None
        self._trim()
        return path

    def _trim(self) -> None:
        def used(p: Path) -> float:
            try:
                return p.stat().st_mtime
            except OSError:
                return float("inf")  # removed meanwhile: nothing to delete

        files = sorted(self.folder.glob("*.npy"), key=used, reverse=True)
        for stale in files[self.keep:]:
            stale.unlink(missing_ok=True)


class Layouts:
    """The map coordinates of one set of vectors, per method, each computed once: what a map switches between.

    ``dims`` and ``seed`` as in :func:`map_points`; ``kw`` go to UMAP and t-SNE (PCA takes
    none). ``given``: an (N, dims) array shown as method "given" (ValueError for another
    shape). ``layouts[method]`` is a computed layout; :meth:`compute` makes one (slow for
    UMAP and t-SNE: call it off the main thread). ``cache``: a :class:`LayoutCache` (or its
    folder) where UMAP and t-SNE layouts are kept between runs; :meth:`from_cache` reads one.
    """

    def __init__(self, data: Vectors, dims: int = 2, seed: int = 0, given: np.ndarray | None = None,
                 cache: LayoutCache | str | os.PathLike | None = None, **kw: Any) -> None:
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {dims!r}")
        self.data, self.dims, self.seed, self.kw = data, dims, int(seed), kw
        self.n = len(data.vectors if isinstance(data, Embeddings) else data)
        self.cache = cache if isinstance(cache, LayoutCache) or cache is None else LayoutCache(cache)
        self._keys: dict[str, str] = {}
        self._coords: dict[str, np.ndarray] = {}
        if given is not None:
            given = np.asarray(given, dtype=float)
            if given.shape != (self.n, dims):
                raise ValueError(f"coords has shape {given.shape}; expected ({self.n}, {dims}): one row per embedded "
                                 "image, in the embeddings' order")
            self._coords["given"] = given

    def __contains__(self, method: str) -> bool:
        return method in self._coords

    def __getitem__(self, method: str) -> np.ndarray:
        return self._coords[method]

    def _key(self, method: str) -> str:
        if method not in self._keys:
            self._keys[method] = LayoutCache.key(as_matrix(self.data), method, self.dims, self.seed, self.kw)
        return self._keys[method]

    def from_cache(self, method: str) -> bool:
        """Whether the ``method`` layout is available without fitting: computed already, or read now from
        the :class:`LayoutCache` (a quick file read; umap is not imported)."""
        if method in self._coords:
            return True
        if self.cache is None or method not in _METHOD_PACKAGE:
            return False
        coords = self.cache.get(self._key(method), (self.n, self.dims))
        if coords is not None:
            self._coords[method] = coords
        return coords is not None

    def compute(self, method: str, on_compiled: Callable[[], None] | None = None) -> np.ndarray:
        """The ``method`` layout, (N, dims): computed already, read from the cache, or computed now (then
        stored in the cache); for UMAP its numba code is compiled first if needed
        (:func:`compile_umap`), then ``on_compiled()`` is called."""
        if self.from_cache(method):
            return self._coords[method]
        if method == "umap" and compile_umap() and on_compiled is not None:
            on_compiled()
        coords = np.asarray(map_points(method, self.data, dims=self.dims, seed=self.seed,
                                       **(self.kw if method != "pca" else {})), dtype=float)
        if coords.shape != (self.n, self.dims):
            raise RuntimeError(f"artlab.embed.map_points({method!r}) returned shape {coords.shape}, "
                               f"expected ({self.n}, {self.dims})")
        if self.cache is not None and method in _METHOD_PACKAGE:
            self.cache.put(self._key(method), coords)
        self._coords[method] = coords
        return coords


def project(method: str, data: Vectors, dims: int = 2, seed: int = 0, **kw: Any) -> np.ndarray:
    """Deprecated alias of :func:`map_points` (the name collided with :func:`artlab.stylegan.project`)."""
    warnings.warn("artlab.embed.project is deprecated; use artlab.embed.map_points (same arguments)",
                  DeprecationWarning, stacklevel=2)
    return map_points(method, data, dims=dims, seed=seed, **kw)
