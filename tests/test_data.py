"""Collections from folders and CSVs, and the offline sample corpus."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from artlab.data import Collection, CollectionError, sample_corpus


def _png(path, colour=(200, 30, 30), size=(20, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def test_labels_from_subfolders(tmp_path):
    _png(tmp_path / "monet" / "a.png")
    _png(tmp_path / "monet" / "b.jpg")
    _png(tmp_path / "van_gogh" / "c.png")
    _png(tmp_path / "loose.png")
    (tmp_path / "notes.txt").write_text("not an image, ignored (and said so)")
    col = Collection.from_folder(tmp_path)
    assert [p.name for p in col.paths] == ["loose.png", "a.png", "b.jpg", "c.png"]
    assert col.labels == [None, "monet", "monet", "van_gogh"]
    assert col.classes == ["monet", "van_gogh"]
    assert not col.skipped
    assert col.ignored == [(tmp_path / "notes.txt", "not an image type artlab reads (.txt)")]


def test_nested_folders_keep_every_level_and_any_level_can_be_the_label(tmp_path):
    """paintings/van_gogh/x.jpg: the artist is not lost behind "paintings"; mixed depths leave levels empty."""
    _png(tmp_path / "paintings" / "van_gogh" / "starry.png")
    _png(tmp_path / "paintings" / "monet" / "sub" / "deep.png")
    _png(tmp_path / "photos" / "landscapes" / "hill.png")
    _png(tmp_path / "photos" / "loose.png")
    _png(tmp_path / "top.png")
    col = Collection.from_folder(tmp_path)
    names = [p.name for p in col.paths]
    assert names == ["deep.png", "starry.png", "hill.png", "loose.png", "top.png"]
    levels = {n: [col[i].meta[f"folder_{k}"] for k in (1, 2, 3)] for i, n in enumerate(names)}
    assert levels == {"deep.png": ["paintings", "monet", "sub"], "starry.png": ["paintings", "van_gogh", ""],
                      "hill.png": ["photos", "landscapes", ""], "loose.png": ["photos", "", ""],
                      "top.png": ["", "", ""]}
    assert col.labels == ["paintings", "paintings", "photos", "photos", None]  # the default: the top level
    assert Collection.from_folder(tmp_path, label_level=2).labels == ["monet", "van_gogh", "landscapes", None, None]
    assert Collection.from_folder(tmp_path, label_level=-1).labels == ["sub", "van_gogh", "landscapes", "photos",
                                                                        None]
    assert Collection.from_folder(tmp_path, label_column="folder_2").labels == ["monet", "van_gogh", "landscapes",
                                                                                 None, None]
    frame = Collection.from_folder(tmp_path, label_level=2).to_frame()  # what the CSV exports carry
    assert list(frame.columns) == ["path", "label", "folder_1", "folder_2", "folder_3"]
    with pytest.raises(CollectionError, match="deepest image .* 3 folder"):
        Collection.from_folder(tmp_path, label_level=4)
    with pytest.raises(ValueError, match="label_level must be a folder level"):
        Collection.from_folder(tmp_path, label_level=0)
    with pytest.raises(ValueError, match="not both"):
        Collection.from_folder(tmp_path, label_level=1, label_column="folder_1")
    with pytest.raises(CollectionError, match="'artist' is not a metadata column.*folder_1, folder_2, folder_3"):
        Collection.from_folder(tmp_path, label_column="artist")
    flat = tmp_path / "flat"
    _png(flat / "a.png")
    assert Collection.from_folder(flat)[0].meta == {}
    with pytest.raises(CollectionError, match="no subfolders"):
        Collection.from_folder(flat, label_level=1)


def test_a_csv_column_or_a_folder_level_labels_a_nested_folder_with_metadata(tmp_path):
    _png(tmp_path / "paintings" / "van_gogh" / "a.png")
    _png(tmp_path / "paintings" / "monet" / "b.png")
    with open(tmp_path / "metadata.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["path", "artist", "year"], ["paintings/van_gogh/a.png", "Vincent", "1889"],
                                  ["paintings/monet/b.png", "Claude", "1872"]])
    col = Collection.from_folder(tmp_path)
    assert col.labels == ["Claude", "Vincent"]  # the CSV's artist column, as before
    assert col[0].meta == {"folder_1": "paintings", "folder_2": "monet", "artist": "Claude", "year": "1872"}
    assert Collection.from_folder(tmp_path, label_level=2).labels == ["monet", "van_gogh"]
    assert Collection.from_folder(tmp_path, label_column="year").labels == ["1872", "1889"]


def test_unreadable_files_are_skipped_and_reported(tmp_path):
    _png(tmp_path / "ok.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    col = Collection.from_folder(tmp_path)
    assert [p.name for p in col.paths] == ["ok.png"]
    reasons = {p.name: why for p, why in col.skipped}
    assert reasons == {"empty.jpg": "empty file", "text.png": "not a recognised image format"}
    assert "skipped 2 unreadable" in col.summary()


def _from_folder_or_fail(folder, fifo=None, timeout=20.0):
    """Collection.from_folder(folder) in a thread: if it blocks (it opened the FIFO), release it and fail."""
    import os
    import threading

    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("col", Collection.from_folder(folder)), daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        if fifo is not None:  # a writer lets the blocked open() return
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"Collection.from_folder blocked for {timeout} s: it opened a FIFO")
    return result["col"]


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="FIFOs and /dev/zero are POSIX")
def test_every_file_is_accepted_or_reported_and_special_files_are_never_opened(tmp_path):
    import os

    from PIL import features

    from artlab.data import IMAGE_EXTENSIONS, image_extensions
    from artlab.images import load_image

    _png(tmp_path / "ok.png")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "README").write_text("no extension")
    (tmp_path / "scan.pdf").write_bytes(b"%PDF-1.4")  # Pillow writes PDFs but cannot read them
    (tmp_path / ".DS_Store").write_bytes(b"hidden: never reported")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("hidden folder")
    (tmp_path / "Thumbs.db").write_bytes(b"the OS's thumbnails")
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    expected_paths = ["ok.png"]
    if features.check("avif"):  # whatever load_image reads is an image to from_folder too
        Image.new("RGB", (20, 16), (10, 200, 30)).save(tmp_path / "modern.avif")
        assert load_image(tmp_path / "modern.avif").shape == (1, 3, 16, 20)
        assert ".avif" in image_extensions()
        expected_paths.insert(0, "modern.avif")
    col = _from_folder_or_fail(tmp_path, fifo=tmp_path / "pipe.png")
    assert [p.name for p in col.paths] == expected_paths
    assert {p.name: why for p, why in col.skipped} == {
        "pipe.png": "not a regular file", "zero.jpg": "not a regular file", "gone.png": "broken link"}
    assert {p.name: why for p, why in col.ignored} == {
        "notes.txt": "not an image type artlab reads (.txt)",
        "README": "not an image type artlab reads (no extension)",
        "scan.pdf": "not an image type artlab reads (.pdf)",
    }
    text = col.summary()
    assert "ignored 3 file(s) that are not images artlab reads:" in text and "notes.txt: not an image type" in text
    assert "skipped 3 unreadable file(s):" in text and "DS_Store" not in text and "Thumbs" not in text
    assert {".jpg", ".png", ".tif", ".webp"} <= IMAGE_EXTENSIONS and not {".pdf", ".txt", ".mpg"} & IMAGE_EXTENSIONS


def test_the_metadata_csv_is_not_reported_as_a_non_image(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "metadata.csv").write_text("path,artist\na.png,Monet\n")
    (tmp_path / "labels.csv").write_text("path,artist\na.png,Manet\n")
    not_an_image = "not an image type artlab reads (.csv)"
    assert Collection.from_folder(tmp_path).ignored == [(tmp_path / "labels.csv", not_an_image)]
    other = Collection.from_folder(tmp_path, metadata=tmp_path / "labels.csv")
    assert other.labels == ["Manet"] and [p.name for p, _ in other.ignored] == ["metadata.csv"]


def test_a_folder_without_images_says_what_it_ignored(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.txt").write_text("x")
    with pytest.raises(CollectionError, match=r"no readable images.*\.jpg.*ignored 2 not an image type artlab reads "
                                              r"\(\.txt\)"):
        Collection.from_folder(tmp_path)


def test_truncated_files_are_skipped_when_loading(tmp_path):
    good = _png(tmp_path / "good.png", size=(64, 64))
    data = good.read_bytes()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "cut.png")
    cut = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(cut[: len(cut) // 2])
    col = Collection.from_folder(tmp_path)  # the header is fine: only decoding finds the damage
    batches = list(col.batches(32, batch_size=4))
    assert [idx for idx, _ in batches] == [[1]] and batches[0][1].shape == (1, 3, 32, 32)
    assert [p.name for p, _ in col.skipped] == ["cut.png"]
    assert data  # the good file is untouched


def test_metadata_csv_labels_and_report(tmp_path):
    _png(tmp_path / "images" / "1.png")
    _png(tmp_path / "images" / "2.png")
    _png(tmp_path / "images" / "3.png")
    meta = tmp_path / "artists.csv"
    with open(meta, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "artist", "style", "year"])
        w.writerow(["images/1.png", "Monet", "Impressionism", "1872"])
        w.writerow(["2.png", "Seurat", "Pointillism", "1884"])  # bare file name still matches
        w.writerow(["images/404.png", "Nobody", "", ""])
    col = Collection.from_folder(tmp_path, metadata=meta)
    assert col.labels == ["Monet", "Seurat", None]
    assert col.column("year") == ["1872", "1884", None]
    assert col.subset(style="Pointillism").labels == ["Seurat"]
    text = col.summary()
    assert "1 row(s) of artists.csv name files that are not in" in text and "404.png" in text
    assert "1 image(s) have no row in artists.csv: images/3.png" in text
    styled = Collection.from_folder(tmp_path, metadata=meta, label_column="style")
    assert styled.labels == ["Impressionism", "Pointillism", None]


def test_bad_folders_get_clear_errors(tmp_path):
    with pytest.raises(CollectionError, match="does not exist"):
        Collection.from_folder(tmp_path / "nope")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(CollectionError, match="is a file, not a folder"):
        Collection.from_folder(tmp_path / "file.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CollectionError, match="no readable images"):
        Collection.from_folder(empty)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.jpg").write_text("nope")
    with pytest.raises(CollectionError, match="1 unreadable"):
        Collection.from_folder(broken)
    bad_csv = tmp_path / "m.csv"
    bad_csv.write_text("name,artist\nx.png,Y\n")
    _png(tmp_path / "ok" / "x.png")
    with pytest.raises(CollectionError, match="no path column.*found name, artist"):
        Collection.from_folder(tmp_path / "ok", metadata=bad_csv)


def test_sample_corpus_builds_offline_deterministically(tmp_path):
    a = sample_corpus(size=48, styles=["kmeans", "slic"], photos=["coffee", "rocket"], cache_dir=tmp_path / "a",
                      progress=False)
    b = sample_corpus(size=48, styles=["kmeans", "slic"], photos=["coffee", "rocket"], cache_dir=tmp_path / "b",
                      progress=False)
    assert len(a) == 6 and sorted(set(a.labels)) == ["kmeans", "photo", "slic"]
    assert a.column("domain").count("photo") == 2 and a.column("domain").count("painting") == 4
    for pa, pb in zip(a.paths, b.paths):
        assert pa.read_bytes() == pb.read_bytes(), f"{pa.name} differs between two builds"
    img = a.load(0)
    assert img.shape == (1, 3, 48, 48)
    # painted differs from the photo it came from
    photo = a.subset(style="photo", subject="coffee").load(0)
    painted = a.subset(style="kmeans", subject="coffee").load(0)
    assert 0.001 < float((photo - painted).abs().mean()) < 0.3


def test_sample_corpus_is_cached(tmp_path, monkeypatch):
    kwargs = dict(size=40, styles=["kmeans"], photos=["coffee"], cache_dir=tmp_path, progress=False)
    first = sample_corpus(**kwargs)
    import artlab.paint

    monkeypatch.setattr(artlab.paint, "paint", lambda *a, **k: pytest.fail("cached corpus must not be repainted"))
    second = sample_corpus(**kwargs)
    assert first.paths == second.paths
    assert not list(tmp_path.glob(".corpus-*")), "no temporary build folder is left behind"


def test_sample_corpus_rejects_unknown_styles(tmp_path):
    with pytest.raises(ValueError, match="unknown styles.*valid: kmeans"):
        sample_corpus(styles=["cubism"], cache_dir=tmp_path)


def test_default_corpus_has_photos_and_four_or_more_styles(corpus):
    assert len(corpus.subset(domain="photo")) >= 5
    styles = set(corpus.labels) - {"photo"}
    assert len(styles) >= 4
    for subject in set(corpus.column("subject")):
        assert len(corpus.subset(subject=subject)) == 1 + len(styles)


def test_shared_paintings_as_a_collection(shared_data):
    col = Collection.from_folder(shared_data / "paintings")
    assert len(col) >= 70 and "van_gogh" in col.classes and len(col.classes) == 6
    batch = next(col.batches(64, batch_size=8))[1]
    assert batch.shape == (8, 3, 64, 64) and 0 <= float(batch.min()) and float(batch.max()) <= 1
