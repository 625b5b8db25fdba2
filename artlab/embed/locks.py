"""Writing next to other processes: an exclusive file lock and atomic writes.

Two ``embed`` runs, a ``verify_cache`` and a notebook may all use one embedding cache at
once. Everything the cache writes goes through :func:`atomic_write_bytes` (a file is
either complete or absent, never half-written) and every read-modify-write of a shared
file holds a :class:`FileLock`.
"""

from __future__ import annotations

import errno
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:  # file locks: fcntl on Linux and macOS, msvcrt on Windows (see FileLock)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
try:
    import msvcrt
except ImportError:
    msvcrt = None  # type: ignore[assignment]

__all__ = ["FileLock", "atomic_write_bytes"]


def atomic_write_bytes(target: Path, write: Callable[[Any], None]) -> None:
    """Write through ``write(fh)`` into a temporary file next to ``target``, then rename it into place.

    ``os.replace`` is atomic: a reader (or a crash) sees the old file or the new one, never
    a mixture. The temporary name starts with a dot and ends in ``.tmp`` (what
    :func:`artlab.embed.verify_cache` recognises as a leftover of a killed writer).
    """
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


class FileLock:
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

    def __enter__(self) -> FileLock:
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
