"""Builders of hostile inputs: images and network pickles that claim more than they hold.

Used by tests/test_hostile_inputs.py (the corpus, run under a memory limit) and by the
single-hole tests in test_images.py, test_gram.py, test_transfer.py and
test_stylegan_loading.py. Everything is written to a folder the caller gives; nothing
here allocates more than a few MB, however large the image or file it describes (PNGs
are streamed row by row, the 10 GB pickle is a sparse file).
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import stylegan_pickles as sp

CAN_MKFIFO = hasattr(os, "mkfifo")


# ------------------------------------------------------------------------------------ guards


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


@contextlib.contextmanager
def address_space_limit(extra: int) -> Iterator[int]:
    """While inside, this process may map at most ``extra`` more bytes of address space (soft RLIMIT_AS).

    For single hostile-input tests run in the test process: code that tries to allocate
    what a file claims fails fast with MemoryError instead of using the shared machine's
    memory. Only the soft limit is lowered, so it is restored on the way out; skipped
    where RLIMIT_AS or /proc/self/status is missing.
    """
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = _vm_size() + extra
    except (ImportError, OSError, AttributeError):
        pytest.skip("needs RLIMIT_AS and /proc/self/status (Linux)")
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def without_blocking(fn: Callable[[], object], fifo: Path | None = None, timeout: float = 20.0) -> object:
    """``fn()`` in a thread; fail the test if it is still running after ``timeout`` s (it opened a FIFO).

    Returns ``fn()``'s result or the exception it raised (as a value). A blocked open of
    ``fifo`` is released by opening the FIFO for writing, so the thread can end.
    """
    box: dict[str, object] = {}

    def call() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["result"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        if fifo is not None:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"still running after {timeout} s: it opened the FIFO {fifo} and waited for a writer")
    return box["result"]


# ------------------------------------------------------------------------------------ images


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def solid_png(path: Path, width: int, height: int, rgb: tuple[int, int, int] = (40, 90, 200)) -> Path:
    """A width×height RGB PNG of one colour, written row by row (a 12000² one is ~0.4 MB, made in ~1 s)."""
    row = b"\x00" + bytes(rgb) * width  # filter type 0, then the pixels
    packer = zlib.compressobj(9)
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        pending = bytearray()
        for _ in range(height):
            pending += packer.compress(row)
            if len(pending) > 1 << 20:
                fh.write(_chunk(b"IDAT", bytes(pending)))
                pending.clear()
        pending += packer.flush()
        fh.write(_chunk(b"IDAT", bytes(pending)) + _chunk(b"IEND", b""))
    return path


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A ~70-byte PNG whose header claims width×height pixels (its data stops at once)."""
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + _chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _chunk(b"IEND", b""))
    return path


def noise_image(path: Path, height: int = 40, width: int = 56, seed: int = 0) -> Path:
    """A small random RGB image (PNG or JPEG by the suffix): a good file for a collection."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)).save(path)
    return path


def truncated_jpeg(path: Path) -> Path:
    """A JPEG cut off in the middle of its pixel data."""
    buffer = io.BytesIO()
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, size=(96, 128, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def fifo(path: Path) -> Path:
    """A named pipe: opening it for reading blocks until someone writes."""
    os.mkfifo(path)
    return path


#: name -> (builder, what must happen): "embedded" (handled, its vector computed) or a
#: regex the skip/refusal reason must match.
BAD_IMAGES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "strip_1x100000.png": (lambda p: solid_png(p, 100_000, 1, (200, 20, 20)), "embedded"),
    "strip_100000x1.png": (lambda p: solid_png(p, 1, 100_000, (20, 200, 20)), "embedded"),
    "solid_12000x12000.png": (lambda p: solid_png(p, 12_000, 12_000), "embedded"),
    "truncated.jpg": (truncated_jpeg, "truncated or corrupt"),
    "claims_100000x100000.png": (lambda p: png_claiming(p, 100_000, 100_000),
                                 "exceeds the limit|decompression bomb|unreadable"),
    "empty.jpg": (lambda p: (p.write_bytes(b""), p)[1], "empty"),
    "not_an_image.jpg": (lambda p: (p.write_bytes(b"hello, I am text\n" * 10), p)[1], "not a recognised image"),
}
if CAN_MKFIFO:
    BAD_IMAGES["pipe.jpg"] = (fifo, "not a regular file")


def image_folder(root: Path, n_good: int = 3) -> tuple[list[Path], dict[str, Path]]:
    """``root`` filled with ``n_good`` good images and every entry of :data:`BAD_IMAGES`."""
    root.mkdir(parents=True, exist_ok=True)
    good = [noise_image(root / f"good_{i}.{'png' if i % 2 else 'jpg'}", seed=i) for i in range(n_good)]
    bad = {name: build(root / name) for name, (build, _) in BAD_IMAGES.items()}
    return good, bad


# ------------------------------------------------------------------------------------ pickles


def zero_stride_pickle(path: Path, elements: int = 2**28) -> Path:
    """A ~600-byte Generator pickle whose one buffer is a view repeating one float ``elements`` times.

    2**28 float32 = 1 GiB: under the 4 GiB ``max_bytes`` cap, so only a bound by the file's
    own size refuses it before it is allocated.
    """
    tensor = sp.RawTensor(sp.RawStorage(sp.storage_blob()), size=(elements,), stride=(0,))
    path.write_bytes(sp.with_buffer(tensor))
    return path


def zip_blob_pickle(path: Path) -> Path:
    """A Generator pickle whose storage blob is a torch.save zip archive instead of a legacy stream."""
    buffer = io.BytesIO()
    torch.save(torch.arange(4, dtype=torch.float32), buffer)
    path.write_bytes(sp.with_buffer(sp.RawTensor(sp.RawStorage(buffer.getvalue()))))
    return path


def sparse_pickle(path: Path, size: int = 10 * 2**30) -> Path:
    """A valid tiny network pickle padded (sparsely: no disk used) to ``size`` bytes."""
    G = _tiny()
    path.write_bytes(sp.network_pickle_bytes({"G_ema": sp.generator_tree(G.state_dict(), G.init_kwargs, G=G)}))
    with open(path, "r+b") as fh:
        fh.truncate(size)
    return path


def oversized_config_pickle(path: Path) -> Path:
    """The tiny generator's weights under a configuration declaring 16384-channel layers (~10 GB if built)."""
    G = _tiny()
    kwargs = {**G.init_kwargs, "synthesis_kwargs": {**G.init_kwargs["synthesis_kwargs"],
                                                     "channel_base": 2**20, "channel_max": 2**14}}
    path.write_bytes(sp.network_pickle_bytes({"G_ema": sp.generator_tree(G.state_dict(), kwargs, G=G)}))
    return path


def huge_length_pickle(path: Path) -> Path:
    """A 40-byte pickle whose BINBYTES8 length field claims 1 TiB."""
    path.write_bytes(b"\x80\x04" + b"\x8e" + struct.pack("<Q", 2**40) + b"\x00" * 24)
    return path


def _tiny():
    from artlab.stylegan import tiny_generator

    return tiny_generator(resolution=8)


#: name -> (builder, regex the refusal must match)
BAD_PICKLES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "zero_stride_view.pkl": (zero_stride_pickle, "repeats its data"),
    "zip_storage_blob.pkl": (zip_blob_pickle, "zip archive"),
    "sparse_10GB.pkl": (sparse_pickle, "more than the .* bytes of tensor data"),
    "oversized_config.pkl": (oversized_config_pickle, "do not fit"),
    "length_claims_1TiB.pkl": (huge_length_pickle, "truncated or corrupt"),
}
if CAN_MKFIFO:
    BAD_PICKLES["pipe.pkl"] = (fifo, "FIFO")
