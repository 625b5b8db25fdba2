"""Embeddings of a whole collection: cached features, 2-D/3-D maps, neighbours, artist classifiers.

A curator's questions about a collection ("which paintings look alike to the network?",
"does it tell Constable from Rousseau?") start from one vector per image:

* :func:`embed` pools one layer of a CNN into a vector per image (``pooling``
  ``"mean"``, ``"mean+std"`` or ``"gram"``, see :data:`POOLINGS`) and keeps them in an
  **on-disk cache keyed by content**: the sha256 of each file's bytes plus the model,
  its weights, the layer, the pooling and the preprocessing. Renamed, moved or
  duplicated files are never recomputed; images added since the last run are the only
  ones computed; a run killed half-way loses nothing it wrote (every batch is stored
  atomically before progress is reported). The result is an :class:`Embeddings`.
* :func:`umap_2d`, :func:`umap_3d`, :func:`pca_2d`, :func:`pca_3d`, :func:`tsne_2d`
  (dispatcher :func:`project`) turn them into seeded, reproducible maps.
* :func:`nearest` lists an image's neighbours by cosine similarity; a query image from
  outside the collection is embedded the same way first.
* :func:`linear_probe` measures how well a linear classifier on the vectors predicts a
  label (artist, style), cross-validated; :func:`finetune` trains a small network
  (torchvision's MobileNetV2) end to end instead, as a generator of steps.

The cache lives in ``<cache>/embeddings`` (``$ARTLAB_CACHE`` or ``~/.cache/artlab``):
one directory per configuration holding ``config.json`` and append-only shards
(``shards/<time>-<sha256 of the file>.npy``: a structured array of (content hash,
vector) rows). Shards are written to a temporary name and renamed into place
(``os.replace``), so a shard is either complete or absent; when a directory has more
than :data:`SHARDS_BEFORE_MERGE` shards they are merged into one, so loading thousands
of cached vectors reads a few files. What the cache promises, and checks:

* **A vector is keyed by the bytes it was made from.** A file to compute is read once
  into memory (at most :data:`_MAX_FILE_BYTES`), hashed, and decoded from those same
  bytes; the vector is stored under that hash. A file that changes between hashing and
  decoding gets the vector of what was decoded, under that content's hash: it cannot
  poison the entry of its earlier content, which its copies still use.
* **Shards are checked on every read.** A shard's name carries the sha256 of its bytes.
  A shard whose bytes do not match it, that numpy cannot read or whose rows are not
  (hash, float32 vector) is moved to ``quarantine/``, reported once in
  ``Embeddings.notes``, and its images are computed again. Vectors with NaN or ±inf are
  never written (the image is skipped, saying so) and are rejected when read.
* **Change detection.** ``file-hashes.json`` spares re-reading unchanged files. A file
  is read and hashed again unless ``file-hashes.json`` holds an entry for its absolute
  path whose size, mtime_ns, ctime_ns and inode number all equal the file's current
  ones, that was recorded at least one second after the file's last change (its
  ctime), and whose HMAC-SHA256 signature (key in ``file-hashes.key``, private to the
  cache) is valid. On Linux and macOS the operating system sets ctime on every write,
  truncation, rename, chmod or ``os.utime``, and ordinary programs cannot set it back,
  so any rewrite of a file, also one that keeps its size and restores its mtime
  (``os.utime``, ``touch -r``, ``cp -p``, ``rsync -t``), is noticed. Not promised: on
  Windows ``st_ctime`` is the creation time, and file systems that do not keep ctime or
  inode numbers faithfully (some network and FUSE mounts) weaken the check the same
  way: there a rewrite with the same size and a restored mtime keeps the old vector. An
  entry that was edited, swapped with another or copied from elsewhere fails its
  signature and costs one re-read; it never gives one file another file's vector.
  ``embed(..., rehash=True)`` reads every file; :func:`verify_cache` (``artlab cache
  verify``) also re-reads every remembered file and reports any whose bytes changed
  unnoticed.
* **Concurrent runs share the work.** Each batch is chosen, computed and written while
  holding a lock on the configuration's directory (``fcntl.flock``; ``msvcrt.locking``
  on Windows), after taking in the shards other runs wrote meanwhile: two runs on one
  folder compute each image once between them. The operating system drops the lock of
  a killed process.
* :func:`verify_cache` checks every shard and index entry and reports counts;
  ``repair=True`` (``artlab cache repair``) drops what is bad.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import io
import json
import math
import os
import re
import secrets
import stat
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor, nn
from tqdm.auto import tqdm

from artlab.activations import _batched_forward, _check_size, _model_device, _model_tag
from artlab.data import Collection, CollectionError, Item, cache_root
from artlab.efficientnet import LITE_MEAN, LITE_STD
from artlab.figures import ArtlabFigure, stamp_model
from artlab.gram import gram
from artlab.images import (
    _DECODE_ERRORS,
    _PIL_OPEN_LOCK,
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    _open_regular,
    ensure_image_batch,
    load_image,
    load_images,
)
from artlab.models import IMAGENET_MEAN, IMAGENET_STD, Backbone

try:  # file locks: fcntl on Linux and macOS, msvcrt on Windows (see _FileLock)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
try:
    import msvcrt
except ImportError:
    msvcrt = None  # type: ignore[assignment]

__all__ = [
    "POOLINGS",
    "METHODS",
    "GRAM_DIM",
    "SHARDS_BEFORE_MERGE",
    "Embeddings",
    "ProbeResult",
    "FinetuneStep",
    "Finetune",
    "FinetunedClassifier",
    "embed",
    "default_layer",
    "default_cache_dir",
    "verify_cache",
    "CacheReport",
    "umap_2d",
    "umap_3d",
    "pca_2d",
    "pca_3d",
    "tsne_2d",
    "project",
    "warm_up_umap",
    "nearest",
    "linear_probe",
    "finetune",
]

#: How one layer's maps become one vector per image (see :func:`embed`).
POOLINGS = ("mean", "mean+std", "gram")
#: Map methods :func:`project` knows.
METHODS = ("umap", "pca", "tsne")
#: Length of a "gram" embedding (the projected Gram upper triangle).
GRAM_DIM = 256
#: Seed of the Gram projection: fixed, independent of the data, so cached vectors stay valid.
GRAM_SEED = 20240601
#: A cache directory with more shards than this is merged into one shard after a run.
SHARDS_BEFORE_MERGE = 16
#: Version of the cache layout and of every computation that feeds it (2: checksummed shard names).
CACHE_VERSION = 2
CROP_POLICY = "shorter side resized to size (antialiased bilinear), centre size×size crop"

Source = Union[Collection, str, "os.PathLike[str]", Sequence[Any]]
ProgressCallback = Callable[[int, int], None]


# --------------------------------------------------------------------------- the result


@dataclass
class Embeddings:
    """One vector per image of a collection, with everything needed to read them.

    ``vectors`` (N×D float32) row i belongs to ``paths[i]`` and ``meta.iloc[i]`` (path,
    label and every metadata column of the collection). ``model_label``/``pretrained``
    say which network made them (random weights are never silent), ``layer``,
    ``pooling`` and ``size`` how. ``skipped`` lists (path, reason) for files that could
    not be used; ``notes`` what else a reader should know (metadata rows without files,
    duplicates, random weights); ``duplicates`` maps a content hash to the paths sharing
    it (each such image was computed once). ``hashes[i]`` is the sha256 of ``paths[i]``;
    ``config`` the cache key; ``n_cached``/``n_computed`` count distinct images read from
    the cache and computed by this call.
    """

    vectors: np.ndarray
    paths: list[str]
    meta: pd.DataFrame
    model_label: str
    pretrained: bool
    layer: str
    pooling: str
    size: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    duplicates: dict[str, list[str]] = field(default_factory=dict)
    hashes: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    n_cached: int = 0
    n_computed: int = 0

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def labels(self) -> list[str | None]:
        """The ``label`` column (None where an image has none)."""
        if "label" not in self.meta:
            return [None] * len(self)
        return [None if _missing(v) else str(v) for v in self.meta["label"]]

    def subset(self, mask_or_indices: Sequence[int] | Sequence[bool] | np.ndarray) -> Embeddings:
        """The rows picked by a boolean mask (length N) or by indices, in that order."""
        pick = np.asarray(mask_or_indices)
        if pick.dtype == bool:
            if pick.shape != (len(self),):
                raise ValueError(f"a boolean mask must have one entry per image ({len(self)}), got {pick.shape}")
            pick = np.flatnonzero(pick)
        elif pick.size and not np.issubdtype(pick.dtype, np.integer):
            raise TypeError(f"subset takes a boolean mask or integer indices, got dtype {pick.dtype}")
        pick = pick.astype(int).reshape(-1)
        if pick.size and (pick.min() < -len(self) or pick.max() >= len(self)):
            raise IndexError(f"indices must be in 0..{len(self) - 1}")
        paths = [self.paths[i] for i in pick]
        kept = set(paths)
        duplicates = {h: [p for p in ps if p in kept] for h, ps in self.duplicates.items()}
        return replace(
            self,
            vectors=self.vectors[pick].copy(),
            paths=paths,
            meta=self.meta.iloc[pick].reset_index(drop=True),
            skipped=list(self.skipped),
            notes=list(self.notes),
            duplicates={h: ps for h, ps in duplicates.items() if len(ps) > 1},
            hashes=[self.hashes[i] for i in pick] if self.hashes else [],
            config=dict(self.config),
        )

    def to_frame(self, *, vectors: bool = False, extra: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """``meta`` (path, label, metadata), plus ``extra`` columns (e.g. map coordinates
        ``{"x": xy[:, 0], "y": xy[:, 1]}``) and, with ``vectors=True``, ``f0 … f{D-1}``."""
        frame = self.meta.copy()
        for name, values in (extra or {}).items():
            values = np.asarray(values)
            if len(values) != len(self):
                raise ValueError(f"extra column {name!r} has {len(values)} values for {len(self)} images")
            frame[name] = values
        if vectors:
            width = len(str(self.vectors.shape[1] - 1))
            cols = pd.DataFrame(self.vectors, columns=[f"f{j:0{width}d}" for j in range(self.vectors.shape[1])])
            frame = pd.concat([frame.reset_index(drop=True), cols], axis=1)
        return frame

    def save_csv(
        self, path: str | os.PathLike, columns: Sequence[str] | None = None, *, vectors: bool = True,
        extra: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write a CSV (atomically, so a crash never leaves half a file): ``columns`` of the
        metadata (default: all), then ``extra`` columns and, unless ``vectors=False``, the
        vector components ``f0 …``. Returns the path written.

        The file is UTF-8. A file or folder name that is not valid UTF-8 (possible on Linux
        and macOS; Python keeps its undecodable bytes as surrogate escapes, ``b"caf\\xe9.png"``
        -> ``"caf\\udce9.png"``) cannot be written as UTF-8 text as it is: such a value is
        written with each undecodable byte as ``\\xNN`` and, in that value only, each
        backslash doubled (``caf\\xe9.png``). The value stays readable, and the exact name
        comes back with ``os.fsdecode(codecs.escape_decode(value.encode())[0])``. Every other
        value is written unchanged.
        """
        frame = self.to_frame(vectors=vectors, extra=extra)
        if columns is not None:
            unknown = [c for c in columns if c not in self.meta.columns]
            if unknown:
                raise ValueError(f"unknown columns {unknown}; available: {', '.join(map(str, self.meta.columns))}")
            frame = frame[list(columns) + [c for c in frame.columns if c not in self.meta.columns]]
        target = Path(path).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        text = escape_undecodable(frame).to_csv(index=False).encode()
        _atomic_write_bytes(target, lambda fh: fh.write(text))
        return target

    def __repr__(self) -> str:
        dim = self.vectors.shape[1] if self.vectors.ndim == 2 else 0
        return (f"Embeddings({len(self)} images × {dim}, {self.model_label}, {self.layer}, {self.pooling}, "
                f"{self.size}px, {len(self.skipped)} skipped)")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_text(value: str) -> str:
    """A string with surrogates (undecodable bytes of a file name) as UTF-8-safe escapes.

    A surrogate escape U+DC80…U+DCFF (the byte 0x80…0xFF that ``os.fsdecode`` could not
    decode) becomes ``\\xNN``, any other lone surrogate ``\\uXXXX``; backslashes are doubled
    first, so ``codecs.escape_decode`` gives back the exact bytes. Strings without
    surrogates are returned as they are (a Windows path keeps its single backslashes).
    """
    if not _SURROGATE.search(value):
        return value

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"

    return _SURROGATE.sub(escape, value.replace("\\", "\\\\"))


def escape_undecodable(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every string cell and column name that UTF-8 cannot encode escaped (:func:`_escape_text`).

    Only text columns are looked at; the frame is copied only when something changes.
    """
    def needs(value: object) -> bool:
        return isinstance(value, str) and _SURROGATE.search(value) is not None

    text_columns = [c for c in frame.columns
                    if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c].dtype)]
    changed = [c for c in text_columns if any(needs(v) for v in frame[c])]
    renamed = {c: _escape_text(c) for c in frame.columns if needs(c)}
    if not changed and not renamed:
        return frame
    frame = frame.copy()
    for name in changed:
        frame[name] = frame[name].map(lambda v: _escape_text(v) if isinstance(v, str) else v)
    return frame.rename(columns=renamed)


# --------------------------------------------------------------------------- pooling


def default_layer(model: Backbone, pooling: str = "mean") -> str:
    """The layer :func:`embed` uses when none is given.

    The network's ``spec.embed_layer`` when it has one: ResNets ``layer4`` (the last
    spatial maps; their mean is exactly what the global pooling passes to the classifier,
    and unlike the pooled vector they still have positions for "mean+std" and "gram");
    EfficientNet-Lite ``stage6`` (measured on paintings of six artists, it separates
    artists better than the 1280-d head, which is tuned to object classes). VGG and others: the model's content layer
    (``relu4_2`` for VGG), deep enough for subject and composition, still spatial.
    """
    _check_pooling(pooling)
    if model.spec.embed_layer:
        return model.spec.embed_layer
    if model.spec.content_layer:
        return model.spec.content_layer
    spatial = [n for n in model.layer_names if n not in ("avgpool",) and not n.startswith(("fc", "relu6", "relu7"))]
    return spatial[-1]


def _check_pooling(pooling: object) -> str:
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


def _pooler(pooling: str, *, gram_dim: int = GRAM_DIM, gram_seed: int = GRAM_SEED) -> Callable[[Tensor], Tensor]:
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

    return {"mean": mean, "mean+std": mean_std, "gram": gram_pool}[_check_pooling(pooling)]


def _spatial(act: Tensor, pooling: str) -> Tensor:
    if act.ndim != 4:
        raise ValueError(
            f"pooling {pooling!r} needs a layer with spatial maps (N×C×H×W), got shape {tuple(act.shape)}; "
            "pick a convolutional layer or use pooling='mean'"
        )
    return act.detach()


# --------------------------------------------------------------------------- cache identity


def default_cache_dir() -> Path:
    """Where :func:`embed` keeps vectors by default: ``<artlab cache>/embeddings``."""
    return cache_root() / "embeddings"


_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_FULL_HASH_LIMIT = 1 << 20  # tensors up to this many elements are hashed whole
_SAMPLES = 4096


def _weights_fingerprint(model: nn.Module) -> str:
    """A stable identity of a model's weights (sha256 over every tensor's name, shape, dtype and values).

    Small tensors are hashed whole; large ones through an evenly strided sample of
    :data:`_SAMPLES` values (hashing all 548 MB of VGG-19 would cost more than the
    cache saves). Exact bytes, not sums, so the result never depends on thread counts.
    Memoised per model until any tensor is modified in place.
    """
    state = model.state_dict()
    versions = tuple(t._version for t in state.values())
    memo = _FINGERPRINTS.get(model)
    if memo is not None and memo[0] == versions:
        return memo[1]
    digest = hashlib.sha256()
    for name, tensor in state.items():
        flat = tensor.detach().reshape(-1)
        if flat.numel() > _FULL_HASH_LIMIT:
            flat = flat[:: flat.numel() // _SAMPLES]
        digest.update(f"{name}/{tuple(tensor.shape)}/{tensor.dtype}".encode())
        digest.update(flat.to("cpu").contiguous().numpy().tobytes())
    fingerprint = digest.hexdigest()[:16]
    _FINGERPRINTS[model] = (versions, fingerprint)
    return fingerprint


def _config(model: Backbone, layer: str, pooling: str, size: int, gram_dim: int) -> dict[str, Any]:
    """Everything a cached vector depends on (besides the image bytes)."""
    config: dict[str, Any] = {
        "version": CACHE_VERSION,
        "model": model.name,
        "label": model.label,
        "weights_source": model.weights_source,
        "weights": _weights_fingerprint(model),
        "dtype": str(model.mean.dtype).replace("torch.", ""),
        "layer": layer,
        "pooling": pooling,
        "size": size,
        "crop": CROP_POLICY,
    }
    if pooling == "gram":
        config.update(gram_dim=gram_dim, gram_seed=GRAM_SEED, gram_normalize="hw")
    return config


def _config_dirname(config: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    pooling = str(config["pooling"]).replace("+", "")
    return f"{config['model']}-{config['layer']}-{pooling}-{config['size']}px-{digest}"


def _atomic_write_bytes(target: Path, write: Callable[[Any], None]) -> None:
    """Write through ``write(fh)`` into a temporary file next to ``target``, then rename it into place."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- locks


class _FileLock:
    """An exclusive lock on the file ``path`` for the length of a ``with`` block.

    ``fcntl.flock`` on Linux and macOS, ``msvcrt.locking`` on Windows: the operating system
    drops it when the process dies, so a killed run never leaves the cache locked. Two
    locks on one file exclude each other also between threads of one process (each
    ``with`` opens its own file). Where the file system has no locks, or neither module
    exists, the block runs unlocked: every result stays correct (shards are written
    atomically and keyed by content), concurrent runs may then compute the same images.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None
        self.locked = False

    def __enter__(self) -> _FileLock:
        try:
            self._fh = open(self.path, "a+b")  # closed in __exit__
        except OSError:
            return self  # e.g. a read-only cache: nothing will be written either
        try:
            if fcntl is not None:
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX)
                self.locked = True
            elif msvcrt is not None:  # pragma: no cover - Windows
                self._fh.seek(0)
                while not self.locked:
                    try:
                        msvcrt.locking(self._fh.fileno(), msvcrt.LK_NBLCK, 1)
                        self.locked = True
                    except OSError as exc:
                        if exc.errno not in (errno.EACCES, errno.EDEADLK):
                            break
                        time.sleep(0.05)
        except OSError:  # no locks on this file system (some network mounts)
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is None:
            return
        try:
            if self.locked and fcntl is None and msvcrt is not None:  # pragma: no cover - Windows
                self._fh.seek(0)
                msvcrt.locking(self._fh.fileno(), msvcrt.LK_UNLCK, 1)
        except OSError:  # pragma: no cover
            pass
        finally:
            self._fh.close()  # closing also releases a flock
            self._fh, self.locked = None, False


# --------------------------------------------------------------------------- the shard store


#: A shard's file name: when it was written, then the sha256 of its bytes (checked on every read).
_SHARD_NAME = re.compile(r"^\d{20}-([0-9a-f]{64})\.npy$")


class _BadShard(Exception):
    """A shard that must not be used; ``str()`` says why."""


def _shard_bytes(hashes: Sequence[str], vectors: np.ndarray) -> bytes:
    """The ``.npy`` bytes of a shard: a structured array of (content hash, float32 vector) rows."""
    arr = np.empty(len(hashes), dtype=[("hash", "S64"), ("vector", "<f4", (vectors.shape[1],))])
    arr["hash"] = np.array(hashes, dtype="S64")
    arr["vector"] = vectors
    buffer = io.BytesIO()
    np.save(buffer, arr, allow_pickle=False)
    return buffer.getvalue()


def _check_shard(name: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(rows, mask of rows whose vector is finite) of a shard's bytes.

    Raises :class:`_BadShard` when the name carries no checksum, the sha256 of ``data``
    differs from it, or the bytes are not an array of (64-byte hash, float32 vector) rows.
    """
    match = _SHARD_NAME.match(name)
    if match is None:
        raise _BadShard("its name carries no checksum (not written by this artlab version)")
    actual = hashlib.sha256(data).hexdigest()
    if actual != match.group(1):
        raise _BadShard(f"checksum mismatch: sha256 {actual[:12]}… instead of {match.group(1)[:12]}…; "
                        "the file changed after it was written")
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # a checksummed file that numpy cannot read: written by something else
        raise _BadShard(f"not a numpy array ({exc})") from None
    fields = arr.dtype.fields or {}
    vector = fields.get("vector", (None,))[0]
    if (arr.ndim != 1 or arr.dtype.names != ("hash", "vector") or fields["hash"][0] != np.dtype("S64")
            or vector.base != np.dtype("<f4") or len(vector.shape) != 1):
        raise _BadShard(f"unexpected layout {arr.dtype} × {arr.shape}")
    return arr, np.isfinite(arr["vector"]).all(axis=1)


class _ShardStore:
    """One configuration's vectors on disk: append-only, checksummed shards of (sha256, vector) rows."""

    def __init__(self, root: Path, config: Mapping[str, Any]) -> None:
        self.dir = root / _config_dirname(config)
        self.shards = self.dir / "shards"
        self.quarantine = self.dir / "quarantine"
        self.shards.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "config.json"
        if not meta.is_file():
            text = json.dumps(dict(config), indent=2, sort_keys=True).encode()
            _atomic_write_bytes(meta, lambda fh: fh.write(text))
        self.problems: list[str] = []
        self._seen: set[str] = set()  # shard names this store has read or written

    def locked(self) -> _FileLock:
        """The lock every writer of this directory holds (``with store.locked(): ...``)."""
        return _FileLock(self.dir / "lock")

    def _files(self) -> list[Path]:
        return sorted(self.shards.glob("*.npy"))

    def _read(self, path: Path) -> np.ndarray | None:
        """The rows of a shard that passes every check of :func:`_check_shard`; None otherwise.

        A failing shard is moved to ``quarantine/`` and reported in ``problems``, so it is
        reported once and its images are recomputed. Rows with NaN or ±inf (never written
        by :meth:`append`) are dropped: the shard is set aside and its finite rows stored again.
        """
        self._seen.add(path.name)
        try:
            arr, finite = _check_shard(path.name, path.read_bytes())
        except FileNotFoundError:  # merged away by another process meanwhile
            return None
        except (OSError, _BadShard) as exc:  # a damaged shard costs recomputation, never a crash
            reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
            self._set_aside(path, f"unreadable cache shard {path} ({reason})", "its images are recomputed")
            return None
        if not finite.all():
            self._set_aside(path, f"rejected cache shard {path} ({int((~finite).sum())} row(s) with NaN or "
                                  "infinite values)", "its other rows were kept and those images are recomputed")
            arr = arr[finite]
            if len(arr):
                self.append([h.decode() for h in arr["hash"]], arr["vector"])
        return arr

    def _set_aside(self, path: Path, what: str, consequence: str) -> None:
        """Move a bad shard to ``quarantine/`` (delete it if that fails) and report it once."""
        target = self.quarantine / path.name
        try:
            self.quarantine.mkdir(exist_ok=True)
            os.replace(path, target)
            fate = f"moved to {target}"
        except FileNotFoundError:  # another process set it aside first
            return
        except OSError:
            try:
                path.unlink()
                fate = "deleted"
            except FileNotFoundError:
                return
            except OSError as exc:
                fate = f"could not be moved or deleted ({exc.strerror or exc}), so it will be reported again"
        self.problems.append(f"{what}: {fate}; {consequence}")

    def load(self, wanted: set[str], *, only_new: bool = False) -> dict[str, np.ndarray]:
        """Vectors of the ``wanted`` hashes that are stored (first copy wins); with
        ``only_new``, only from shards this store has not read or written yet."""
        found: dict[str, np.ndarray] = {}
        if not wanted:
            return found
        keys = np.array(sorted(wanted), dtype="S64")
        for path in self._files():
            if only_new and path.name in self._seen:
                continue
            arr = self._read(path)
            if arr is None or not len(arr):
                continue
            rows = np.flatnonzero(np.isin(arr["hash"], keys))
            for row in rows:
                found.setdefault(arr["hash"][row].decode(), np.array(arr["vector"][row], dtype=np.float32))
            if len(found) == len(wanted):
                break
        return found

    def append(self, hashes: Sequence[str], vectors: np.ndarray) -> Path:
        """Store one batch as a new shard (complete or absent, never half-written), named by its sha256.

        Raises ValueError for NaN or infinite values: such a vector is never cached.
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(hashes):
            raise ValueError(f"expected one vector per hash ({len(hashes)}), got shape {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise ValueError("refusing to cache NaN or infinite vectors")
        data = _shard_bytes(hashes, vectors)
        target = self.shards / f"{time.time_ns():020d}-{hashlib.sha256(data).hexdigest()}.npy"
        _atomic_write_bytes(target, lambda fh: fh.write(data))
        self._seen.add(target.name)
        return target

    def consolidate(self, max_shards: int = SHARDS_BEFORE_MERGE) -> None:
        """Merge the shards into one when there are more than ``max_shards`` (under the lock).

        Only the shards read are deleted, after the merged shard is in place; a row present
        twice is harmless (same hash, same vector).
        """
        if len(self._files()) <= max_shards:
            return
        with self.locked():
            files = self._files()
            if len(files) <= max_shards:  # merged by another process while we waited
                return
            arrays, merged = [], []
            for path in files:
                arr = self._read(path)
                if arr is not None and arr.dtype == (arrays[0].dtype if arrays else arr.dtype):
                    arrays.append(arr)
                    merged.append(path)
            if len(arrays) < 2:
                return
            both = np.concatenate(arrays)
            _, first = np.unique(both["hash"], return_index=True)
            keep = np.sort(first)
            written = self.append([h.decode() for h in both["hash"][keep]], both["vector"][keep])
            for path in merged:
                if path != written:
                    path.unlink(missing_ok=True)
            for stale in self.shards.glob(".*.tmp"):  # left behind by killed writers
                try:
                    if time.time() - stale.stat().st_mtime > 3600:
                        stale.unlink()
                except OSError:
                    pass


# --------------------------------------------------------------------------- which bytes a file holds


#: An entry of ``file-hashes.json`` is used only if it was recorded this long after the
#: file's last change (its ctime): a rewrite within the same timestamp tick as the hashing
#: could otherwise leave size, mtime, ctime and inode all as they were.
_SETTLED_NS = 1_000_000_000


def _stat_fields(st: os.stat_result) -> list[int]:
    """What the stat shortcut compares: size, mtime_ns, ctime_ns, inode."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _index_key(root: Path, *, create: bool) -> bytes | None:
    """The secret that signs ``file-hashes.json`` entries (``file-hashes.key``, 32 random bytes, mode 0600)."""
    path = root / "file-hashes.key"
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    except OSError:
        return None
    if not create:
        return None
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
        try:
            os.link(tmp, path)  # the first process to create it wins; everybody reads that one
        except FileExistsError:
            pass
        except OSError:  # no hard links on this file system
            if not path.exists():
                os.replace(tmp, path)
        key = path.read_bytes()
        return key if len(key) >= 32 else None
    except OSError:
        return None
    finally:
        tmp.unlink(missing_ok=True)


def _sign(key: bytes, path: str, fields: Sequence[Any]) -> str:
    return hmac.new(key, json.dumps([path, *fields]).encode(), hashlib.sha256).hexdigest()[:32]


def _entry_problem(key: bytes | None, path: str, entry: Any, st: os.stat_result | None) -> str | None:
    """Why a ``file-hashes.json`` entry cannot stand for the file as it is now; None when it can."""
    if not (isinstance(entry, list) and len(entry) == 7):
        return "stale: not an entry of this artlab version"
    if key is None or not hmac.compare_digest(str(entry[6]), _sign(key, path, entry[:6])):
        return "bad signature (edited, or copied from another cache)"
    if st is None:
        return "file gone"
    if entry[:4] != _stat_fields(st):
        return "file changed (size, mtime, ctime or inode)"
    if entry[4] - entry[2] < _SETTLED_NS:
        return "hashed within a second of its last change"
    return None


def _hash_file(path: Path, chunk: int = 1 << 20) -> tuple[str, os.stat_result | None]:
    """(sha256 of the file, its stat) — the stat is None when the file changed while it was read.

    Only a regular file is read (a FIFO swapped in would block forever): anything else is an OSError.
    """
    digest = hashlib.sha256()
    try:
        handle = _open_regular(os.fspath(path), str(path))
    except ImageLoadError as exc:
        raise OSError(exc.reason) from None
    with handle as fh:
        before = os.fstat(fh.fileno())
        while block := fh.read(chunk):
            digest.update(block)
        after = os.fstat(fh.fileno())
    return digest.hexdigest(), before if _stat_fields(before) == _stat_fields(after) else None


def _sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    return _hash_file(path, chunk)[0]


class _HashMemo:
    """``file-hashes.json``: the sha256 of each file by absolute path, so unchanged files are not re-read.

    An entry is [size, mtime_ns, ctime_ns, inode, recorded_ns, sha256, signature]. It stands
    for the file only when :func:`_entry_problem` finds nothing: the same size, mtime_ns,
    ctime_ns and inode, recorded at least :data:`_SETTLED_NS` after the file's last change,
    and an HMAC-SHA256 signature (key ``file-hashes.key``) over the path and those values.
    Anything else means reading the file again. ``trust=False`` (``embed(rehash=True)``)
    reads every file and records what it finds.
    """

    def __init__(self, root: Path | None, *, trust: bool = True) -> None:
        self.file = root / "file-hashes.json" if root is not None else None
        self.key = _index_key(root, create=True) if root is not None else None
        self.trust = trust and self.key is not None
        self.entries: dict[str, Any] = {}
        self.changed: dict[str, list] = {}
        if self.trust and self.file is not None and self.file.is_file():
            try:
                loaded = json.loads(self.file.read_text())
                self.entries = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self.entries = {}  # only a memo: rebuilt as files are hashed

    def hash(self, path: Path) -> str:
        key = os.path.abspath(path)  # not resolve(): one realpath per file cost half the cache-hit time
        if self.trust and key in self.entries:
            entry = self.entries[key]
            if _entry_problem(self.key, key, entry, os.stat(path)) is None:
                return entry[5]
        recorded = time.time_ns()  # before the stat it goes with: errs towards "not settled"
        digest, st = _hash_file(path)
        if st is not None and self.key is not None:
            fields = [*_stat_fields(st), recorded, digest]
            self.entries[key] = self.changed[key] = [*fields, _sign(self.key, key, fields)]
        return digest

    def save(self) -> None:
        """Add the entries recorded by this run to the file (under its lock, keeping other processes' entries)."""
        if self.file is None or not self.changed:
            return
        try:
            with _FileLock(self.file.with_name("file-hashes.lock")):
                try:
                    on_disk = json.loads(self.file.read_text()) if self.file.is_file() else {}
                except (OSError, ValueError):
                    on_disk = {}
                kept = {p: e for p, e in on_disk.items() if isinstance(e, list) and len(e) == 7} \
                    if isinstance(on_disk, dict) else {}
                text = json.dumps({**kept, **self.changed}).encode()
                _atomic_write_bytes(self.file, lambda fh: fh.write(text))
        except OSError:  # a read-only cache: the memo is only a speed-up
            pass
        self.changed = {}


#: Largest image file :func:`embed` reads into memory to hash and decode: 12 bytes per pixel at
#: :data:`artlab.images.DEFAULT_MAX_PIXELS` (about 2 GiB), what decoding the largest image
#: ``load_image`` accepts takes anyway.
_MAX_FILE_BYTES = 12 * DEFAULT_MAX_PIXELS


def _read_file_bytes(path: Path) -> bytes:
    """All bytes of an image file, read once; ImageLoadError (with the reason) if that is impossible."""
    name = str(path)
    try:
        with _open_regular(os.fspath(path), name) as fh:  # never blocks on a FIFO swapped in since hashing
            size = os.fstat(fh.fileno()).st_size
            if size > _MAX_FILE_BYTES:
                raise ImageLoadError(name, f"larger than {_MAX_FILE_BYTES:,} bytes", "embed reads an image "
                                     "file into memory once; this one is too large for that")
            # ask for what the file holds (+1 to see growth): read(n) allocates n bytes up front, and
            # 2 GB of address space per image fails every image under a ulimit -v or strict overcommit
            data = fh.read(min(size, _MAX_FILE_BYTES) + 1)
    except FileNotFoundError:
        raise ImageLoadError(name, "no such file", "it was removed or renamed while embedding") from None
    except PermissionError:
        raise ImageLoadError(name, "permission denied", "check the file's permissions") from None
    except IsADirectoryError:
        raise ImageLoadError(name, "is a directory, not a file", "") from None
    except OSError as exc:
        raise ImageLoadError(name, f"unreadable: {exc.strerror or exc}", "") from None
    if len(data) > _MAX_FILE_BYTES:
        raise ImageLoadError(name, f"larger than {_MAX_FILE_BYTES:,} bytes", "")
    return data


def _open_image_bytes(data: bytes, path: Path) -> Image.Image:
    """A lazily decoded PIL image of ``data`` (errors worded as :func:`artlab.images.load_image`'s).

    The image keeps no file name: PIL would map the *file* into memory for raw formats, and
    the point is to decode exactly the bytes that were hashed.
    """
    name = str(path)
    if not data:
        raise ImageLoadError(name, "empty file (0 bytes)",
                             "the file was probably only partly downloaded or copied; re-create it")
    try:
        with _PIL_OPEN_LOCK:  # the pixel limit is load_image's (max_pixels), checked before decoding
            saved_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                return Image.open(io.BytesIO(data))
            finally:
                Image.MAX_IMAGE_PIXELS = saved_limit
    except Image.UnidentifiedImageError:
        raise ImageLoadError(name, "not a recognised image format",
                             "check that it really is an image (PNG, JPEG, TIFF, BMP, GIF, WebP, ...)") from None
    except _DECODE_ERRORS as err:
        raise ImageLoadError(name, f"truncated or corrupt image header ({err})",
                             "re-download or re-export the file") from None


class _ReadOnce:
    """Sources for the batching loop that read each file once: ``digests[j]`` is the sha256 of
    the bytes read for ``paths[j]`` (None if they could not be read) and those same bytes are
    what gets decoded, so a vector always belongs to the bytes it was made from."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        self.digests: list[str | None] = [None] * len(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, j: int) -> Image.Image:
        data = _read_file_bytes(self.paths[j])
        self.digests[j] = hashlib.sha256(data).hexdigest()
        return _open_image_bytes(data, self.paths[j])


# --------------------------------------------------------------------------- checking the cache


@dataclass
class CacheReport:
    """What :func:`verify_cache` found in an embedding cache (and, with ``repair=True``, removed).

    Counts of sound configuration folders, shards and vectors; ``bad_shards`` (path, reason)
    and ``bad_rows`` (NaN/inf rows inside shards whose checksum holds); ``index_*`` for the
    entries of ``file-hashes.json``: ``ok`` (signature valid, file unchanged and, unless
    ``rehash=False``, its bytes still have that sha256), ``stale`` (file gone or changed
    since: it is simply read again when used) and ``bad`` (path, reason: signature invalid,
    or the content changed while size, mtime, ctime and inode stayed); ``quarantined`` and
    ``temp_files`` left behind; ``outdated`` folders of other cache versions (left alone);
    ``problems`` everything else worth knowing. ``ok`` is True when nothing is bad.
    """

    root: Path
    configs: int = 0
    shards: int = 0
    vectors: int = 0
    bad_shards: list[tuple[str, str]] = field(default_factory=list)
    bad_rows: int = 0
    index_ok: int = 0
    index_stale: int = 0
    index_bad: list[tuple[str, str]] = field(default_factory=list)
    quarantined: int = 0
    temp_files: int = 0
    outdated: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    repaired: bool = False

    @property
    def ok(self) -> bool:
        return not (self.bad_shards or self.bad_rows or self.index_bad or self.problems)

    def summary(self) -> str:
        """A few lines for people (what ``artlab cache verify|repair`` prints)."""
        done = " (removed)" if self.repaired else ""
        lines = [(f"embedding cache {self.root}: {self.configs} configuration(s), {self.shards} sound shard(s), "
                  f"{self.vectors:,} vector(s)")]
        lines.append(f"  damaged shards: {len(self.bad_shards)}{done if self.bad_shards else ''}")
        lines += [f"    {p}: {why}" for p, why in self.bad_shards]
        lines.append(f"  rows with NaN or infinite values: {self.bad_rows}{done if self.bad_rows else ''}")
        lines.append(f"  file-hashes.json: {self.index_ok} ok, {self.index_stale} stale (file gone or changed; "
                     f"re-read when used){done if self.index_stale else ''}, {len(self.index_bad)} bad"
                     f"{done if self.index_bad else ''}")
        lines += [f"    {p}: {why}" for p, why in self.index_bad]
        lines.append(f"  quarantined shards: {self.quarantined}{done if self.quarantined else ''}; "
                     f"leftover temporary files: {self.temp_files}{done if self.temp_files else ''}")
        if self.outdated:
            lines.append(f"  folders of another cache version (not used, left alone): {', '.join(self.outdated)}")
        lines += [f"  {p}" for p in self.problems]
        if self.repaired:
            lines.append("repaired: what was bad is gone; the images concerned are computed again when next used")
        elif self.ok:
            lines.append("ok")
        else:
            lines.append("problems found: `artlab cache repair` removes them (the vectors are recomputed when needed)")
        return "\n".join(lines)


def verify_cache(cache_dir: str | os.PathLike | None = None, *, repair: bool = False,
                 rehash: bool = True) -> CacheReport:
    """Check every shard and every ``file-hashes.json`` entry of an embedding cache; ``repair=True`` drops what is bad.

    Shards: checksum, layout and finite rows (:func:`_check_shard`). Index entries:
    signature and stat as :func:`embed` checks them, and (unless ``rehash=False``) the
    sha256 of every file whose stat still matches, which is the one change the stat
    shortcut can miss (see the module docs). Without ``repair`` nothing is changed. With
    it, holding the same locks as :func:`embed`: damaged shards are deleted, shards with
    NaN/inf rows are rewritten without them, ``quarantine/`` folders and temporary files
    older than an hour are emptied, and bad or stale index entries are removed. Folders of
    other cache versions are only listed. Returns a :class:`CacheReport`.
    """
    root = Path(cache_dir if cache_dir is not None else default_cache_dir()).expanduser()
    report = CacheReport(root, repaired=repair)
    if not root.is_dir():
        report.problems.append(f"{root} does not exist (nothing cached yet?)")
        report.repaired = False
        return report
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if not (folder / "shards").is_dir():
            continue
        try:
            config = json.loads((folder / "config.json").read_text())
            version = config.get("version")
            if _config_dirname(config) != folder.name:
                report.problems.append(f"{folder}/config.json does not match its folder's name")
        except (OSError, ValueError, AttributeError, KeyError, TypeError) as exc:
            report.problems.append(f"{folder}/config.json is unreadable ({exc}); its shards are checked anyway")
            version = CACHE_VERSION
        if version != CACHE_VERSION:
            report.outdated.append(folder.name)
            continue
        report.configs += 1
        with _FileLock(folder / "lock") if repair else contextlib.nullcontext():
            _verify_shards(folder, report, repair)
    _verify_index(root, report, repair, rehash)
    return report


def _verify_shards(folder: Path, report: CacheReport, repair: bool) -> None:
    widths = set()
    for path in sorted((folder / "shards").glob("*.npy")):
        try:
            arr, finite = _check_shard(path.name, path.read_bytes())
        except FileNotFoundError:
            continue
        except (OSError, _BadShard) as exc:
            report.bad_shards.append((str(path), (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)))
            if repair:
                path.unlink(missing_ok=True)
            continue
        report.shards += 1
        report.vectors += int(finite.sum())
        widths.add(arr.dtype["vector"].shape[0])
        if not finite.all():
            report.bad_rows += int((~finite).sum())
            if repair:
                good = arr[finite]
                if len(good):
                    data = _shard_bytes([h.decode() for h in good["hash"]], good["vector"])
                    target = path.parent / f"{time.time_ns():020d}-{hashlib.sha256(data).hexdigest()}.npy"
                    _atomic_write_bytes(target, lambda fh, data=data: fh.write(data))
                path.unlink(missing_ok=True)
    if len(widths) > 1:
        report.problems.append(f"{folder.name}: shards with different vector lengths {sorted(widths)}")
    for path in sorted((folder / "quarantine").glob("*")):
        report.quarantined += 1
        if repair:
            path.unlink(missing_ok=True)
    for path in sorted((folder / "shards").glob(".*.tmp")):
        try:
            if time.time() - path.stat().st_mtime <= 3600:
                continue  # probably being written right now
        except OSError:
            continue
        report.temp_files += 1
        if repair:
            path.unlink(missing_ok=True)


def _verify_index(root: Path, report: CacheReport, repair: bool, rehash: bool) -> None:
    memo = root / "file-hashes.json"
    if not memo.is_file():
        return
    try:
        entries = json.loads(memo.read_text())
        if not isinstance(entries, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        report.problems.append(f"{memo} is unreadable ({exc}); it is only a speed-up"
                               + ("; removed" if repair else ""))
        if repair:
            memo.unlink(missing_ok=True)
        return
    key = _index_key(root, create=False)
    drop = []
    for path, entry in entries.items():
        try:
            st: os.stat_result | None = os.stat(path)
        except OSError:
            st = None
        problem = _entry_problem(key, path, entry, st)
        if problem is None and rehash:
            try:
                if _sha256_file(Path(path)) != entry[5]:
                    problem = "bad: its content changed while size, mtime, ctime and inode stayed the same"
            except OSError:
                problem = "file gone"
        if problem is None:
            report.index_ok += 1
            continue
        drop.append(path)
        if problem.startswith("bad"):
            report.index_bad.append((path, problem))
        else:
            report.index_stale += 1
    if repair and drop:
        with _FileLock(root / "file-hashes.lock"):
            try:
                on_disk = json.loads(memo.read_text())
            except (OSError, ValueError):
                on_disk = {}
            if isinstance(on_disk, dict):  # entries rewritten by a run meanwhile are kept
                for path in drop:
                    if on_disk.get(path) == entries[path]:
                        del on_disk[path]
                text = json.dumps(on_disk).encode()
                _atomic_write_bytes(memo, lambda fh: fh.write(text))


# --------------------------------------------------------------------------- embed


def _as_collection(images: Source) -> Collection:
    """Collection, folder or list of image paths -> a Collection (missing files are skipped, not fatal)."""
    if isinstance(images, Collection):
        if not len(images):
            raise ValueError("the collection is empty; nothing to embed")
        return images
    if isinstance(images, (str, os.PathLike)):
        path = Path(images).expanduser()
        if path.is_file():
            return _as_collection([path])
        return Collection.from_folder(path)  # CollectionError (a ValueError) names the problem
    if isinstance(images, (Tensor, np.ndarray, Image.Image)):
        raise TypeError(
            "embed takes files (a Collection, a folder or a list of paths) so that it can cache by content; "
            "for an in-memory image use nearest(emb, image, model=...)"
        )
    if isinstance(images, Sequence):
        if not images:
            raise ValueError("embed got an empty list of images; pass a folder, a Collection or image paths")
        items, skipped = [], []
        for entry in images:
            if not isinstance(entry, (str, os.PathLike)):
                raise TypeError(f"embed takes a list of image paths, got a {type(entry).__name__} in it")
            path = Path(entry).expanduser()
            if path.is_file():
                items.append(Item(path))
            else:
                skipped.append((path, "is a folder" if path.is_dir() else
                                "not a regular file (a pipe, socket or device)" if path.exists() else "file not found"))
        collection = Collection(items, None, "images", skipped, [])
        if not items:
            raise CollectionError(_none_usable(len(images), "the list", [(str(p), r) for p, r in skipped]))
        return collection
    raise TypeError(f"embed takes a Collection, a folder or a list of image paths, got {type(images).__name__}")


def _none_usable(n: int, where: str, skipped: Sequence[tuple[str, str]]) -> str:
    reasons = "; ".join(f"{p}: {r}" for p, r in skipped[:5]) + (" …" if len(skipped) > 5 else "")
    return (f"none of the {n} image(s) in {where} could be embedded ({reasons}). "
            "Check that the files are complete JPEG/PNG/… images; re-export or remove the broken ones.")


def _skipped_note(skipped: Sequence[tuple[str, str]]) -> str:
    listed = "; ".join(f"{p} ({why})" for p, why in skipped[:10])
    return f"skipped {len(skipped)} unusable file(s): {listed}" + (" …" if len(skipped) > 10 else "")


def _report(bar: Any, on_progress: ProgressCallback | None, done: int, total: int) -> None:
    bar.n = done
    bar.refresh()
    if on_progress is not None:
        on_progress(done, total)


def embed(
    images: Source,
    model: Backbone,
    layer: str | None = None,
    *,
    pooling: str = "mean",
    size: int = 224,
    batch_size: int = 16,
    cache_dir: str | os.PathLike | None | bool = None,
    progress: bool = True,
    on_progress: ProgressCallback | None = None,
    device: str | torch.device | None = None,
    gram_dim: int = GRAM_DIM,
    rehash: bool = False,
) -> Embeddings:
    """One vector per image of a collection, computed once and cached on disk by content.

    ``images``: a :class:`~artlab.data.Collection`, a folder (class subfolders or a
    metadata CSV, see :meth:`Collection.from_folder`) or a list of image paths.
    ``layer`` defaults to :func:`default_layer`. ``pooling``: ``"mean"`` (each channel's
    spatial mean, D = C), ``"mean+std"`` (means then standard deviations, D = 2C) or
    ``"gram"`` (the Gram matrix's upper triangle, randomly projected to ``gram_dim``
    values by a fixed-seed Gaussian matrix; D = min(C(C+1)/2, gram_dim)); details in
    :func:`_pooler`. Every image is resized (shorter side to ``size``) and centre-cropped
    to size×size, then run in batches of ``batch_size`` through the shared loop of
    :mod:`artlab.activations`, each forward pass stopping at ``layer``.

    Cache (``cache_dir``, default :func:`default_cache_dir`; ``False`` for none): keyed
    by each file's sha256 and the model, its weights, layer, pooling, size and crop.
    Duplicate files are computed once; files already cached are not loaded at all; each
    batch is stored before ``on_progress(done, total)`` is called (``done`` counts
    distinct images ready, cached ones included), so raising from the callback, an
    exception or a killed process loses nothing already computed, and the next call
    computes only what is missing and returns identical vectors. A vector is stored under
    the hash of the exact bytes it was decoded from; shards are checksummed and a damaged
    one is set aside (reported once in ``notes``) and recomputed; a vector with NaN or
    ±inf is never cached (that image is skipped, saying so). Unchanged files are
    recognised without re-reading them by the stat rule of the module docs (size, mtime,
    ctime and inode); ``rehash=True`` reads and hashes every file instead. Two runs on
    the same cache share the work: each batch is computed under a lock, after taking in
    what the other run stored meanwhile.

    Unreadable files are skipped and listed in ``skipped``; metadata problems of the
    collection are carried into ``notes``. An empty folder, or one where no file can be
    used, raises ``ValueError`` saying what was wrong.
    """
    if not isinstance(model, Backbone):
        raise TypeError(f"model must be an artlab Backbone (artlab.models.backbone(...)), got {type(model).__name__}")
    pooling = _check_pooling(pooling)
    layer = model.resolve_layer(layer if layer is not None else default_layer(model, pooling))
    size = _check_size(size)
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if isinstance(gram_dim, bool) or int(gram_dim) < 1:
        raise ValueError(f"gram_dim must be a positive int, got {gram_dim}")
    collection = _as_collection(images)
    root = None if cache_dir is False else Path(cache_dir if cache_dir not in (None, True) else default_cache_dir())
    root = root.expanduser() if root is not None else None
    config = _config(model, layer, pooling, size, int(gram_dim))
    store = _ShardStore(root, config) if root is not None else None

    hashes, skipped = _content_hashes(collection, _HashMemo(root, trust=not rehash))
    first: dict[str, int] = {}  # distinct images: content hash -> first row with it
    for i, digest in hashes.items():
        first.setdefault(digest, i)
    vectors = store.load(set(first)) if store is not None else {}
    n_cached = len(vectors)
    todo = [h for h in first if h not in vectors]
    bar = tqdm(total=len(first), initial=n_cached, desc=f"embedding ({model.name} {layer} {pooling})", unit="img",
               disable=not progress)
    try:
        failed, computed = _compute_missing(
            model, collection, hashes, todo, layer, vectors, store,
            size=size, batch_size=int(batch_size), device=_model_device(model, device),
            pool=_pooler(pooling, gram_dim=int(gram_dim)),
            report=lambda done: _report(bar, on_progress, done, len(first)),
        )
    finally:
        bar.close()
    if store is not None:
        store.consolidate()

    # rows in the collection's order; a file that failed to load takes its duplicates with it
    reasons = dict(failed)
    kept = [i for i in range(len(collection)) if i in hashes and hashes[i] in vectors]
    skipped += [(str(collection.items[i].path), reasons[hashes[i]]) for i in hashes if hashes[i] in reasons]
    if not kept:
        where = str(collection.root) if collection.root is not None else "the list"
        raise ValueError(_none_usable(len(collection) + len(collection.skipped), where, skipped))
    return _assemble(collection, kept, hashes, vectors, skipped, model, layer, pooling, size, config,
                     len({hashes[i] for i in kept} - computed), len(computed), store)


def _content_hashes(collection: Collection, memo: _HashMemo) -> tuple[dict[int, str], list[tuple[str, str]]]:
    """{row: sha256 of its file} and (path, reason) for the collection's skipped and unreadable files."""
    skipped = [(str(p), why) for p, why in collection.skipped]
    hashes: dict[int, str] = {}
    for i, item in enumerate(collection.items):
        try:
            if not stat.S_ISREG(os.stat(item.path).st_mode):  # reading a FIFO would wait for a writer forever
                skipped.append((str(item.path), "not a regular file (a pipe, socket or device): never opened"))
                continue
            hashes[i] = memo.hash(item.path)
        except OSError as exc:
            skipped.append((str(item.path), f"unreadable: {exc.strerror or exc}"))
    memo.save()
    return hashes, skipped


def _compute_missing(
    model: Backbone, collection: Collection, hashes: dict[int, str], todo: list[str], layer: str,
    vectors: dict[str, np.ndarray], store: _ShardStore | None, *, size: int, batch_size: int,
    device: torch.device, pool: Callable[[Tensor], Tensor], report: Callable[[int], None],
) -> tuple[list[tuple[str, str]], set[str]]:
    """Vectors of the content hashes ``todo`` into ``vectors``; ((key, reason) of the failures, hashes computed).

    Each file is read once, and its vector is made from and stored under *those* bytes
    (:class:`_ReadOnce`): a row whose file no longer has the hash it had in ``hashes``
    (changed since) gets its new hash there, and the old hash is tried on its next copy,
    if any. A row whose file cannot be read any more fails alone (key ``"unreadable:<row>"``);
    a failure to decode, or a vector with NaN/inf (never cached), fails every row with
    those bytes. With a store, each batch is chosen and computed holding the store's lock,
    after taking in the shards other processes wrote meanwhile, so concurrent runs share
    the work; it is written *before* ``report`` is called, so a caller that stops here (or
    a killed process) keeps every batch that was reported.
    """
    copies: dict[str, list[int]] = {h: [] for h in todo}  # rows (files) still to try, per hash
    for i, digest in hashes.items():
        if digest in copies:
            copies[digest].append(i)
    failed: list[tuple[str, str]] = []
    computed: set[str] = set()
    done = len(vectors)
    pending = list(todo)
    while pending:
        with store.locked() if store is not None else contextlib.nullcontext():
            if store is not None:
                vectors.update(store.load(set(pending), only_new=True))  # computed by another process meanwhile
            still = [h for h in pending if h not in vectors]
            done += len(pending) - len(still)
            jobs = [(h, copies[h].pop(0)) for h in still[:batch_size]]
            pending = still[batch_size:]
            reader = _ReadOnce([collection.items[row].path for _, row in jobs])
            trouble: list[tuple[str, str]] = []
            out: dict[int, np.ndarray] = {}
            for _, chunk, pooled in _batched_forward(
                model, reader, [str(j) for j in range(len(jobs))], range(len(jobs)), [layer], size=size,
                batch_size=max(1, len(jobs)), device=device, skipped=trouble, pool=pool,
            ):
                if chunk:
                    out.update(zip(chunk, pooled[layer].numpy().astype(np.float32, copy=False)))
            reasons = {int(j): why for j, why in trouble}
            retry, new = [], []
            for j, (h, row) in enumerate(jobs):
                actual = reader.digests[j]
                if actual is None:  # gone or unreadable since it was hashed: this file only
                    hashes[row] = f"unreadable:{row}"
                    failed.append((hashes[row], reasons[j]))
                else:
                    hashes[row] = actual
                    if j in reasons:
                        failed.append((actual, reasons[j]))
                    elif actual not in vectors:
                        if np.isfinite(out[j]).all():
                            vectors[actual] = out[j]
                            computed.add(actual)
                            new.append(actual)
                        else:
                            failed.append((actual, "the network gave NaN or infinite values (nothing was cached)"))
                if actual == h or not copies[h]:
                    done += 1
                else:
                    retry.append(h)  # changed since it was hashed: another copy may still hold these bytes
            pending = retry + pending
            if store is not None and new:
                store.append(new, np.stack([vectors[h] for h in new]))
        report(done)
    if not todo:
        report(done)
    return failed, computed


def _assemble(
    collection: Collection, kept: list[int], hashes: Mapping[int, str], vectors: Mapping[str, np.ndarray],
    skipped: list[tuple[str, str]], model: Backbone, layer: str, pooling: str, size: int,
    config: dict[str, Any], n_cached: int, n_computed: int, store: _ShardStore | None,
) -> Embeddings:
    paths = [str(collection.items[i].path) for i in kept]
    row_hashes = [hashes[i] for i in kept]
    meta = collection.to_frame().iloc[kept].reset_index(drop=True)
    groups: dict[str, list[str]] = {}
    for digest, path in zip(row_hashes, paths):
        groups.setdefault(digest, []).append(path)
    duplicates = {h: ps for h, ps in groups.items() if len(ps) > 1}
    notes = list(collection.notes)
    if skipped:
        notes.append(_skipped_note(skipped))
    if duplicates:
        extra = sum(len(ps) - 1 for ps in duplicates.values())
        example = " = ".join(next(iter(duplicates.values()))[:3])
        notes.append(f"{extra} file(s) duplicate other files byte for byte (computed once; e.g. {example}); "
                     "they stay as separate rows")
    if store is not None:
        notes += store.problems
    if not model.pretrained:
        notes.append(f"{model.label}: random weights, so these vectors say what an untrained network sees, "
                     "not ImageNet features")
    return Embeddings(
        vectors=np.stack([vectors[h] for h in row_hashes]).astype(np.float32, copy=False),
        paths=paths, meta=meta, model_label=model.label, pretrained=bool(model.pretrained), layer=layer,
        pooling=pooling, size=size, skipped=skipped, notes=notes, duplicates=duplicates, hashes=row_hashes,
        config=config, n_cached=n_cached, n_computed=n_computed,
    )


def _embed_images(emb: Embeddings, model: Backbone, sources: Sequence[Any], device: Any = None) -> np.ndarray:
    """Vectors for in-memory or outside images, made exactly as ``emb``'s were (same loop, no cache)."""
    _check_same_model(emb, model)
    failed: list[tuple[str, str]] = []
    pool = _pooler(emb.pooling, gram_dim=int(emb.config.get("gram_dim", GRAM_DIM)))
    rows = []
    for _, _, pooled in _batched_forward(
        model, list(sources), [f"query[{i}]" for i in range(len(sources))], range(len(sources)), [emb.layer],
        size=emb.size, batch_size=16, device=_model_device(model, device), skipped=failed, pool=pool,
    ):
        if pooled:
            rows.append(pooled[emb.layer].numpy())
    if failed:
        raise ImageLoadError(None, failed[0][1], source=failed[0][0])
    return np.concatenate(rows).astype(np.float32, copy=False)


def _check_same_model(emb: Embeddings, model: Backbone | None) -> Backbone:
    if model is None:
        raise ValueError(
            f"this query is not one of the embedded images, so it has to be embedded first: pass model= "
            f"(the model the embeddings were made with: {emb.model_label})"
        )
    if model.label != emb.model_label or (
        "weights" in emb.config and _weights_fingerprint(model) != emb.config["weights"]
    ):
        raise ValueError(
            f"the embeddings were made with {emb.model_label}, but model is {model.label} "
            f"(or has other weights); pass the same model so the query vector is comparable"
        )
    return model


# --------------------------------------------------------------------------- maps


def _matrix(data: Embeddings | np.ndarray | Tensor, minimum: int = 2) -> np.ndarray:
    """N×D float array from Embeddings, an array or a tensor; finite, with at least ``minimum`` rows."""
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


def _unit_rows(x: np.ndarray) -> np.ndarray:
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
        x, metric = _unit_rows(x), "euclidean"
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


def _umap(data: Any, dims: int, *, seed: int, n_neighbors: int, min_dist: float, pca: int | None,
          metric: str) -> np.ndarray:
    x = _matrix(data)
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
            return reducer.fit_transform(x).astype(np.float32)
    finally:
        # umap "restores" numba's thread count through omp_set_num_threads, which (one
        # libgomp in the process) also resets torch's intra-op threads: put them back.
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def umap_2d(data: Embeddings | np.ndarray | Tensor, *, seed: int = 0, n_neighbors: int = 15,
            min_dist: float = 0.1, pca: int | None = 50, metric: str = "cosine") -> np.ndarray:
    """A 2-D UMAP map (N×2) of the vectors; same seed, same map.

    ``n_neighbors`` is capped at N−1; ``pca`` reduces to that many components first (faster
    on wide vectors; None to skip). Needs at least 4 images. The first UMAP in a process
    compiles numba code (~15-25 s): call :func:`warm_up_umap` early in a background thread.
    """
    return _umap(data, 2, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist, pca=pca, metric=metric)


def umap_3d(data: Embeddings | np.ndarray | Tensor, *, seed: int = 0, n_neighbors: int = 15,
            min_dist: float = 0.1, pca: int | None = 50, metric: str = "cosine") -> np.ndarray:
    """A 3-D UMAP map (N×3); see :func:`umap_2d`."""
    return _umap(data, 3, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist, pca=pca, metric=metric)


def _pca(data: Any, dims: int) -> np.ndarray:
    out = _pca_scores(_matrix(data), dims)
    if out.shape[1] < dims:  # fewer images or features than dimensions: pad with zeros
        out = np.pad(out, ((0, 0), (0, dims - out.shape[1])))
    return out.astype(np.float32)


def pca_2d(data: Embeddings | np.ndarray | Tensor, *, seed: int = 0) -> np.ndarray:
    """The first two principal components (N×2): linear, deterministic, instant (``seed`` unused)."""
    return _pca(data, 2)


def pca_3d(data: Embeddings | np.ndarray | Tensor, *, seed: int = 0) -> np.ndarray:
    """The first three principal components (N×3)."""
    return _pca(data, 3)


def tsne_2d(data: Embeddings | np.ndarray | Tensor, *, seed: int = 0, perplexity: float = 30.0,
            pca: int | None = 50, metric: str = "cosine", dims: int = 2) -> np.ndarray:
    """A t-SNE map (N×2, or N×3 with ``dims=3``; scikit-learn, PCA init); same seed, same map.

    ``perplexity`` is capped at (N−1)/3 so small collections work; ``pca`` and ``metric``
    as in :func:`umap_2d`.
    """
    from sklearn.manifold import TSNE

    x = _matrix(data, minimum=3)
    x, metric = _pre_reduce(x, pca, metric)
    perplexity = float(min(perplexity, max(1.0, (len(x) - 1) / 3)))
    tsne = TSNE(n_components=dims, perplexity=perplexity, metric=metric, init="pca", random_state=seed)
    with _openmp_threads(1 if len(x) <= 5000 else None):
        return tsne.fit_transform(x).astype(np.float32)


def _openmp_threads(limit: int | None):
    """Limit OpenMP threads (or nothing). scikit-learn's Barnes-Hut t-SNE gradient spins
    OpenMP threads 1000 times; on a busy 2-core machine one thread was 20-60× faster
    for 36-500 points (measured here), with identical output."""
    import contextlib

    if limit is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    return threadpool_limits(limits=limit, user_api="openmp")


def project(method: str, data: Embeddings | np.ndarray | Tensor, dims: int = 2, seed: int = 0, **kw: Any) -> np.ndarray:
    """``method`` ("umap", "pca" or "tsne") map of the vectors in ``dims`` (2 or 3) dimensions.

    ``kw`` go to the method's function (e.g. ``n_neighbors`` for UMAP, ``perplexity`` for t-SNE).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(map(repr, METHODS))}")
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims}")
    if method == "umap":
        return (umap_2d if dims == 2 else umap_3d)(data, seed=seed, **kw)
    if method == "pca":
        return (pca_2d if dims == 2 else pca_3d)(data, seed=seed, **kw)
    return tsne_2d(data, seed=seed, dims=dims, **kw)


def warm_up_umap() -> float:
    """Fit a tiny UMAP so numba compiles now (~15-25 s once per process); returns the seconds taken.

    Call it in a background thread when a notebook opens, so the first real map is quick.
    """
    start = time.perf_counter()
    x = np.random.default_rng(0).normal(size=(32, 8))
    umap_2d(x, n_neighbors=5, pca=None, metric="euclidean")
    return time.perf_counter() - start


# --------------------------------------------------------------------------- neighbours


def _query(emb: Embeddings, query: Any, model: Backbone | None, device: Any) -> tuple[np.ndarray, int | None]:
    """(query vector, its row in ``emb`` or None)."""
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
        digest = _sha256_file(path)
        if digest in emb.hashes:  # the same bytes under another name: no need to run the network
            return emb.vectors[emb.hashes.index(digest)], None
        return _embed_images(emb, _check_same_model(emb, model), [path], device)[0], None
    if isinstance(query, (np.ndarray, Tensor)) and (query.ndim == 1 or (query.ndim == 2 and query.shape[0] == 1)):
        vector = np.asarray(query.detach().cpu() if isinstance(query, Tensor) else query, dtype=np.float32).ravel()
        if vector.shape[0] != dim:
            raise ValueError(f"query vector has {vector.shape[0]} values; these embeddings have {dim}")
        return vector, None
    if isinstance(query, Tensor):
        query = ensure_image_batch(query, "query")
        if query.shape[0] != 1:
            raise ValueError(f"query must be one image, got a batch of {query.shape[0]}")
        return _embed_images(emb, _check_same_model(emb, model), [query], device)[0], None
    if isinstance(query, (np.ndarray, Image.Image)):
        return _embed_images(emb, _check_same_model(emb, model), [load_image(query)], device)[0], None
    raise TypeError(
        f"query must be an index, a path, an image (tensor/PIL/array) or a vector, got {type(query).__name__}"
    )


def nearest(emb: Embeddings, query: Any, k: int = 8, model: Backbone | None = None, *,
            device: str | torch.device | None = None) -> pd.DataFrame:
    """The ``k`` images most similar to ``query`` (cosine similarity of the vectors).

    ``query``: a row index or an embedded path (the image itself is left out), another
    image file, an image tensor / PIL image / array (embedded with the same model, layer,
    pooling and size, so ``model`` is required), or a vector of length D. Columns: rank,
    index (row in ``emb``), path, similarity, then label and the other metadata.
    """
    if isinstance(k, bool) or int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    vector, self_index = _query(emb, query, model, device)
    sims = _unit_rows(emb.vectors.astype(np.float64)) @ (vector / max(np.linalg.norm(vector), 1e-12))
    order = [i for i in np.argsort(-sims, kind="stable") if i != self_index][: int(k)]
    frame = emb.meta.iloc[order].reset_index(drop=True)
    frame = frame.drop(columns=[c for c in ("rank", "index", "similarity") if c in frame.columns])
    frame.insert(0, "rank", np.arange(1, len(order) + 1))
    frame.insert(1, "index", np.asarray(order, dtype=int))
    if "path" not in frame.columns:
        frame.insert(2, "path", [emb.paths[i] for i in order])
    frame.insert(list(frame.columns).index("path") + 1, "similarity", sims[order].astype(float))
    return frame


# --------------------------------------------------------------------------- linear probe


@dataclass
class ProbeResult:
    """Cross-validated linear classifier on embeddings: how well the vectors predict a label.

    ``accuracy`` (mean over folds) ± ``accuracy_std``, ``fold_accuracies``;
    ``balanced_accuracy`` (mean per-class recall of the out-of-fold predictions, robust to
    unequal class sizes); ``confusion`` (rows true, columns predicted, in ``classes``
    order); ``report`` (scikit-learn's classification report as a table); ``predictions``
    (out-of-fold predicted label per image of the embeddings, None for images left out);
    ``misclassified`` (their row indices); ``chance`` (the majority-class rate to beat).
    """

    accuracy: float
    accuracy_std: float
    fold_accuracies: list[float]
    balanced_accuracy: float
    classes: list[str]
    confusion: np.ndarray
    report: pd.DataFrame
    predictions: np.ndarray
    misclassified: list[int]
    labels: np.ndarray
    folds: int
    chance: float
    notes: list[str] = field(default_factory=list)
    model_label: str = ""
    pretrained: bool = False
    layer: str = ""
    pooling: str = ""
    paths: list[str] = field(default_factory=list)

    @property
    def accuracy_mean(self) -> float:
        return self.accuracy

    def to_frame(self) -> pd.DataFrame:
        """One row per image used: index, path, label, predicted, correct."""
        used = [i for i, p in enumerate(self.predictions) if p is not None]
        return pd.DataFrame({
            "index": used,
            "path": [self.paths[i] for i in used] if self.paths else None,
            "label": [self.labels[i] for i in used],
            "predicted": [self.predictions[i] for i in used],
            "correct": [self.labels[i] == self.predictions[i] for i in used],
        })

    def __str__(self) -> str:
        return (f"linear probe ({self.model_label}, {self.layer}, {self.pooling}): accuracy "
                f"{self.accuracy:.3f} ± {self.accuracy_std:.3f} over {self.folds} folds, balanced "
                f"{self.balanced_accuracy:.3f}, chance {self.chance:.3f}, {len(self.classes)} classes")

    def plot_confusion(self, normalize: bool = True) -> ArtlabFigure:
        """The confusion matrix as a heatmap (rows: true label, normalised per row unless told not to)."""
        counts = self.confusion.astype(float)
        shown = counts / np.maximum(counts.sum(1, keepdims=True), 1) if normalize else counts
        k = len(self.classes)
        side = 2.2 + 0.55 * k
        fig = ArtlabFigure(figsize=(side + 1.2, side + 0.6))
        ax = fig.add_subplot(1, 1, 1)
        im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
        ax.set_xticks(range(k), self.classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), self.classes, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if shown[i, j] > 0.6 * (shown.max() or 1) else "#222222")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of row" if normalize else "images")
        ax.set_title(f"linear probe {self.layer} ({self.pooling}): accuracy {self.accuracy:.2f} ± "
                     f"{self.accuracy_std:.2f}, chance {self.chance:.2f}", fontsize=9)
        fig.subplots_adjust(bottom=0.25)
        return stamp_model(fig, _model_tag(label=self.model_label, pretrained=self.pretrained))


def _probe_labels(emb: Embeddings, labels: Sequence[Any] | str | None) -> np.ndarray:
    if labels is None:
        labels = "label"
    if isinstance(labels, str):
        if labels not in emb.meta.columns:
            raise ValueError(f"no metadata column {labels!r}; available: {', '.join(map(str, emb.meta.columns))}")
        labels = list(emb.meta[labels])
    labels = list(labels)
    if len(labels) != len(emb):
        raise ValueError(f"labels has {len(labels)} entries for {len(emb)} images")
    return np.array([None if _missing(v) else str(v) for v in labels], dtype=object)


def linear_probe(emb: Embeddings, labels: Sequence[Any] | str | None = None, *, folds: int = 5, seed: int = 0,
                 C: float = 1.0) -> ProbeResult:
    """How well a linear classifier on the vectors predicts ``labels``, cross-validated.

    ``labels``: one per image, or a metadata column name; default ``meta["label"]``.
    Standardised features, multinomial logistic regression with L2 strength ``1/C``,
    stratified ``folds``-fold cross-validation shuffled by ``seed``. Exact duplicates are
    kept in the same fold (grouped), so an image never meets its own copy in training.
    Images without a label and classes with a single image are left out (noted); if a
    class has fewer than ``folds`` images the number of folds is reduced (noted). Fewer
    than two classes raises ``ValueError``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, classification_report, confusion_matrix
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if isinstance(folds, bool) or int(folds) < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    y_all = _probe_labels(emb, labels)
    notes: list[str] = []
    unlabelled = [i for i, v in enumerate(y_all) if v is None]
    if unlabelled:
        notes.append(f"{len(unlabelled)} image(s) without a label left out")
    counts = pd.Series([v for v in y_all if v is not None]).value_counts()
    singles = sorted(counts[counts < 2].index)
    if singles:
        notes.append("class(es) with a single image left out (cannot be both trained and tested): "
                     + ", ".join(singles))
    classes = sorted(counts[counts >= 2].index)
    if len(classes) < 2:
        found = ", ".join(f"{c} ({n})" for c, n in counts.items()) or "none"
        raise ValueError(
            f"a linear probe needs at least two classes with two or more images each; found {found}. "
            "Label the images (class subfolders or a metadata column) or pass labels=..."
        )
    used = np.array([i for i, v in enumerate(y_all) if v in set(classes)])
    x = _matrix(emb.vectors[used])
    y = y_all[used].astype(str)
    smallest = int(counts[classes].min())
    n_folds = min(int(folds), smallest)
    if n_folds < int(folds):
        notes.append(f"the smallest class has {smallest} images: {n_folds}-fold instead of {folds}-fold "
                     "cross-validation")
    groups = np.array([emb.hashes[i] for i in used]) if emb.hashes and emb.duplicates else None
    if groups is not None:
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = list(splitter.split(x, y, groups))
    else:
        splits = list(StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(x, y))
    predicted = np.empty(len(y), dtype=object)
    fold_acc = []
    for train, test in splits:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))
        clf.fit(x[train], y[train])
        predicted[test] = clf.predict(x[test])
        fold_acc.append(float(np.mean(predicted[test] == y[test])))
    pred = predicted.astype(str)
    report = pd.DataFrame(classification_report(y, pred, labels=classes, output_dict=True, zero_division=0)).T
    predictions = np.full(len(emb), None, dtype=object)
    predictions[used] = pred
    return ProbeResult(
        accuracy=float(np.mean(fold_acc)), accuracy_std=float(np.std(fold_acc)), fold_accuracies=fold_acc,
        balanced_accuracy=float(balanced_accuracy_score(y, pred)), classes=classes,
        confusion=confusion_matrix(y, pred, labels=classes), report=report, predictions=predictions,
        misclassified=[int(i) for i, p, t in zip(used, pred, y) if p != t], labels=y_all, folds=n_folds,
        chance=float(counts[classes].max() / counts[classes].sum()), notes=notes, model_label=emb.model_label,
        pretrained=emb.pretrained, layer=emb.layer, pooling=emb.pooling, paths=list(emb.paths),
    )


# --------------------------------------------------------------------------- fine-tuning


@dataclass
class FinetuneStep:
    """One optimiser step of :func:`finetune`.

    ``val_accuracy`` is set on the last step of each epoch (after evaluating on the
    held-out images), None otherwise; ``model`` is set on the very last step.
    """

    epoch: int
    step: int
    train_loss: float
    val_accuracy: float | None = None
    model: FinetunedClassifier | None = None


class FinetunedClassifier(nn.Module):
    """A torchvision classifier for artlab images ([0, 1], normalised inside) with class names and a label."""

    def __init__(self, net: nn.Module, classes: Sequence[str], *, label: str, pretrained: bool,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self.net = net
        self.classes = list(classes)
        self.label = label
        self.pretrained = pretrained
        self.register_buffer("mean", torch.tensor(tuple(mean)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(tuple(std)).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        """Logits N×K of a batch of artlab images."""
        return self.net((images.to(self.mean.device) - self.mean) / self.std)

    @torch.no_grad()
    def predict(self, images: Tensor) -> list[str]:
        """The predicted class name of each image (evaluation mode)."""
        was = self.training
        self.eval()
        try:
            return [self.classes[i] for i in self(ensure_image_batch(images)).argmax(1).tolist()]
        finally:
            self.train(was)


class Finetune(Iterator[FinetuneStep]):
    """What :func:`finetune` returns: an iterator of :class:`FinetuneStep` that also exposes
    ``model`` (the network being trained, usable after a stop), ``classes``, ``label``,
    ``n_train``/``n_val`` and ``notes``."""

    def __init__(self, steps: Iterator[FinetuneStep], model: FinetunedClassifier, n_train: int, n_val: int,
                 notes: list[str]) -> None:
        self._steps = steps
        self.model = model
        self.classes = model.classes
        self.label = model.label
        self.n_train, self.n_val, self.notes = n_train, n_val, notes

    def __iter__(self) -> Finetune:
        return self

    def __next__(self) -> FinetuneStep:
        return next(self._steps)

    def close(self) -> None:
        """Stop training (the model keeps what it learned so far)."""
        self._steps.close()  # type: ignore[attr-defined]


def _split(labels: Sequence[str], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified train/validation indices: ``val_fraction`` of each class (at least one) held out."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in sorted(set(labels)):
        members = [i for i, v in enumerate(labels) if v == cls]
        rng.shuffle(members)
        n_val = max(1, round(val_fraction * len(members))) if val_fraction > 0 else 0
        val += members[:n_val]
        train += members[n_val:]
    return sorted(train), sorted(val)


def _mobilenet(classes: int, weights: Any, seed: int) -> tuple[nn.Module, str, bool]:
    """MobileNetV2 with a ``classes``-way head; (net, label, pretrained)."""
    import torchvision

    from artlab import weights as _weights
    from artlab.models import _load_state_dict_file

    with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG's state
        torch.manual_seed(seed)
        net = torchvision.models.mobilenet_v2(weights=None)
        head = nn.Linear(net.classifier[1].in_features, classes)
    label, pretrained = f"mobilenet_v2 · random init (seed {seed})", False
    if isinstance(weights, (str, os.PathLike)) and str(weights).lower() not in ("none", "random"):
        choice = str(weights)
        if choice.lower() in ("auto", "imagenet"):
            entry = torchvision.models.MobileNet_V2_Weights.DEFAULT
            filename = entry.url.rsplit("/", 1)[-1]
            known = _weights.KnownFile(f"mobilenet_v2/{entry.name}", filename, entry.url,
                                       sha256_prefix=_weights.hash_prefix_from_name(filename),
                                       used_by="artlab.embed.finetune")
            path = _weights.cached_path(known)
            if path is None and choice.lower() == "imagenet":
                raise _weights.WeightsNotFoundError(_weights.missing_message(known, "finetune never downloads"))
            if path is None:
                warnings.warn(
                    f"mobilenet_v2: ImageNet weights ({filename}) are not in {_weights.cache_dir()}; training from a "
                    f"random init (seed {seed}), which needs far more images and epochs. The label says so.",
                    stacklevel=3,
                )
            else:
                net.load_state_dict(_load_state_dict_file(path))
                label, pretrained = f"mobilenet_v2 · ImageNet ({entry.name}), fine-tuned", True
        else:
            path = Path(choice).expanduser()
            net.load_state_dict(_load_state_dict_file(path))
            label, pretrained = f"mobilenet_v2 · weights from {path.name}, fine-tuned", True
    elif weights is not None and str(weights).lower() not in ("none", "random"):
        raise TypeError(f"weights must be 'auto', 'imagenet', None or a path, got {type(weights).__name__}")
    net.classifier[1] = head  # torchvision's 1000-way ImageNet head replaced by ours
    return net, label, pretrained


def _lite0(classes: int, weights: Any, seed: int) -> tuple[nn.Module, str, bool]:
    """EfficientNet-Lite0 (ImageNet weights bundled with artlab) with a ``classes``-way head."""
    from artlab.models import backbone

    text = None if weights is None else str(weights)
    choice = None if text is None or text.lower() in ("none", "random") else (
        "imagenet" if text.lower() in ("auto", "imagenet") else weights)
    built = backbone("efficientnet_lite0", weights=choice, seed=seed, download=False)
    net = built.net.requires_grad_(True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net._fc = nn.Linear(net._fc.in_features, classes)  # the 1000-way ImageNet head replaced by ours
    label = f"{built.label}, fine-tuned" if built.pretrained else built.label
    return net, label, built.pretrained


#: finetune's architectures: builder and input normalisation
_ARCHS = {
    "efficientnet_lite0": (_lite0, LITE_MEAN, LITE_STD),
    "mobilenet_v2": (_mobilenet, IMAGENET_MEAN, IMAGENET_STD),
}


def finetune(
    folder_or_collection: str | os.PathLike | Collection,
    *,
    arch: str = "efficientnet_lite0",
    epochs: int = 3,
    val_fraction: float = 0.2,
    seed: int = 0,
    weights: str | os.PathLike | None = "auto",
    batch_size: int = 16,
    size: int = 160,
    lr: float = 1e-3,
    device: str | torch.device | None = None,
) -> Finetune:
    """Train a classifier of the collection's labels end to end; iterate to run it.

    ``arch``: EfficientNet-Lite0 (default: its ImageNet weights come with artlab, so
    every machine starts from a trained network) or torchvision's MobileNetV2, with the
    classifier replaced by a K-way linear layer; every layer is trained with Adam at
    ``lr``. ``weights="auto"`` starts from ImageNet weights (MobileNetV2: if they are in
    the torch hub cache, otherwise from a seeded random init with a warning; ``label``
    says which); ``"imagenet"`` requires them; None forces random. A stratified
    ``val_fraction`` of each class is held out and evaluated after every epoch. Images are loaded once at size×size (centre crop) and
    flipped left-right at random (seeded) while training. Yields one
    :class:`FinetuneStep` per batch; the returned :class:`Finetune` exposes ``model``.
    """
    if arch not in _ARCHS:
        raise ValueError(f"unknown arch {arch!r}; finetune supports {', '.join(map(repr, _ARCHS))}")
    if isinstance(epochs, bool) or int(epochs) < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if not 0 <= float(val_fraction) < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    size = _check_size(size)
    collection = _as_collection(folder_or_collection)
    notes = list(collection.notes)
    images, labels, skipped = [], [], []
    for item in collection.items:
        if item.label is None:
            skipped.append((str(item.path), "no label"))
            continue
        try:  # kept as uint8: a quarter of the memory of float32
            images.append((load_images([item.path], size)[0] * 255).round().to(torch.uint8))
        except ImageLoadError as exc:
            skipped.append((str(item.path), exc.reason))
            continue
        labels.append(str(item.label))
    if skipped:
        notes.append(_skipped_note(skipped))
    counts = pd.Series(labels, dtype=object).value_counts()
    if len(counts) < 2 or (val_fraction > 0 and counts.min() < 2):
        raise ValueError(
            "finetune needs at least two labelled classes with two or more images each (one goes to validation); "
            f"found {dict(counts) or 'no labelled images'}"
        )
    classes = sorted(counts.index)
    target = torch.tensor([classes.index(v) for v in labels])
    train_idx, val_idx = _split(labels, float(val_fraction), seed)
    build, mean, std = _ARCHS[arch]
    net, label, pretrained = build(len(classes), weights, seed)
    model = FinetunedClassifier(net, classes, label=label, pretrained=pretrained, mean=mean, std=std)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    model.to(dev)
    data = torch.stack(images)

    def batch_of(indices: Sequence[int]) -> Tensor:
        return data[list(indices)].to(dev, torch.float32) / 255

    def steps() -> Iterator[FinetuneStep]:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        g = torch.Generator().manual_seed(seed)
        step = 0
        for epoch in range(int(epochs)):
            model.train()
            order = [train_idx[i] for i in torch.randperm(len(train_idx), generator=g).tolist()]
            chunks = [order[s : s + int(batch_size)] for s in range(0, len(order), int(batch_size))]
            if len(chunks) > 1 and len(chunks[-1]) == 1:  # batch norm cannot train on one image
                chunks[-2] += chunks.pop()
            for n, chunk in enumerate(chunks):
                x = batch_of(chunk)
                flip = torch.rand(len(chunk), generator=g) < 0.5
                x = torch.where(flip.to(dev).view(-1, 1, 1, 1), x.flip(-1), x)
                # Dropout draws from torch's global generator: seed it per step inside fork_rng,
                # so runs are reproducible and the caller's RNG state is left as it was.
                with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                    torch.manual_seed(seed * 1_000_003 + step)
                    loss = nn.functional.cross_entropy(model(x), target[chunk].to(dev))
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                step += 1
                last = n == len(chunks) - 1
                accuracy = _val_accuracy(model, batch_of, val_idx, target, int(batch_size)) if last else None
                done = last and epoch == int(epochs) - 1
                yield FinetuneStep(epoch, step, float(loss), accuracy, model if done else None)

    return Finetune(steps(), model, len(train_idx), len(val_idx), notes)


@torch.no_grad()
def _val_accuracy(model: FinetunedClassifier, batch_of: Callable[[Sequence[int]], Tensor], val_idx: list[int],
                  target: Tensor, batch_size: int) -> float | None:
    if not val_idx:
        return None
    model.eval()
    correct = 0
    for s in range(0, len(val_idx), batch_size):
        chunk = val_idx[s : s + batch_size]
        correct += int((model(batch_of(chunk)).argmax(1).cpu() == target[chunk]).sum())
    model.train()
    return correct / len(val_idx)
