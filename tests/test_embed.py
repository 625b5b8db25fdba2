"""artlab.embed: cached collection embeddings, maps, neighbours, linear probe and fine-tuning."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from artlab.embed import classify as C
from artlab import embed as E
from artlab.embed import cache as embed_cache
from artlab.embed import embeddings as EM
from artlab.data import Collection
from artlab.figures import ArtlabFigure
from artlab.gram import gram
from artlab.images import load_images, save_image
from artlab.models import backbone, features

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors: see conftest


class _ForwardCounter:
    """Counts forward passes and images through a model (a forward hook; use as a context manager)."""

    def __init__(self, model) -> None:
        self.model, self.calls, self.images = model, 0, 0

    def __enter__(self):
        def hook(_module, inputs, _output):
            self.calls += 1
            self.images += inputs[0].shape[0]

        self.handle = self.model.register_forward_hook(hook)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def _folder(root: Path, n: int, *, classes: tuple[str, ...] = ("a", "b"), size: int = 40, seed: int = 0) -> list[Path]:
    """n random-noise PNGs spread over class subfolders (distinct content, reproducible)."""
    g = torch.Generator().manual_seed(seed)
    paths = []
    for i in range(n):
        path = root / classes[i % len(classes)] / f"img{i:03d}.png"
        save_image(torch.rand(1, 3, size, size, generator=g), path)
        paths.append(path)
    return paths


def _embed(images, model, tmp_path, **kw):
    kw.setdefault("size", 32)
    kw.setdefault("progress", False)
    kw.setdefault("cache_dir", tmp_path / "cache")
    return E.embed(images, model, **kw)


def _shards(cache: Path) -> list[Path]:
    return sorted(cache.glob("*/shards/*.npy"))


# --------------------------------------------------------------------------- embed and its cache


def test_embed_a_collection_then_read_it_back_from_the_cache(tiny, corpus, tmp_path):
    with _ForwardCounter(tiny) as count:
        emb = _embed(corpus, tiny, tmp_path, layer="relu3_1", batch_size=16)
    assert count.calls == 3 and count.images == 36  # 36 images in batches of 16
    assert emb.vectors.shape == (36, 24) and emb.vectors.dtype == np.float32
    assert emb.paths == [str(p) for p in corpus.paths]
    pd.testing.assert_frame_equal(emb.meta, corpus.to_frame())  # path, label, every metadata column, same order
    assert emb.model_label == tiny.label and emb.pretrained is False
    assert (emb.layer, emb.pooling, emb.size) == ("relu3_1", "mean", 32)
    assert any("random weights" in n for n in emb.notes)
    assert (emb.n_cached, emb.n_computed) == (0, 36) and not emb.skipped and not emb.duplicates
    direct = features(tiny, corpus.load_all(32), "relu3_1")["relu3_1"].mean(dim=(2, 3))
    np.testing.assert_allclose(emb.vectors, direct.numpy(), atol=1e-5)

    seen = []
    with _ForwardCounter(tiny) as count:
        again = _embed(corpus, tiny, tmp_path, layer="relu3_1",
                       on_progress=lambda stage, d, t: seen.append((d, t)))
    assert count.calls == 0 and (again.n_cached, again.n_computed) == (36, 0)
    assert seen == [(36, 36)]
    assert np.array_equal(again.vectors, emb.vectors)
    # a different layer, pooling, size or weights is another cache entry
    with _ForwardCounter(tiny) as count:
        _embed(corpus.subset(range(4)), tiny, tmp_path, layer="relu2_1")
        _embed(corpus.subset(range(4)), tiny, tmp_path, layer="relu3_1", pooling="mean+std")
        _embed(corpus.subset(range(4)), tiny, tmp_path, layer="relu3_1", size=40)
    assert count.images == 12
    other = backbone("tiny_vgg", weights=None, seed=1)
    with _ForwardCounter(other) as count:
        _embed(corpus.subset(range(4)), other, tmp_path, layer="relu3_1")
    assert count.images == 4
    configs = sorted(p.name for p in (tmp_path / "cache").iterdir() if p.is_dir())
    assert len(configs) == 5 and all(name.startswith("tiny_vgg-relu") for name in configs)


def test_poolings_and_default_layers(tiny, tiny_resnet, corpus, tmp_path):
    photos = corpus.subset(domain="photo")
    assert E.default_layer(tiny) == "relu4_2" and E.default_layer(tiny_resnet) == "layer4"
    dims = {p: _embed(photos, tiny, tmp_path, layer="relu2_1", pooling=p).vectors.shape[1] for p in E.POOLINGS}
    assert dims == {"mean": 16, "mean+std": 32, "gram": 136}  # 16 channels; triangle 16·17/2 ≤ 256 kept whole
    both = _embed(photos, tiny, tmp_path, layer="relu2_1", pooling="mean+std").vectors
    maps = features(tiny, photos.load_all(32), "relu2_1")["relu2_1"]
    np.testing.assert_allclose(both[:, 16:], maps.std(dim=(2, 3), unbiased=False).numpy(), atol=1e-5)
    res = _embed(photos, tiny_resnet, tmp_path, pooling="gram")
    assert res.layer == "layer4.0" and res.vectors.shape == (6, E.GRAM_DIM)  # 512 channels projected
    with pytest.raises(ValueError, match="spatial maps"):
        _embed(photos, tiny_resnet, tmp_path, layer="fc", pooling="mean+std")
    with pytest.raises(ValueError, match="unknown pooling"):
        _embed(photos, tiny, tmp_path, pooling="max")
    with pytest.raises(ValueError, match="Valid layers"):
        _embed(photos, tiny, tmp_path, layer="relu9_9")


def test_gram_pooling_keeps_distances_between_gram_matrices(tiny, corpus, tmp_path):
    images = corpus.subset(range(0, 36, 3))
    maps = features(tiny, images.load_all(32), ["relu1_1", "relu4_1"])
    for layer, projected in (("relu1_1", False), ("relu4_1", True)):  # 8 channels: 36 values; 32: 528 -> 256
        vectors = _embed(images, tiny, tmp_path, layer=layer, pooling="gram").vectors.astype(np.float64)
        g = gram(maps[layer], "hw").flatten(1).double().numpy()
        iu = np.triu_indices(len(g), 1)
        exact = np.linalg.norm(g[:, None] - g[None], axis=2)[iu]
        approx = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)[iu]
        if not projected:
            np.testing.assert_allclose(approx, exact, rtol=1e-4)  # the √2-weighted triangle is an isometry
        else:
            assert vectors.shape[1] == E.GRAM_DIM
            assert np.median(np.abs(approx / exact - 1)) < 0.15  # Johnson–Lindenstrauss: small relative error
            assert np.corrcoef(approx, exact)[0, 1] > 0.95
    # the projection is fixed by its seed, not by the data: another subset gives the same rows
    part = _embed(images.subset(range(3)), tiny, tmp_path / "other", layer="relu4_1", pooling="gram").vectors
    np.testing.assert_allclose(part, vectors[:3], atol=1e-6)


_KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from artlab.embed import embed
    from artlab.models import backbone

    def hold(stage, done, total):
        print(f"BATCH {done} {total}", flush=True)
        time.sleep(120)  # the parent kills us here, after the first batch was written

    embed(sys.argv[1], backbone("tiny_vgg", weights=None, seed=0), "relu2_1", size=32, batch_size=4,
          cache_dir=sys.argv[2], progress=False, on_progress=hold)
""")


@pytest.mark.slow
def test_a_killed_run_loses_nothing_and_the_next_call_computes_only_the_rest(tiny, tmp_path):
    paths = _folder(tmp_path / "images", 10)
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(tmp_path / "images"), str(cache)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # as in this process (fixture above)
    timer = threading.Timer(90, proc.kill)  # never hang the suite if the child misbehaves
    timer.start()
    try:
        line = proc.stdout.readline()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        timer.cancel()
    assert line.strip() == "BATCH 4 10", proc.stderr.read()
    assert proc.returncode == -signal.SIGKILL
    assert len(_shards(cache)) == 1  # the first batch reached the disk before progress was reported

    with _ForwardCounter(tiny) as count:
        resumed = E.embed(tmp_path / "images", tiny, "relu2_1", size=32, batch_size=4, cache_dir=cache,
                          progress=False)
    assert count.images == 6 and count.calls == 2  # only the 6 missing images, in batches of 4
    assert (resumed.n_cached, resumed.n_computed) == (4, 6)
    fresh = E.embed(tmp_path / "images", tiny, "relu2_1", size=32, batch_size=4, cache_dir=tmp_path / "fresh",
                    progress=False)
    assert resumed.paths == fresh.paths == [str(p) for p in sorted(paths)]
    assert np.array_equal(resumed.vectors, fresh.vectors)  # identical to an uninterrupted run


def test_stopping_from_the_callback_keeps_finished_batches_and_many_shards_are_merged(tiny, tmp_path):
    _folder(tmp_path / "images", 9)
    cache = tmp_path / "cache"

    def stop(stage, done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        E.embed(tmp_path / "images", tiny, size=32, batch_size=2, cache_dir=cache, progress=False, on_progress=stop)
    assert len(_shards(cache)) == 1
    seen = []
    emb = E.embed(tmp_path / "images", tiny, size=32, batch_size=1, cache_dir=cache, progress=False,
                  on_progress=lambda stage, d, t: seen.append((d, t)))
    assert seen == [(d, 9) for d in range(3, 10)] and emb.n_computed == 7
    # 1 + 7 shards: below the merge threshold; one more small run pushes it over
    assert len(_shards(cache)) == 8
    _folder(tmp_path / "more", 10, seed=1)
    E.embed(tmp_path / "more", tiny, size=32, batch_size=1, cache_dir=cache, progress=False)
    assert len(_shards(cache)) == 1  # 18 shards merged into one
    with _ForwardCounter(tiny) as count:
        both = E.embed([*sorted((tmp_path / "images").rglob("*.png")), *sorted((tmp_path / "more").rglob("*.png"))],
                       tiny, size=32, cache_dir=cache, progress=False)
    assert count.calls == 0 and len(both) == 19
    np.testing.assert_array_equal(both.vectors[:9], emb.vectors)
    # a damaged shard costs recomputation, never a crash
    _shards(cache)[0].write_bytes(b"not a numpy file")
    with _ForwardCounter(tiny) as count:
        repaired = E.embed(tmp_path / "images", tiny, size=32, cache_dir=cache, progress=False)
    assert count.images == 9 and any("unreadable cache shard" in n for n in repaired.notes)
    np.testing.assert_allclose(repaired.vectors, emb.vectors, atol=1e-6)
    # ... moved out of the way (reported once, not on every run) and checksummed shards left in its place
    assert not any("cache shard" in n for n in E.embed(tmp_path / "images", tiny, size=32, cache_dir=cache,
                                                       progress=False).notes)
    assert all(embed_cache._SHARD_NAME.match(p.name) for p in _shards(cache))


def test_duplicates_renames_and_changed_folders(tiny, tmp_path):
    folder = tmp_path / "images"
    paths = _folder(folder, 6)
    shutil.copy(paths[0], folder / "b" / "copy_of_0.png")
    (folder / "c").mkdir()
    shutil.copy(paths[0], folder / "c" / "another_copy.png")
    with _ForwardCounter(tiny) as count:
        emb = _embed(folder, tiny, tmp_path)
    assert count.images == 6 and len(emb) == 8  # the two copies were not computed again but keep their rows
    (digest, group), = emb.duplicates.items()
    assert sorted(group) == sorted([str(paths[0]), str(folder / "b" / "copy_of_0.png"),
                                    str(folder / "c" / "another_copy.png")])
    rows = [emb.paths.index(p) for p in group]
    assert all(np.array_equal(emb.vectors[r], emb.vectors[rows[0]]) for r in rows)
    assert all(emb.hashes[r] == digest for r in rows)
    assert any("duplicate" in n for n in emb.notes)

    # images added, removed and renamed since the cache was written: only the new ones are computed
    paths[1].unlink()
    paths[2].rename(folder / "a" / "renamed.png")
    new = _folder(tmp_path / "new", 2, seed=7)
    for p in new:
        shutil.move(p, folder / "a" / f"new_{p.name}")
    with _ForwardCounter(tiny) as count:
        changed = _embed(folder, tiny, tmp_path)
    assert count.images == 2 and (changed.n_cached, changed.n_computed) == (6 - 1, 2)
    assert str(paths[1]) not in changed.paths and len(changed) == 8 - 1 + 2
    old = emb.vectors[emb.paths.index(str(paths[2]))]
    assert np.array_equal(changed.vectors[changed.paths.index(str(folder / "a" / "renamed.png"))], old)


def test_unusable_input_is_refused_or_skipped_with_reasons(tiny, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no readable images"):
        _embed(tmp_path / "empty", tiny, tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        _embed(tmp_path / "nowhere", tiny, tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "zero.png").write_bytes(b"")
    (broken / "text.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="2 unreadable"):
        _embed(broken, tiny, tmp_path)
    good = _folder(tmp_path / "truncated", 1)[0]
    truncated = tmp_path / "truncated" / "a" / "cut.png"
    truncated.write_bytes(good.read_bytes()[:200])  # a valid header, then nothing: fails only when decoded
    only_truncated = tmp_path / "only_truncated"
    only_truncated.mkdir()
    shutil.copy(truncated, only_truncated / "cut.png")
    with pytest.raises(ValueError, match="none of the 1 image"):
        _embed(only_truncated, tiny, tmp_path)
    emb = _embed(tmp_path / "truncated", tiny, tmp_path)
    assert emb.paths == [str(good)]
    assert [p for p, _ in emb.skipped] == [str(truncated)] and any("skipped 1" in n for n in emb.notes)
    listed = _embed([good, tmp_path / "missing.png"], tiny, tmp_path)
    assert len(listed) == 1 and listed.skipped == [(str(tmp_path / "missing.png"), "file not found")]
    with pytest.raises(ValueError, match="empty list"):
        _embed([], tiny, tmp_path)
    with pytest.raises(TypeError, match="nearest"):
        _embed(torch.rand(2, 3, 32, 32), tiny, tmp_path)
    with pytest.raises(ValueError, match="batch_size"):
        _embed([good], tiny, tmp_path, batch_size=0)


def test_metadata_problems_of_the_collection_reach_the_notes(tiny, tmp_path):
    folder = tmp_path / "images"
    paths = _folder(folder, 4)
    with open(folder / "metadata.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "artist", "year"])
        writer.writerows([[str(p.relative_to(folder)), f"artist{i % 2}", 1900 + i] for i, p in enumerate(paths[:3])])
        writer.writerow(["a/gone.png", "ghost", 1800])  # a row without a file
    emb = _embed(folder, tiny, tmp_path)  # and paths[3] has no row
    # every folder level is kept too (a/, b/: folder_1)
    assert len(emb) == 4 and list(emb.meta.columns) == ["path", "label", "folder_1", "artist", "year"]
    assert any("1 row(s)" in n and "gone.png" in n for n in emb.notes)
    assert any("1 image(s) have no row" in n for n in emb.notes)
    assert emb.labels == ["artist0", "artist0", "artist1", None]  # a/img000, a/img002, b/img001, b/img003


def test_subset_frame_and_csv(tiny, corpus, tmp_path):
    emb = _embed(corpus, tiny, tmp_path, layer="relu1_1")
    painted = emb.subset(emb.meta["domain"] == "painting")
    assert len(painted) == 30 and set(painted.meta["domain"]) == {"painting"}
    picked = emb.subset([5, 0])
    assert picked.paths == [emb.paths[5], emb.paths[0]] and np.array_equal(picked.vectors, emb.vectors[[5, 0]])
    with pytest.raises(ValueError, match="one entry per image"):
        emb.subset(np.ones(3, dtype=bool))
    xy = E.pca_2d(emb)
    frame = emb.to_frame(vectors=True, extra={"x": xy[:, 0], "y": xy[:, 1]})
    assert list(frame.columns[:8]) == ["path", "label", "folder_1", "subject", "domain", "style", "x", "y"]
    assert frame.shape == (36, 8 + 8)
    out = emb.save_csv(tmp_path / "out" / "emb.csv", columns=["path", "style"], extra={"x": xy[:, 0]})
    back = pd.read_csv(out)
    assert list(back.columns) == ["path", "style", "x"] + [f"f{j}" for j in range(8)]
    np.testing.assert_allclose(back[[f"f{j}" for j in range(8)]].to_numpy(), emb.vectors, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown columns"):
        emb.save_csv(tmp_path / "x.csv", columns=["artist"])


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="needs a file system that stores any bytes as a name")
def test_csv_writes_names_that_are_not_utf8_losslessly(tiny, tmp_path):
    import codecs

    folder = tmp_path / "images"
    _folder(folder, 2, classes=("a",))
    raw = os.fsencode(folder / "a") + b"/caf\xe9 \\ \xc3\xa9.png"  # Latin-1 é, a backslash, a UTF-8 é
    os.rename(folder / "a" / "img001.png", raw)
    (folder / os.fsdecode(b"\xffclass")).mkdir()  # an undecodable label (a class folder) too
    os.rename(folder / "a" / "img000.png", os.fsencode(folder) + b"/\xffclass/x.png")
    emb = _embed(folder, tiny, tmp_path)
    out = emb.save_csv(tmp_path / "emb.csv", vectors=False)  # crashed: UnicodeEncodeError
    back = pd.read_csv(out, encoding="utf-8")
    path = next(p for p in back["path"] if "caf" in p)
    assert path.endswith("/caf\\xe9 \\\\ é.png")  # readable: the byte escaped, the backslash doubled
    assert os.fsencode(os.fsdecode(codecs.escape_decode(path.encode())[0])) == raw  # lossless
    assert sorted(back["label"]) == ["\\xffclass", "a"]
    assert list(back["path"]) == [EM._escape_text(p) for p in emb.paths]


# --------------------------------------------------------------------------- maps


@pytest.fixture(scope="module")
def corpus_vectors(tiny, corpus, tmp_path_factory):
    return _embed(corpus, tiny, tmp_path_factory.mktemp("maps"), layer="relu3_1", pooling="mean+std")


@pytest.fixture(scope="module")
def umap_maps(corpus_vectors):
    """Every UMAP of the file, made once (the first UMAP in a process compiles numba code for ~20 s)."""
    seconds = E.warm_up_umap()
    return seconds, {
        "2d": E.umap_2d(corpus_vectors, seed=0),
        "2d again": E.umap_2d(corpus_vectors, seed=0),
        "2d seed 1": E.umap_2d(corpus_vectors, seed=1),
        "3d": E.map_points("umap", corpus_vectors, dims=3, seed=0, pca=None, metric="euclidean"),
    }


@pytest.mark.slow
def test_umap_maps_are_seeded_and_reproducible(umap_maps):
    seconds, maps = umap_maps
    assert seconds > 0
    assert maps["2d"].shape == (36, 2) and maps["3d"].shape == (36, 3)
    assert np.isfinite(maps["2d"]).all() and np.isfinite(maps["3d"]).all()
    assert np.array_equal(maps["2d"], maps["2d again"])
    assert not np.allclose(maps["2d"], maps["2d seed 1"])
    with pytest.raises(ValueError, match="at least 4"):
        E.umap_2d(np.zeros((3, 5)))


def test_pca_and_tsne_maps(corpus_vectors):
    xy = E.pca_2d(corpus_vectors)
    centred = corpus_vectors.vectors - corpus_vectors.vectors.mean(0)
    top = np.linalg.svd(centred, full_matrices=False)[1][:2] ** 2
    np.testing.assert_allclose((xy.astype(np.float64) ** 2).sum(0), top, rtol=1e-3)  # the two largest variances
    assert E.pca_3d(corpus_vectors).shape == (36, 3) and E.map_points("pca", np.eye(2, 5), dims=3).shape == (2, 3)
    t1 = E.tsne_2d(corpus_vectors, seed=0)
    assert t1.shape == (36, 2) and np.array_equal(t1, E.map_points("tsne", corpus_vectors, seed=0))
    with pytest.raises(ValueError, match="unknown method"):
        E.map_points("mds", corpus_vectors)
    with pytest.raises(ValueError, match="NaN"):
        E.pca_2d(np.array([[0.0, np.nan], [1.0, 2.0]]))


# --------------------------------------------------------------------------- the layout cache


def test_layouts_are_cached_on_disk_by_vectors_and_settings(tmp_path, monkeypatch):
    from artlab.embed import maps as M

    fits = []

    def fake_map_points(method, data, dims=2, seed=0, **kw):  # a "fit" we can count, deterministic per seed
        fits.append((method, seed))
        return np.random.default_rng(seed).normal(size=(len(M.as_matrix(data)), dims)).astype(np.float32)

    monkeypatch.setattr(M, "map_points", fake_map_points)
    monkeypatch.setattr(M, "compile_umap", lambda: False)
    vectors = np.random.default_rng(1).uniform(size=(30, 8))
    first = M.Layouts(vectors, seed=3, cache=tmp_path / "layouts").compute("umap")
    assert fits == [("umap", 3)] and len(list((tmp_path / "layouts").glob("*.npy"))) == 1
    again = M.Layouts(vectors, seed=3, cache=tmp_path / "layouts")  # a relaunch: read, not fitted
    assert again.from_cache("umap") and fits == [("umap", 3)]
    np.testing.assert_array_equal(again["umap"], first)
    assert not again.from_cache("tsne") and not again.from_cache("pca")  # PCA is never cached: it is instant
    # other vectors, another seed, other parameters, another dimension: another layout
    for layouts in (M.Layouts(vectors + 1e-3, seed=3, cache=tmp_path / "layouts"),
                    M.Layouts(vectors, seed=4, cache=tmp_path / "layouts"),
                    M.Layouts(vectors, seed=3, cache=tmp_path / "layouts", n_neighbors=5),
                    M.Layouts(vectors, dims=3, seed=3, cache=tmp_path / "layouts")):
        assert not layouts.from_cache("umap")
    # a damaged or wrong-shaped file is a miss (and removed), never an error
    cache = M.LayoutCache(tmp_path / "layouts")
    key = cache.key(vectors, "umap", 2, 3, {})
    (tmp_path / "layouts" / f"{key}.npy").write_bytes(b"not numpy")
    assert cache.get(key, (30, 2)) is None and not (tmp_path / "layouts" / f"{key}.npy").exists()
    cache.put(key, np.zeros((29, 2)))
    assert cache.get(key, (30, 2)) is None
    with pytest.raises(ValueError, match="keep"):
        M.LayoutCache(tmp_path, keep=0)


def test_the_layout_cache_keeps_the_most_recently_used_few(tmp_path):
    from artlab.embed import maps as M

    cache = M.LayoutCache(tmp_path, keep=3)
    keys = [f"{i:064x}" for i in range(5)]
    for i, key in enumerate(keys):
        cache.put(key, np.full((4, 2), i, dtype=float))
        os.utime(tmp_path / f"{key}.npy", (1000 + i, 1000 + i))  # written one after the other
        if i == 2:
            assert cache.get(keys[0], (4, 2)) is not None  # used again: now the most recent
    kept = {p.stem for p in tmp_path.glob("*.npy")}
    assert len(kept) == 3 and keys[4] in kept and keys[3] in kept


def test_two_processes_writing_one_layout_leave_a_whole_file_and_a_relaunch_never_imports_umap(tmp_path):
    """Writers in two processes at once (same key): every read sees the whole layout or nothing. Then a
    fresh process reads it as a map opening on cached embeddings does: umap is never imported."""
    from artlab.embed import maps as M

    vectors = np.random.default_rng(0).uniform(size=(500, 16)).astype(np.float32)
    np.save(tmp_path / "vectors.npy", vectors)
    key = M.LayoutCache.key(vectors, "umap", 2, 0, {})
    writer = textwrap.dedent(f"""
        import numpy as np
        from artlab.embed.maps import LayoutCache
        cache = LayoutCache({str(tmp_path / "layouts")!r})
        coords = np.arange(1000, dtype=float).reshape(500, 2)
        for _ in range(40):
            cache.put({key!r}, coords)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", writer]) for _ in range(2)]
    cache, seen = M.LayoutCache(tmp_path / "layouts"), 0
    while any(p.poll() is None for p in procs):
        got = cache.get(key, (500, 2))
        if got is not None:
            seen += 1
            np.testing.assert_array_equal(got, np.arange(1000).reshape(500, 2))
    assert [p.wait() for p in procs] == [0, 0]
    assert cache.get(key, (500, 2)) is not None and not list((tmp_path / "layouts").glob(".*.tmp"))
    reader = textwrap.dedent(f"""
        import sys
        import numpy as np
        from artlab.embed.maps import Layouts
        layouts = Layouts(np.load({str(tmp_path / "vectors.npy")!r}), cache={str(tmp_path / "layouts")!r})
        assert layouts.from_cache("umap") and layouts.compute("umap").shape == (500, 2)
        assert "umap" not in sys.modules and "numba" not in sys.modules, "umap was imported"
    """)
    done = subprocess.run([sys.executable, "-c", reader], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


# --------------------------------------------------------------------------- neighbours


def test_nearest_neighbours_by_index_path_image_and_vector(tiny, corpus, tmp_path):
    emb = _embed(corpus, tiny, tmp_path, layer="relu3_1")
    table = E.nearest(emb, 0, k=5)
    assert list(table.columns[:6]) == ["rank", "index", "path", "similarity", "closer_than", "label"]
    assert list(table["rank"]) == [1, 2, 3, 4, 5] and 0 not in set(table["index"])
    centred = emb.vectors - emb.vectors.mean(axis=0)
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    sims = unit @ unit[0]
    expected = [i for i in np.argsort(-sims, kind="stable") if i != 0][:5]
    assert list(table["index"]) == expected
    np.testing.assert_allclose(table["similarity"], sims[expected], atol=1e-6)
    assert table["path"].tolist() == [emb.paths[i] for i in expected]
    pd.testing.assert_frame_equal(E.nearest(emb, emb.paths[0], k=5), table)
    # closer than k of the 34 other images (35 minus the query, minus the neighbour itself)
    assert list(table["closer_than"]) == pytest.approx([100 * (34 - r) / 34 for r in range(5)])
    raw = E.nearest(emb, 0, k=5, centre=False)
    plain = emb.vectors / np.linalg.norm(emb.vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(raw["similarity"], (plain @ plain[0])[raw["index"]], atol=1e-6)
    by_vector = E.nearest(emb, emb.vectors[0], k=4)  # a vector query is not an embedded image: 0 comes first
    assert list(by_vector["index"]) == [0, *expected[:3]] and by_vector["similarity"][0] == pytest.approx(1.0)

    # an image from outside the collection goes through the same preprocessing and model
    outside = corpus.load(7)
    found = E.nearest(emb, outside, k=3, model=tiny)
    assert found["index"].iloc[0] == 7 and found["similarity"].iloc[0] == pytest.approx(1.0, abs=1e-5)
    copy = tmp_path / "copy.png"
    shutil.copy(corpus.paths[9], copy)
    assert E.nearest(emb, copy, k=1)["index"].iloc[0] == 9  # same bytes: found by hash, no model needed
    with pytest.raises(ValueError, match="pass model="):
        E.nearest(emb, outside, k=3)
    with pytest.raises(ValueError, match="made with"):
        E.nearest(emb, outside, k=3, model=backbone("tiny_vgg", weights=None, seed=1))
    with pytest.raises(ValueError, match="values"):
        E.nearest(emb, np.zeros(5), k=3)
    with pytest.raises(IndexError):
        E.nearest(emb, 36)
    assert len(E.nearest(emb, 3, k=100)) == 35


def test_centred_scores_spread_where_raw_cosines_of_positive_features_all_sit_near_one():
    """Pooled ReLU features are all positive: any two images have a raw cosine near 1, so raw scores cannot
    tell a neighbour from a stranger. Centred on the collection's mean they spread, and the order keeps
    the planted neighbours first."""
    rng = np.random.default_rng(0)
    base = rng.uniform(1.0, 2.0, size=64)  # what every image shares (a positive offset)
    vectors = base + 0.15 * rng.standard_normal((200, 64))
    vectors[1] = vectors[0] + 0.02 * rng.standard_normal(64)  # image 1 is a near-copy of image 0
    emb = _synthetic(np.abs(vectors), ["x"] * 200)
    raw = E.nearest(emb, 0, k=199, centre=False)["similarity"]
    assert raw.min() > 0.97  # the symptom: every image "0.99 similar"
    table = E.nearest(emb, 0, k=199)
    centred = table["similarity"]
    assert centred.iloc[0] > 0.95 and table["index"].iloc[0] == 1  # the near-copy stays first, clearly apart
    assert centred.iloc[1:].max() < 0.5 and centred.min() < -0.2  # strangers spread around 0
    assert table["closer_than"].iloc[0] == 100 and table["closer_than"].iloc[-1] == 0
    assert (np.diff(table["closer_than"]) <= 0).all()


# --------------------------------------------------------------------------- linear probe


def _synthetic(vectors: np.ndarray, labels: list, hashes: list[str] | None = None) -> E.Embeddings:
    n = len(vectors)
    paths = [f"img{i}.png" for i in range(n)]
    hashes = hashes or [f"{i:064x}" for i in range(n)]
    duplicates = {}
    for h in set(hashes):
        group = [p for p, g in zip(paths, hashes) if g == h]
        if len(group) > 1:
            duplicates[h] = group
    return E.Embeddings(vectors.astype(np.float32), paths, pd.DataFrame({"path": paths, "label": labels}),
                        "synthetic", False, "relu3_1", "mean", 32, duplicates=duplicates, hashes=hashes)


def test_linear_probe_separable_and_random_labels():
    rng = np.random.default_rng(0)
    labels = ["monet", "seurat", "turner"] * 10
    centres = {"monet": 0, "seurat": 1, "turner": 2}
    x = rng.normal(size=(30, 6)) + 6 * np.eye(6)[[centres[v] for v in labels]]  # six standard deviations apart
    probe = C.linear_probe(_synthetic(x, labels), folds=5, seed=0)
    assert probe.accuracy == 1.0 and probe.balanced_accuracy == 1.0 and probe.folds == 5
    assert probe.classes == ["monet", "seurat", "turner"] and probe.chance == pytest.approx(1 / 3)
    assert np.array_equal(probe.confusion, np.diag([10, 10, 10])) and probe.misclassified == []
    assert set(probe.report.index) >= {"monet", "seurat", "turner", "macro avg"}
    assert len(probe.fold_accuracies) == 5 and probe.accuracy_std == 0.0
    noise = C.linear_probe(_synthetic(rng.normal(size=(30, 6)), labels), folds=5, seed=0)
    assert noise.accuracy < 0.7 and noise.confusion.sum() == 30
    assert len(noise.misclassified) == 30 - int(np.trace(noise.confusion))
    again = C.linear_probe(_synthetic(x, labels), folds=5, seed=0)
    assert again.fold_accuracies == probe.fold_accuracies and np.array_equal(again.predictions, probe.predictions)
    frame = probe.to_frame()
    assert list(frame.columns) == ["index", "path", "label", "predicted", "correct"] and frame["correct"].all()
    fig = noise.plot_confusion()
    assert isinstance(fig, ArtlabFigure) and fig._repr_png_().startswith(b"\x89PNG")
    assert any("synthetic" in t.get_text() and "RANDOM" in t.get_text() for t in fig.texts)


def test_linear_probe_small_classes_missing_labels_and_duplicates():
    rng = np.random.default_rng(1)
    labels = ["a"] * 6 + ["b"] * 3 + ["c"] + [None, None]
    x = rng.normal(size=(12, 4))
    probe = C.linear_probe(_synthetic(x, labels), folds=5)
    assert probe.folds == 3 and probe.classes == ["a", "b"]
    assert any("3-fold" in n for n in probe.notes) and any("single image" in n and "c" in n for n in probe.notes)
    assert any("2 image(s) without a label" in n for n in probe.notes)
    assert list(probe.predictions[9:]) == [None, None, None] and probe.confusion.sum() == 9
    with pytest.raises(ValueError, match="at least two classes"):
        C.linear_probe(_synthetic(x, ["a"] * 11 + ["b"]))
    with pytest.raises(ValueError, match="no metadata column"):
        C.linear_probe(_synthetic(x, labels), "artist")
    # exact duplicates stay in one fold: a copy in training would make a test image trivially right
    base = rng.normal(size=(12, 4))
    twins = np.concatenate([base, base])
    twin_labels = [str(v) for v in rng.permutation(["x", "y"] * 6)] * 2
    hashes = [f"{i % 12:064x}" for i in range(24)]
    grouped = C.linear_probe(_synthetic(twins, twin_labels, hashes), folds=4, C=100.0)
    leaky = C.linear_probe(_synthetic(twins, twin_labels), folds=4, C=100.0)
    assert leaky.accuracy > grouped.accuracy


@pytest.mark.slow
def test_linear_probe_on_the_corpus_reads_the_subject_not_the_style(tiny, corpus, tmp_path):
    emb = _embed(corpus, tiny, tmp_path, layer="relu3_1", pooling="mean+std")
    subject = C.linear_probe(emb, "subject")
    shuffled = C.linear_probe(emb, list(np.random.default_rng(0).permutation(emb.meta["subject"])))
    assert subject.accuracy > 0.8 > shuffled.accuracy + 0.4
    style = C.linear_probe(emb)  # label = style: random features group images by the photo they came from
    assert style.classes == sorted(set(corpus.labels)) and style.accuracy < subject.accuracy


# --------------------------------------------------------------------------- fine-tuning


def test_finetune_is_a_seeded_generator_that_ends_with_a_model(tmp_path):
    folder = tmp_path / "images"
    _folder(folder, 12, classes=("monet", "seurat"), size=40)

    def run(arch="efficientnet_lite0"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            job = C.finetune(folder, arch=arch, epochs=2, size=32, batch_size=4, seed=0, val_fraction=0.25)
            steps = list(job)
        return job, steps, caught

    # the default starts from the ImageNet weights that come with artlab: no warning, a real network
    job, steps, caught = run()
    assert not [w for w in caught if "random init" in str(w.message)]
    assert job.label == "efficientnet_lite0 · ImageNet, fine-tuned" and job.model.pretrained
    assert torch.allclose(job.model.mean.flatten(), torch.tensor([127 / 255] * 3))  # Lite's own input scaling
    # MobileNetV2 without its (uncached) ImageNet file: a random init, said loudly
    mobile, _, caught = run("mobilenet_v2")
    assert any("random init" in str(w.message) for w in caught)
    assert mobile.label == "mobilenet_v2 · random init (seed 0)" and not mobile.model.pretrained
    assert (job.n_train, job.n_val) == (8, 4) and job.classes == ["monet", "seurat"]
    assert [s.epoch for s in steps] == [0, 0, 1, 1] and [s.step for s in steps] == [1, 2, 3, 4]
    assert [s.val_accuracy is None for s in steps] == [True, False, True, False]
    assert all(0 <= s.val_accuracy <= 1 for s in steps if s.val_accuracy is not None)
    assert steps[-1].model is job.model and all(s.model is None for s in steps[:-1])
    assert all(np.isfinite(s.train_loss) for s in steps)
    images = load_images(sorted(folder.rglob("*.png"))[:3], 32)
    assert set(job.model.predict(images)) <= {"monet", "seurat"}
    assert job.model(images).shape == (3, 2)
    _, again, _ = run()
    assert [s.train_loss for s in again] == [s.train_loss for s in steps]
    with pytest.raises(ValueError, match="two labelled classes"):
        C.finetune(Collection.from_folder(folder / "monet"), epochs=1, size=32)
    with pytest.raises(ValueError, match="unknown arch"):
        C.finetune(folder, arch="vit")


# --------------------------------------------------------------------------- real paintings


def test_six_artists_of_the_shared_paintings(tiny, shared_data, tmp_path):
    emb = _embed(shared_data / "paintings", tiny, tmp_path, layer="relu3_1", size=64)
    artists = sorted(p.name for p in (shared_data / "paintings").iterdir() if p.is_dir())
    assert len(emb) == sum(1 for _ in (shared_data / "paintings").rglob("*.jpg")) and not emb.skipped
    assert sorted(set(emb.labels)) == artists and len(artists) == 6
    probe = C.linear_probe(emb, folds=5)
    assert probe.confusion.sum() == len(emb) and probe.classes == artists
    table = E.nearest(emb, 0, k=5)
    assert (np.diff(table["similarity"]) <= 1e-9).all()


@pytest.mark.parametrize("shape", [(300, 40), (12, 50)])  # more rows than columns (eigh path) and fewer (SVD path)
def test_pca_matches_scikit_learn_including_signs(shape):
    from sklearn.decomposition import PCA

    x = np.random.default_rng(3).normal(size=shape) * np.linspace(3, 0.1, shape[1])
    ours = E.pca_2d(x)
    theirs = PCA(n_components=2, svd_solver="full").fit_transform(x)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- deprecations and the Run protocol


def test_old_two_argument_progress_callback_still_works_with_a_warning(tiny, corpus, tmp_path):
    seen, staged = [], []
    with pytest.warns(DeprecationWarning, match=r"on_progress\(stage, done, total\)"):
        _embed(corpus.subset(range(4)), tiny, tmp_path, batch_size=2, on_progress=lambda d, t: seen.append((d, t)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the new form does not warn
        _embed(corpus.subset(range(6)), tiny, tmp_path, batch_size=2, on_progress=lambda *a: staged.append(a))
    assert seen == [(2, 4), (4, 4)]
    assert staged == [("embedding", 6, 6)]  # 4 from the cache, then one batch of 2


def test_project_and_pca_seed_are_deprecated_aliases():
    x = np.random.default_rng(0).normal(size=(20, 6))
    with pytest.warns(DeprecationWarning, match="map_points"):
        old = E.project("pca", x, dims=3)
    np.testing.assert_array_equal(old, E.map_points("pca", x, dims=3))
    with pytest.warns(DeprecationWarning, match="seed"):
        seeded = E.pca_2d(x, seed=3)
    np.testing.assert_array_equal(seeded, E.pca_2d(x))  # PCA is exact: the seed never changed anything
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        E.map_points("pca", x, seed=5)  # map_points seeds UMAP and t-SNE only: no warning for PCA


def test_finetune_is_a_run_that_can_be_stopped(tmp_path):
    from artlab.runs import Run

    folder = tmp_path / "images"
    _folder(folder, 8, classes=("monet", "seurat"), size=40)
    job = C.finetune(folder, epochs=3, size=32, batch_size=2, seed=0, val_fraction=0.25)
    assert isinstance(job, Run)
    first = next(job)
    assert first.step == 1 and first.model is None
    job.close()
    assert job.closed and list(job) == []
    assert set(job.model.predict(load_images(sorted(folder.rglob("*.png"))[:2], 32))) <= {"monet", "seurat"}
