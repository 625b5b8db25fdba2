"""Which bytes a file holds: the content hash of every image, remembered or read once.

:func:`artlab.embed.embed` keys every vector by the sha256 of the bytes it was made from.

* **Change detection.** ``file-hashes.json`` (a :class:`HashMemo`) spares re-reading
  unchanged files. A file is read and hashed again unless ``file-hashes.json`` holds an
  entry for its absolute path whose size, mtime_ns, ctime_ns and inode number all equal
  the file's current ones, that was recorded at least one second after the file's last
  change (its ctime), and whose HMAC-SHA256 signature (key in ``file-hashes.key``,
  private to the cache) is valid. On Linux and macOS the operating system sets ctime on
  every write, truncation, rename, chmod or ``os.utime``, and ordinary programs cannot
  set it back, so any rewrite of a file, also one that keeps its size and restores its
  mtime (``os.utime``, ``touch -r``, ``cp -p``, ``rsync -t``), is noticed. Not promised:
  on Windows ``st_ctime`` is the creation time, and file systems that do not keep ctime
  or inode numbers faithfully (some network and FUSE mounts) weaken the check the same
  way: there a rewrite with the same size and a restored mtime keeps the old vector. An
  entry that was edited, swapped with another or copied from elsewhere fails its
  signature and costs one re-read; it never gives one file another file's vector.
  ``embed(..., rehash=True)`` reads every file; :func:`artlab.embed.verify_cache` also
  re-reads every remembered file and reports any whose bytes changed unnoticed.
* **A vector is keyed by the bytes it was made from.** A file to compute is read once
  into memory (at most :data:`MAX_FILE_BYTES`, see :class:`ReadOnce`), hashed, and
  decoded from those same bytes. A file that changes between hashing and decoding gets
  the vector of what was decoded, under that content's hash: it cannot poison the entry
  of its earlier content, which its copies still use.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from artlab.embed.locks import FileLock, atomic_write_bytes
from artlab.images import DEFAULT_MAX_PIXELS, ImageLoadError, open_image, open_regular

__all__ = [
    "MAX_FILE_BYTES",
    "HashMemo",
    "ReadOnce",
    "entry_problem",
    "index_key",
    "open_image_bytes",
    "read_file_bytes",
    "sha256_file",
]

#: An entry of ``file-hashes.json`` is used only if it was recorded this long after the
#: file's last change (its ctime): a rewrite within the same timestamp tick as the hashing
#: could otherwise leave size, mtime, ctime and inode all as they were.
_SETTLED_NS = 1_000_000_000


def _stat_fields(st: os.stat_result) -> list[int]:
    """What the stat shortcut compares: size, mtime_ns, ctime_ns, inode."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def index_key(root: Path, *, create: bool) -> bytes | None:
    """The secret that signs ``file-hashes.json`` entries (``file-hashes.key``, 32 random bytes, mode 0600).

    None when it cannot be read (or does not exist and ``create`` is False): then no entry
    is trusted and every file is read.
    """
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


def entry_problem(key: bytes | None, path: str, entry: Any, st: os.stat_result | None) -> str | None:
    """Why a ``file-hashes.json`` entry cannot stand for the file as it is now; None when it can.

    The reason starts with "stale" (an entry of another version), "bad" (signature
    invalid), or names the change ("file gone", "file changed ...", "hashed within a
    second ..."): :func:`artlab.embed.verify_cache` counts the "bad" ones as damage.
    """
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
        handle = open_regular(os.fspath(path), str(path))
    except ImageLoadError as exc:
        raise OSError(exc.reason) from None
    with handle as fh:
        before = os.fstat(fh.fileno())
        while block := fh.read(chunk):
            digest.update(block)
        after = os.fstat(fh.fileno())
    return digest.hexdigest(), before if _stat_fields(before) == _stat_fields(after) else None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The sha256 (hex) of a regular file's bytes, read in chunks; OSError for anything else."""
    return _hash_file(path, chunk)[0]


class HashMemo:
    """``file-hashes.json``: the sha256 of each file by absolute path, so unchanged files are not re-read.

    An entry is [size, mtime_ns, ctime_ns, inode, recorded_ns, sha256, signature]. It stands
    for the file only when :func:`entry_problem` finds nothing: the same size, mtime_ns,
    ctime_ns and inode, recorded at least one second after the file's last change, and an
    HMAC-SHA256 signature (key ``file-hashes.key``) over the path and those values.
    Anything else means reading the file again. ``trust=False`` (``embed(rehash=True)``)
    reads every file and records what it finds. ``root=None``: no memo, every file is read.
    """

    def __init__(self, root: Path | None, *, trust: bool = True) -> None:
        self.file = root / "file-hashes.json" if root is not None else None
        self.key = index_key(root, create=True) if root is not None else None
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
        """The sha256 of ``path``: from the memo when its entry still stands, else read (and recorded)."""
        key = os.path.abspath(path)  # not resolve(): one realpath per file cost half the cache-hit time
        if self.trust and key in self.entries:
            entry = self.entries[key]
            if entry_problem(self.key, key, entry, os.stat(path)) is None:
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
            with FileLock(self.file.with_name("file-hashes.lock")):
                try:
                    on_disk = json.loads(self.file.read_text()) if self.file.is_file() else {}
                except (OSError, ValueError):
                    on_disk = {}
                kept = {p: e for p, e in on_disk.items() if isinstance(e, list) and len(e) == 7} \
                    if isinstance(on_disk, dict) else {}
                text = json.dumps({**kept, **self.changed}).encode()
                atomic_write_bytes(self.file, lambda fh: fh.write(text))
        except OSError:  # a read-only cache: the memo is only a speed-up
            pass
        self.changed = {}


# --------------------------------------------------------------------------- reading a file once


#: Largest image file :func:`artlab.embed.embed` reads into memory to hash and decode: 12 bytes per
#: pixel at :data:`artlab.images.DEFAULT_MAX_PIXELS` (about 2 GiB), what decoding the largest image
#: ``load_image`` accepts takes anyway.
MAX_FILE_BYTES = 12 * DEFAULT_MAX_PIXELS


def read_file_bytes(path: Path) -> bytes:
    """All bytes of an image file, read once; ImageLoadError (with the reason) if that is impossible."""
    name = str(path)
    try:
        with open_regular(os.fspath(path), name) as fh:  # never blocks on a FIFO swapped in since hashing
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise ImageLoadError(name, f"larger than {MAX_FILE_BYTES:,} bytes", "embed reads an image "
                                     "file into memory once; this one is too large for that")
            # ask for what the file holds (+1 to see growth): read(n) allocates n bytes up front, and
            # 2 GB of address space per image fails every image under a ulimit -v or strict overcommit
            data = fh.read(min(size, MAX_FILE_BYTES) + 1)
    except FileNotFoundError:
        raise ImageLoadError(name, "no such file", "it was removed or renamed while embedding") from None
    except PermissionError:
        raise ImageLoadError(name, "permission denied", "check the file's permissions") from None
    except IsADirectoryError:
        raise ImageLoadError(name, "is a directory, not a file", "") from None
    except OSError as exc:
        raise ImageLoadError(name, f"unreadable: {exc.strerror or exc}", "") from None
    if len(data) > MAX_FILE_BYTES:
        raise ImageLoadError(name, f"larger than {MAX_FILE_BYTES:,} bytes", "")
    return data


def open_image_bytes(data: bytes, path: Path) -> Image.Image:
    """A lazily decoded PIL image of ``data`` (:func:`artlab.images.open_image`: errors worded as
    :func:`artlab.images.load_image`'s, which checks the pixel limit before decoding).

    The image keeps no file name: PIL would map the *file* into memory for raw formats, and
    the point is to decode exactly the bytes that were hashed.
    """
    if not data:
        raise ImageLoadError(str(path), "empty file (0 bytes)",
                             "the file was probably only partly downloaded or copied; re-create it")
    return open_image(io.BytesIO(data), str(path))


class ReadOnce:
    """Sources for the batching loop that read each file once: ``digests[j]`` is the sha256 of
    the bytes read for ``paths[j]`` (None if they could not be read) and those same bytes are
    what gets decoded, so a vector always belongs to the bytes it was made from."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        self.digests: list[str | None] = [None] * len(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, j: int) -> Image.Image:
        data = read_file_bytes(self.paths[j])
        self.digests[j] = hashlib.sha256(data).hexdigest()
        return open_image_bytes(data, self.paths[j])
