"""One vector per image of a collection, computed once and cached by content: :func:`embed` and :class:`Embeddings`.

:func:`embed` pools one layer of a CNN into a vector per image (``pooling`` ``"mean"``,
``"mean+std"`` or ``"gram"``, see :func:`artlab.embed.pooling.pooler`) and keeps them in
an **on-disk cache keyed by content** (:mod:`artlab.embed.cache`): the sha256 of each
file's bytes (:mod:`artlab.embed.file_hashes`) plus the model, its weights, the layer,
the pooling and the preprocessing (:func:`vector_config`). Renamed, moved or duplicated
files are never recomputed; images added since the last run are the only ones computed;
a run killed half-way loses nothing it wrote (every batch is stored atomically before
progress is reported). The result is an :class:`Embeddings`.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import math
import os
import re
import stat
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor, nn

from artlab.activations.pooled import batched_forward, check_size
from artlab.data import Collection, CollectionError, Item
from artlab.embed.cache import CACHE_VERSION, ShardStore, default_cache_dir
from artlab.embed.file_hashes import HashMemo, ReadOnce
from artlab.embed.locks import atomic_write_bytes
from artlab.embed.pooling import GRAM_DIM, GRAM_SEED, check_pooling, default_layer, pooler
from artlab.images import ImageLoadError
from artlab.models import Backbone, model_device
from artlab.runs import Progress, progress_bar

__all__ = [
    "CROP_POLICY",
    "Embeddings",
    "as_collection",
    "check_same_model",
    "embed",
    "embed_images",
    "escape_undecodable",
    "is_missing",
    "skipped_note",
    "vector_config",
    "weights_fingerprint",
    "write_csv",
]

CROP_POLICY = "shorter side resized to size (antialiased bilinear), centre size×size crop"

Source = Union[Collection, str, "os.PathLike[str]", Sequence[Any]]


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
        return [None if is_missing(v) else str(v) for v in self.meta["label"]]

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

        The file is UTF-8; a file or folder name that is not valid UTF-8 is written escaped
        (see :func:`write_csv`).
        """
        frame = self.to_frame(vectors=vectors, extra=extra)
        if columns is not None:
            unknown = [c for c in columns if c not in self.meta.columns]
            if unknown:
                raise ValueError(f"unknown columns {unknown}; available: {', '.join(map(str, self.meta.columns))}")
            frame = frame[list(columns) + [c for c in frame.columns if c not in self.meta.columns]]
        return write_csv(frame, path)

    def __repr__(self) -> str:
        dim = self.vectors.shape[1] if self.vectors.ndim == 2 else 0
        return (f"Embeddings({len(self)} images × {dim}, {self.model_label}, {self.layer}, {self.pooling}, "
                f"{self.size}px, {len(self.skipped)} skipped)")


def is_missing(value: Any) -> bool:
    """Whether a metadata value means "no value": None, NaN or the empty string."""
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


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``frame`` (no index) as a UTF-8 CSV, atomically (a crash never leaves half a file); returns the path.

    A file or folder name that is not valid UTF-8 (possible on Linux and macOS; Python
    keeps its undecodable bytes as surrogate escapes, ``b"caf\\xe9.png"`` ->
    ``"caf\\udce9.png"``) cannot be written as UTF-8 text as it is: such a value is
    written with each undecodable byte as ``\\xNN`` and, in that value only, each
    backslash doubled (``caf\\xe9.png``). The value stays readable, and the exact name
    comes back with ``os.fsdecode(codecs.escape_decode(value.encode())[0])``. Every other
    value is written unchanged.
    """
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    text = escape_undecodable(frame).to_csv(index=False).encode()
    atomic_write_bytes(target, lambda fh: fh.write(text))
    return target


# --------------------------------------------------------------------------- what a vector depends on


_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_FULL_HASH_LIMIT = 1 << 20  # tensors up to this many elements are hashed whole
_SAMPLES = 4096


def weights_fingerprint(model: nn.Module) -> str:
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


def vector_config(model: Backbone, layer: str, pooling: str, size: int, gram_dim: int = GRAM_DIM) -> dict[str, Any]:
    """Everything a cached vector depends on besides the image bytes: the key of its :class:`ShardStore`."""
    config: dict[str, Any] = {
        "version": CACHE_VERSION,
        "model": model.name,
        "label": model.label,
        "weights_source": model.weights_source,
        "weights": weights_fingerprint(model),
        "dtype": str(model.mean.dtype).replace("torch.", ""),
        "layer": layer,
        "pooling": pooling,
        "size": size,
        "crop": CROP_POLICY,
    }
    if pooling == "gram":
        config.update(gram_dim=gram_dim, gram_seed=GRAM_SEED, gram_normalize="hw")
    return config


# --------------------------------------------------------------------------- embed


def as_collection(images: Source) -> Collection:
    """Collection, folder or list of image paths -> a Collection (missing files are skipped, not fatal)."""
    if isinstance(images, Collection):
        if not len(images):
            raise ValueError("the collection is empty; nothing to embed")
        return images
    if isinstance(images, (str, os.PathLike)):
        path = Path(images).expanduser()
        if path.is_file():
            return as_collection([path])
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


def skipped_note(skipped: Sequence[tuple[str, str]]) -> str:
    """The note that lists skipped files: "skipped N unusable file(s): path (why); …" (at most ten named)."""
    listed = "; ".join(f"{p} ({why})" for p, why in skipped[:10])
    return f"skipped {len(skipped)} unusable file(s): {listed}" + (" …" if len(skipped) > 10 else "")


def _positional_arity(fn: Callable[..., Any]) -> int | None:
    """How many positional arguments ``fn`` takes (None: any number, or its signature is unknown)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _progress_callback(on_progress: Callable[..., Any] | None) -> Progress | None:
    """``on_progress`` as a :data:`artlab.runs.Progress`; the old ``on_progress(done, total)`` still works, warning."""
    if on_progress is None or _positional_arity(on_progress) != 2:
        return on_progress
    warnings.warn(
        "embed(on_progress=f) with f(done, total) is deprecated: artlab calls on_progress(stage, done, total) "
        "everywhere (artlab.runs.Progress); the two-argument form is accepted for one more release",
        DeprecationWarning, stacklevel=3,
    )
    return lambda _stage, done, total: on_progress(done, total)


def embed(
    images: Source,
    model: Backbone,
    layer: str | None = None,
    *,
    pooling: str = "mean",
    size: int = 224,
    batch_size: int = 16,
    cache_dir: str | os.PathLike | None | bool = None,
    progress: bool | None = None,
    on_progress: Progress | None = None,
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
    :func:`artlab.embed.pooling.pooler`. Every image is resized (shorter side to ``size``)
    and centre-cropped to size×size, then run in batches of ``batch_size`` through the
    shared loop of :mod:`artlab.activations`, each forward pass stopping at ``layer``.

    Cache (``cache_dir``, default :func:`default_cache_dir`; ``False`` for none): keyed
    by each file's sha256 and the model, its weights, layer, pooling, size and crop.
    Duplicate files are computed once; files already cached are not loaded at all; each
    batch is stored before ``on_progress("embedding", done, total)`` is called (``done``
    counts distinct images ready, cached ones included), so raising from the callback, an
    exception or a killed process loses nothing already computed, and the next call
    computes only what is missing and returns identical vectors. A vector is stored under
    the hash of the exact bytes it was decoded from; shards are checksummed and a damaged
    one is set aside (reported once in ``notes``) and recomputed; a vector with NaN or
    ±inf is never cached (that image is skipped, saying so). Unchanged files are
    recognised without re-reading them by the stat rule of :mod:`artlab.embed.file_hashes`
    (size, mtime, ctime and inode); ``rehash=True`` reads and hashes every file instead.
    Two runs on the same cache share the work: each batch is computed under a lock, after
    taking in what the other run stored meanwhile. A progress bar shows in notebooks and
    terminals (``progress=False``: none).

    Unreadable files are skipped and listed in ``skipped``; metadata problems of the
    collection are carried into ``notes``. An empty folder, or one where no file can be
    used, raises ``ValueError`` saying what was wrong.
    """
    if not isinstance(model, Backbone):
        raise TypeError(f"model must be an artlab Backbone (artlab.models.backbone(...)), got {type(model).__name__}")
    report_progress = _progress_callback(on_progress)
    pooling = check_pooling(pooling)
    layer = model.resolve_layer(layer if layer is not None else default_layer(model, pooling))
    size = check_size(size)
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if isinstance(gram_dim, bool) or int(gram_dim) < 1:
        raise ValueError(f"gram_dim must be a positive int, got {gram_dim}")
    collection = as_collection(images)
    root = None if cache_dir is False else Path(cache_dir if cache_dir not in (None, True) else default_cache_dir())
    root = root.expanduser() if root is not None else None
    config = vector_config(model, layer, pooling, size, int(gram_dim))
    store = ShardStore(root, config) if root is not None else None

    hashes, skipped = _content_hashes(collection, HashMemo(root, trust=not rehash))
    first: dict[str, int] = {}  # distinct images: content hash -> first row with it
    for i, digest in hashes.items():
        first.setdefault(digest, i)
    vectors = store.load(set(first)) if store is not None else {}
    n_cached = len(vectors)
    todo = [h for h in first if h not in vectors]
    bar = progress_bar(len(first), f"embedding ({model.name} {layer} {pooling})", enabled=progress, unit="img",
                       initial=n_cached)

    def report(done: int) -> None:
        bar.n = done
        bar.refresh()
        if report_progress is not None:
            report_progress("embedding", done, len(first))

    try:
        failed, computed = _compute_missing(
            model, collection, hashes, todo, layer, vectors, store,
            size=size, batch_size=int(batch_size), device=model_device(model, device),
            pool=pooler(pooling, gram_dim=int(gram_dim)), report=report,
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


def _content_hashes(collection: Collection, memo: HashMemo) -> tuple[dict[int, str], list[tuple[str, str]]]:
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
    vectors: dict[str, np.ndarray], store: ShardStore | None, *, size: int, batch_size: int,
    device: torch.device, pool: Callable[[Tensor], Tensor], report: Callable[[int], None],
) -> tuple[list[tuple[str, str]], set[str]]:
    """Vectors of the content hashes ``todo`` into ``vectors``; ((key, reason) of the failures, hashes computed).

    Each file is read once, and its vector is made from and stored under *those* bytes
    (:class:`~artlab.embed.file_hashes.ReadOnce`): a row whose file no longer has the hash
    it had in ``hashes`` (changed since) gets its new hash there, and the old hash is tried
    on its next copy, if any. A row whose file cannot be read any more fails alone (key
    ``"unreadable:<row>"``); a failure to decode, or a vector with NaN/inf (never cached),
    fails every row with those bytes. With a store, each batch is chosen and computed
    holding the store's lock, after taking in the shards other processes wrote meanwhile,
    so concurrent runs share the work; it is written *before* ``report`` is called, so a
    caller that stops here (or a killed process) keeps every batch that was reported.
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
            reader = ReadOnce([collection.items[row].path for _, row in jobs])
            trouble: list[tuple[str, str]] = []
            out: dict[int, np.ndarray] = {}
            for _, chunk, pooled in batched_forward(
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
    config: dict[str, Any], n_cached: int, n_computed: int, store: ShardStore | None,
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
        notes.append(skipped_note(skipped))
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


# --------------------------------------------------------------------------- images outside the collection


def embed_images(emb: Embeddings, model: Backbone, sources: Sequence[Any], device: Any = None) -> np.ndarray:
    """Vectors for in-memory or outside images, made exactly as ``emb``'s were (same loop, no cache).

    ``model`` must be the one ``emb`` was made with (:func:`check_same_model`); an image
    that cannot be loaded raises :class:`~artlab.images.ImageLoadError`.
    """
    check_same_model(emb, model)
    failed: list[tuple[str, str]] = []
    pool = pooler(emb.pooling, gram_dim=int(emb.config.get("gram_dim", GRAM_DIM)))
    rows = []
    for _, _, pooled in batched_forward(
        model, list(sources), [f"query[{i}]" for i in range(len(sources))], range(len(sources)), [emb.layer],
        size=emb.size, batch_size=16, device=model_device(model, device), skipped=failed, pool=pool,
    ):
        if pooled:
            rows.append(pooled[emb.layer].numpy())
    if failed:
        raise ImageLoadError(None, failed[0][1], source=failed[0][0])
    return np.concatenate(rows).astype(np.float32, copy=False)


def check_same_model(emb: Embeddings, model: Backbone | None) -> Backbone:
    """``model`` if it is the one that made ``emb`` (label and weights); ValueError saying what to pass otherwise."""
    if model is None:
        raise ValueError(
            f"this query is not one of the embedded images, so it has to be embedded first: pass model= "
            f"(the model the embeddings were made with: {emb.model_label})"
        )
    if model.label != emb.model_label or (
        "weights" in emb.config and weights_fingerprint(model) != emb.config["weights"]
    ):
        raise ValueError(
            f"the embeddings were made with {emb.model_label}, but model is {model.label} "
            f"(or has other weights); pass the same model so the query vector is comparable"
        )
    return model
