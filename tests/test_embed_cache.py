"""artlab.embed's on-disk cache verifies what it reads: one test per hole it used to have.

Each reproduction below failed on the old cache (flipped bytes and NaN rows used
silently, an edited file-hashes.json swapping vectors, a file changed between hashing
and decoding poisoning its copies, a same-size rewrite with a restored mtime missed, an
unreadable shard reported on every run, two concurrent runs computing everything twice).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from artlab import embed as E
from artlab.embed import embeddings as EM
from artlab.embed import file_hashes as FH
from artlab.cli import main
from artlab.images import save_image

ROOT = Path(__file__).resolve().parents[1]
LAYER = "relu2_1"

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors: see conftest


class _Count:
    """Images through the model's forward pass (a forward hook, as a context manager)."""

    def __init__(self, model) -> None:
        self.model, self.images = model, 0

    def __enter__(self):
        self.handle = self.model.register_forward_hook(lambda _m, inputs, _o: self._add(inputs[0].shape[0]))
        return self

    def _add(self, n: int) -> None:
        self.images += n

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def _images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    g = torch.Generator().manual_seed(seed)
    return [save_image(torch.rand(1, 3, 32, 32, generator=g), folder / f"img{i:02d}.png") for i in range(n)]


def _bmp(seed: int) -> bytes:
    """A 32×32 BMP: every one has the same size in bytes, whatever its pixels."""
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="BMP")
    return buffer.getvalue()


def _embed(images, model, cache, **kw):
    kw.setdefault("size", 32)
    return E.embed(images, model, LAYER, cache_dir=cache, progress=False, **kw)


def _fresh(images, model):
    """Vectors computed without any cache: what a correct cache must return."""
    return E.embed(images, model, LAYER, size=32, cache_dir=False, progress=False).vectors


def _same(actual, expected) -> None:
    """Equal up to float32 rounding (batches of other sizes sum in another order)."""
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


def _shards(cache: Path) -> list[Path]:
    return sorted(cache.glob("*/shards/*.npy"))


def _write_checksummed_shard(folder: Path, arr: np.ndarray) -> Path:
    """A shard as artlab names it (time, then the sha256 of its bytes), whatever it holds."""
    buffer = io.BytesIO()
    np.save(buffer, arr, allow_pickle=False)
    data = buffer.getvalue()
    path = folder / f"{time.time_ns():020d}-{hashlib.sha256(data).hexdigest()}.npy"
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- shards


def test_flipped_bytes_inside_a_cached_vector_are_caught_by_the_shard_checksum(tiny, tmp_path):
    paths = _images(tmp_path / "images", 6)
    cache = tmp_path / "cache"
    first = _embed(paths, tiny, cache)
    (shard,) = _shards(cache)
    data = bytearray(shard.read_bytes())
    arr = np.load(shard)
    row, k = np.argwhere(arr["vector"] > 0)[-1]  # a non-zero value: flipping a bit changes it visibly
    offset = len(data) - arr.nbytes + row * arr.dtype.itemsize + arr.dtype.fields["vector"][1] + 4 * k
    data[offset + 2] ^= 0x20  # a high mantissa bit: the value grows or shrinks by 25 %, still finite
    shard.write_bytes(bytes(data))
    assert not np.allclose(np.load(shard)["vector"], arr["vector"])

    with _Count(tiny) as count:
        again = _embed(paths, tiny, cache)
    _same(again.vectors, first.vectors)  # not the flipped value
    assert count.images == 6 and again.n_computed == 6  # the shard's images were computed again
    (note,) = [n for n in again.notes if "cache shard" in n]
    assert "unreadable cache shard" in note and "checksum mismatch" in note and "quarantine" in note
    assert not shard.exists() and (shard.parent.parent / "quarantine" / shard.name).is_file()


def test_an_unreadable_shard_is_reported_once_then_gone(tiny, tmp_path):
    paths = _images(tmp_path / "images", 4)
    cache = tmp_path / "cache"
    _embed(paths, tiny, cache)
    (shard,) = _shards(cache)
    shard.write_bytes(b"not a numpy file")

    one = _embed(paths, tiny, cache)
    assert sum("unreadable cache shard" in n for n in one.notes) == 1 and one.n_computed == 4
    with _Count(tiny) as count:
        two = _embed(paths, tiny, cache)
    assert not any("cache shard" in n for n in two.notes)  # reported once, not on every run
    assert count.images == 0 and (two.n_cached, two.n_computed) == (4, 0)
    assert shard not in _shards(cache)


def test_nan_rows_in_a_shard_are_rejected_when_read(tiny, tmp_path):
    paths = _images(tmp_path / "images", 5)
    cache = tmp_path / "cache"
    first = _embed(paths, tiny, cache)
    (shard,) = _shards(cache)
    arr = np.load(shard)
    arr["vector"][1] = np.nan
    arr["vector"][3, 0] = np.inf
    shard.unlink()
    bad = _write_checksummed_shard(shard.parent, arr)  # a valid checksum: only the values are wrong

    with _Count(tiny) as count:
        again = _embed(paths, tiny, cache)
    assert np.isfinite(again.vectors).all()
    _same(again.vectors, first.vectors)
    assert count.images == 2 and again.n_computed == 2  # only the two bad rows; the other three were kept
    assert any("rejected cache shard" in n and "2 row(s) with NaN" in n for n in again.notes)
    assert not bad.exists()
    for path in _shards(cache):
        assert np.isfinite(np.load(path)["vector"]).all()


def test_nan_vectors_are_never_written(tiny, tmp_path, monkeypatch):
    paths = _images(tmp_path / "images", 4)
    cache = tmp_path / "cache"
    real = EM.pooler
    calls = []

    def nan_for_the_second_image(*args, **kwargs):
        pool = real(*args, **kwargs)

        def pooled(act):
            out = pool(act)
            calls.append(len(out))
            return out * np.nan if len(calls) == 2 else out

        return pooled

    monkeypatch.setattr(EM, "pooler", nan_for_the_second_image)
    emb = _embed(paths, tiny, cache, batch_size=1)
    assert emb.paths == [str(p) for p in paths if p != paths[1]] and np.isfinite(emb.vectors).all()
    assert [(p, "NaN" in why) for p, why in emb.skipped] == [(str(paths[1]), True)]
    for path in _shards(cache):
        assert np.isfinite(np.load(path)["vector"]).all()
    monkeypatch.setattr(EM, "pooler", real)
    with _Count(tiny) as count:
        again = _embed(paths, tiny, cache)
    assert count.images == 1 and len(again) == 4  # the NaN was not cached: that image is computed again


# --------------------------------------------------------------------------- which bytes a vector belongs to


def test_a_file_changed_between_hashing_and_decoding_does_not_poison_its_copies(tiny, tmp_path, monkeypatch):
    folder = tmp_path / "images"
    original, other = _images(tmp_path / "sources", 2)
    x, copy = folder / "x.png", folder / "y_copy.png"  # x comes first, so x is the file decoded for both
    folder.mkdir()
    shutil.copy(original, x)
    shutil.copy(original, copy)
    cache = tmp_path / "cache"
    real = EM._content_hashes

    def then_x_changes(*args, **kwargs):
        out = real(*args, **kwargs)
        x.write_bytes(other.read_bytes())  # after hashing, before decoding
        return out

    monkeypatch.setattr(EM, "_content_hashes", then_x_changes)
    emb = _embed([x, copy], tiny, cache)
    monkeypatch.setattr(EM, "_content_hashes", real)
    want_original, want_other = _fresh([original, other], tiny)
    _same(emb.vectors[0], want_other)  # x: what was decoded
    _same(emb.vectors[1], want_original)  # its former copy: its own bytes
    assert emb.hashes == [FH.sha256_file(other), FH.sha256_file(original)]
    # every later copy of the original gets the original's vector
    later = tmp_path / "later.png"
    shutil.copy(original, later)
    with _Count(tiny) as count:
        _same(_embed([later], tiny, cache).vectors[0], want_original)
    assert count.images == 0


def test_same_size_rewrite_with_restored_mtime_is_noticed(tiny, tmp_path, monkeypatch):
    """The promise (module docs): a file is re-read unless size, mtime_ns, ctime_ns and inode
    all match; the OS sets ctime on every write and os.utime, so restoring the mtime of a
    same-size rewrite does not hide it."""
    monkeypatch.setattr(FH, "_SETTLED_NS", 0, raising=False)  # trust entries at once, as an hour later
    path = tmp_path / "images" / "picture.bmp"
    path.parent.mkdir()
    path.write_bytes(_bmp(0))
    cache = tmp_path / "cache"
    _embed([path], tiny, cache)
    before = path.stat()
    path.write_bytes(_bmp(1))  # in place: same inode, same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)

    with _Count(tiny) as count:
        emb = _embed([path], tiny, cache)
    assert count.images == 1 and emb.n_computed == 1
    _same(emb.vectors, _fresh([path], tiny))


def test_unchanged_files_are_recognised_by_stat_once_settled(tiny, tmp_path, monkeypatch):
    paths = _images(tmp_path / "images", 3)
    cache = tmp_path / "cache"
    reads = []
    real = FH._hash_file
    monkeypatch.setattr(FH, "_hash_file", lambda path, *a: reads.append(Path(path).name) or real(path, *a))
    monkeypatch.setattr(FH, "_SETTLED_NS", 3600 * 10**9)  # as if the files had been written just now
    _embed(paths, tiny, cache)
    assert len(reads) == 3
    _embed(paths, tiny, cache)  # hashed too soon after their last change: not trusted yet
    assert len(reads) == 6
    monkeypatch.setattr(FH, "_SETTLED_NS", 0)
    _embed(paths, tiny, cache)
    _embed(paths, tiny, cache)
    assert len(reads) == 6  # size, mtime, ctime, inode unchanged and entries signed: not read again
    _embed(paths, tiny, cache, rehash=True)
    assert len(reads) == 9  # rehash=True reads every file


def test_an_edited_file_hashes_json_never_gives_a_file_anothers_vector(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(FH, "_SETTLED_NS", 0, raising=False)  # entries would be trusted if they were sound
    paths = _images(tmp_path / "images", 3)
    cache = tmp_path / "cache"
    first = _embed(paths, tiny, cache)
    index = cache / "file-hashes.json"
    entries = json.loads(index.read_text())
    a, b = (entries[os.path.abspath(p)] for p in paths[:2])
    ia, ib = (next(k for k, v in enumerate(e) if isinstance(v, str) and len(v) == 64) for e in (a, b))
    a[ia], b[ib] = b[ib], a[ia]  # swap the two files' sha256
    index.write_text(json.dumps(entries))

    again = _embed(paths, tiny, cache)
    _same(again.vectors, first.vectors)
    assert again.hashes == [FH.sha256_file(p) for p in paths]


# --------------------------------------------------------------------------- concurrency


_CONCURRENT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from artlab.embed import embed
    from artlab.models import backbone

    folder, cache, me, other = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
    model = backbone("tiny_vgg", weights=None, seed=0)
    images = [0]
    model.register_forward_hook(lambda m, i, o: images.__setitem__(0, images[0] + i[0].shape[0]))
    me.touch()
    deadline = time.time() + 120
    while not other.exists() and time.time() < deadline:  # start together
        time.sleep(0.01)
    emb = embed(folder, model, "relu2_1", size=32, batch_size=2, cache_dir=cache, progress=False,
                on_progress=lambda stage, done, total: time.sleep(0.2))  # slow progress: the runs overlap
    print("RESULT", len(emb), emb.n_computed, emb.n_cached, images[0], flush=True)
""")


@pytest.mark.slow
def test_two_concurrent_runs_on_one_folder_compute_each_image_once(tiny, tmp_path):
    """This process and a child embed the same folder into the same cache at the same time."""
    n = 12
    _images(tmp_path / "images", n)
    cache = tmp_path / "cache"
    child_ready, we_start = tmp_path / "child-ready", tmp_path / "parent-ready"
    proc = subprocess.Popen([sys.executable, "-c", _CONCURRENT, str(tmp_path / "images"), str(cache),
                             str(child_ready), str(we_start)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 120
        while not child_ready.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        we_start.touch()
        with _Count(tiny) as count:
            ours = _embed(tmp_path / "images", tiny, cache, batch_size=2, on_progress=lambda stage, d, t: time.sleep(0.2))
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    (line,) = [row for row in out.splitlines() if row.startswith("RESULT")]
    size, computed, cached, images = (int(v) for v in line.split()[1:])
    assert size == len(ours) == n
    assert computed + ours.n_computed == n and images + count.images == n  # once between them, not twice
    assert computed + cached == n and ours.n_computed + ours.n_cached == n
    with _Count(tiny) as count:
        after = _embed(tmp_path / "images", tiny, cache, batch_size=2)
    assert count.images == 0 and after.n_cached == n


# --------------------------------------------------------------------------- verify and repair


def test_verify_reports_and_repair_drops_what_is_bad(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(FH, "_SETTLED_NS", 0)  # entries count as settled at once
    paths = _images(tmp_path / "images", 6)
    cache = tmp_path / "cache"
    _embed(paths[:3], tiny, cache)
    _embed(paths[3:], tiny, cache)
    assert main(["cache", "verify", "--cache-dir", str(cache)]) == 0
    assert capsys.readouterr().out.strip().endswith("ok")

    good, flipped = _shards(cache)
    data = bytearray(flipped.read_bytes())
    data[-1] ^= 1
    flipped.write_bytes(bytes(data))  # rows of paths[3:]
    arr = np.load(good)
    arr["vector"][0] = np.nan  # row of paths[0]
    good.unlink()
    _write_checksummed_shard(good.parent, arr)
    stale_tmp = good.parent / ".leftover.npy.123-abcd.tmp"
    stale_tmp.write_bytes(b"half a shard")
    os.utime(stale_tmp, (time.time() - 7200, time.time() - 7200))
    index = cache / "file-hashes.json"
    entries = json.loads(index.read_text())
    entries[os.path.abspath(paths[1])][5] = "0" * 64  # an edited hash: the signature no longer holds
    key = (cache / "file-hashes.key").read_bytes()
    p2 = os.path.abspath(paths[2])
    fields = [*entries[p2][:5], "f" * 64]  # a signed entry whose stat matches but whose hash is wrong
    entries[p2] = [*fields, FH._sign(key, p2, fields)]
    entries[str(tmp_path / "gone.png")] = entries[os.path.abspath(paths[4])]
    index.write_text(json.dumps(entries))
    listing = sorted((p, p.stat().st_mtime_ns) for p in cache.rglob("*"))

    assert main(["cache", "verify", "--cache-dir", str(cache)]) == 1
    out = capsys.readouterr().out
    assert "damaged shards: 1" in out and "checksum mismatch" in out
    assert "rows with NaN or infinite values: 1" in out and "leftover temporary files: 1" in out
    assert "4 ok, 0 stale" in out and "3 bad" in out and "content changed" in out and "gone.png" in out
    assert sorted((p, p.stat().st_mtime_ns) for p in cache.rglob("*")) == listing  # verify changes nothing
    report = E.verify_cache(cache, rehash=False)
    assert report.index_ok == 5 and len(report.index_bad) == 2  # without re-reading, the forged hash passes

    assert main(["cache", "repair", "--cache-dir", str(cache)]) == 0
    assert "repaired" in capsys.readouterr().out
    assert not stale_tmp.exists() and not flipped.exists()
    assert main(["cache", "verify", "--cache-dir", str(cache)]) == 0
    report = E.verify_cache(cache)
    assert (report.shards, report.vectors, report.index_ok, report.index_bad) == (1, 2, 4, [])

    with _Count(tiny) as count:
        emb = _embed(paths, tiny, cache)
    assert count.images == 4 and emb.n_computed == 4  # the NaN row and the damaged shard's three
    _same(emb.vectors, _fresh(paths, tiny))


def test_verify_of_a_missing_cache_says_so(tmp_path, capsys):
    assert main(["cache", "verify", "--cache-dir", str(tmp_path / "nowhere")]) == 1
    assert "does not exist" in capsys.readouterr().out
