"""The on-disk store behind :func:`artlab.embed.embed`: resumable, checksummed shards of vectors.

The cache lives in ``<cache>/embeddings`` (``$ARTLAB_CACHE`` or ``~/.cache/artlab``):
one directory per configuration (model, weights, layer, pooling, size, ...) holding
``config.json`` and append-only shards (``shards/<time>-<sha256 of the file>.npy``: a
structured array of (content hash, vector) rows), next to ``file-hashes.json`` (see
:mod:`artlab.embed.file_hashes`). Shards are written to a temporary name and renamed
into place (:func:`~artlab.embed.locks.atomic_write_bytes`), so a shard is either
complete or absent; when a directory has more than :data:`SHARDS_BEFORE_MERGE` shards
they are merged into one, so loading thousands of cached vectors reads a few files.
What the store promises, and checks:

* **Shards are checked on every read.** A shard's name carries the sha256 of its bytes.
  A shard whose bytes do not match it, that numpy cannot read or whose rows are not
  (hash, float32 vector) is moved to ``quarantine/``, reported once in
  ``Embeddings.notes``, and its images are computed again. Vectors with NaN or ±inf are
  never written (the image is skipped, saying so) and are rejected when read.
* **Concurrent runs share the work.** Each batch is chosen, computed and written while
  holding a lock on the configuration's directory (:class:`~artlab.embed.locks.FileLock`),
  after taking in the shards other runs wrote meanwhile: two runs on one folder compute
  each image once between them. The operating system drops the lock of a killed process.
* :func:`verify_cache` checks every shard and index entry and reports counts;
  ``repair=True`` (``artlab cache repair``) drops what is bad.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from artlab.data import cache_root
from artlab.embed.file_hashes import entry_problem, index_key, sha256_file
from artlab.embed.locks import FileLock, atomic_write_bytes

__all__ = [
    "CACHE_VERSION",
    "SHARDS_BEFORE_MERGE",
    "CacheReport",
    "ShardStore",
    "default_cache_dir",
    "verify_cache",
]

#: A cache directory with more shards than this is merged into one shard after a run.
SHARDS_BEFORE_MERGE = 16
#: Version of the cache layout and of every computation that feeds it (2: checksummed shard names).
CACHE_VERSION = 2


def default_cache_dir() -> Path:
    """Where :func:`artlab.embed.embed` keeps vectors by default: ``<artlab cache>/embeddings``."""
    return cache_root() / "embeddings"


def _config_dirname(config: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    pooling = str(config["pooling"]).replace("+", "")
    return f"{config['model']}-{config['layer']}-{pooling}-{config['size']}px-{digest}"


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


class ShardStore:
    """One configuration's vectors on disk: append-only, checksummed shards of (sha256, vector) rows.

    ``config`` is everything a vector depends on besides the image bytes (it names the
    directory under ``root`` and is written to its ``config.json``). ``problems`` collects
    what was set aside while reading, worded for ``Embeddings.notes``.
    """

    def __init__(self, root: Path, config: Mapping[str, Any]) -> None:
        self.dir = root / _config_dirname(config)
        self.shards = self.dir / "shards"
        self.quarantine = self.dir / "quarantine"
        self.shards.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "config.json"
        if not meta.is_file():
            text = json.dumps(dict(config), indent=2, sort_keys=True).encode()
            atomic_write_bytes(meta, lambda fh: fh.write(text))
        self.problems: list[str] = []
        self._seen: set[str] = set()  # shard names this store has read or written

    def locked(self) -> FileLock:
        """The lock every writer of this directory holds (``with store.locked(): ...``)."""
        return FileLock(self.dir / "lock")

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
        atomic_write_bytes(target, lambda fh: fh.write(data))
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
    signature and stat as :func:`artlab.embed.embed` checks them, and (unless
    ``rehash=False``) the sha256 of every file whose stat still matches, which is the one
    change the stat shortcut can miss (see :mod:`artlab.embed.file_hashes`). Without
    ``repair`` nothing is changed. With it, holding the same locks as ``embed``: damaged
    shards are deleted, shards with NaN/inf rows are rewritten without them,
    ``quarantine/`` folders and temporary files older than an hour are emptied, and bad or
    stale index entries are removed. Folders of other cache versions are only listed.
    Returns a :class:`CacheReport`.
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
        with FileLock(folder / "lock") if repair else contextlib.nullcontext():
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
                    atomic_write_bytes(target, lambda fh, data=data: fh.write(data))
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
    key = index_key(root, create=False)
    drop = []
    for path, entry in entries.items():
        try:
            st: os.stat_result | None = os.stat(path)
        except OSError:
            st = None
        problem = entry_problem(key, path, entry, st)
        if problem is None and rehash:
            try:
                if sha256_file(Path(path)) != entry[5]:
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
        with FileLock(root / "file-hashes.lock"):
            try:
                on_disk = json.loads(memo.read_text())
            except (OSError, ValueError):
                on_disk = {}
            if isinstance(on_disk, dict):  # entries rewritten by a run meanwhile are kept
                for path in drop:
                    if on_disk.get(path) == entries[path]:
                        del on_disk[path]
                text = json.dumps(on_disk).encode()
                atomic_write_bytes(memo, lambda fh: fh.write(text))
