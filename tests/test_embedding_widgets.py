"""EmbeddingMap and ClassifierView, driven by setting controls and emitting plotly's events.

Plot events are sent the way the browser sends them (``FigureWidget._js2py_pointsCallback``),
so the callbacks wired to the traces are exercised, not just the methods behind them.
"""

from __future__ import annotations

import io
import threading

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from artlab.embed import classify as C
from artlab import embed as E
from artlab.embed import browse, maps
from artlab.models import backbone


BOX = {"type": "box", "selector_state": {"xrange": [-1.0, 1.0], "yrange": [-1.0, 1.0]}}


def _event(fig, kind: str, indexes, trace: int = 0, xs=None, ys=None, selector=None) -> None:
    """Emit a plotly point event as the browser would (hover, click, selected)."""
    indexes = list(indexes)
    fig._js2py_pointsCallback = {
        "event_type": f"plotly_{kind}",
        "selector": selector,
        "points": {"point_indexes": indexes, "trace_indexes": [trace] * len(indexes),
                   "xs": xs if xs is not None else [0.0] * len(indexes),
                   "ys": ys if ys is not None else [0.0] * len(indexes)},
    }


def _synthetic(n: int, dim: int = 8, seed: int = 0, classes: int = 5) -> E.Embeddings:
    """n fake images in ``classes`` well-separated clusters (paths need not exist)."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, classes, n)
    vectors = (rng.normal(size=(n, dim)) + 4 * np.eye(dim)[label % dim]).astype(np.float32)
    paths = [f"/nonexistent/art/{i:05d}_{'abcde'[label[i] % 5]}.jpg" for i in range(n)]
    meta = pd.DataFrame({"path": paths, "label": [f"class{k}" for k in label],
                         "year": 1800 + (np.arange(n) * 7) % 200, "artist": [f"artist{i % 40}" for i in range(n)]})
    return E.Embeddings(vectors=vectors, paths=paths, meta=meta, model_label="synthetic vectors", pretrained=False,
                        layer="none", pooling="mean", size=0)


@pytest.fixture(scope="module")
def corpus_emb(corpus, tmp_path_factory):
    model = backbone("tiny_vgg", weights=None)
    return E.embed(corpus, model, size=64, cache_dir=tmp_path_factory.mktemp("emb-cache"), progress=False)


@pytest.fixture(scope="module")
def emap(corpus, corpus_emb, tmp_path_factory):
    from artlab.widgets import EmbeddingMap

    m = EmbeddingMap(corpus, corpus_emb, method="pca", k=4,
                     csv_path=tmp_path_factory.mktemp("export") / "selection.csv")
    assert m.wait(60)
    return m


def _codes(m) -> np.ndarray:
    return np.asarray(m.figure.data[0].marker.color)


def test_map_has_one_point_per_image_coloured_by_label(emap, corpus_emb):
    points = emap.figure.data[0]
    assert isinstance(points, type(emap.figure.data[1])) and points.type == "scattergl"
    np.testing.assert_allclose(np.c_[points.x, points.y], E.map_points("pca", corpus_emb), rtol=1e-5, atol=1e-6)
    codes, labels = _codes(emap), corpus_emb.meta["label"].to_numpy()
    for label in set(labels):  # one colour per class, different classes different colours
        assert len(set(codes[labels == label])) == 1
    assert len(set(codes)) == len(set(labels))
    legend = [t.name for t in emap.figure.data[3:] if t.visible]
    assert sorted(name.split(" (")[0] for name in legend) == sorted(set(labels))
    assert corpus_emb.model_label in emap.figure.layout.title.text and "random weights" in emap.figure.layout.title.text
    assert emap.thumbs.ready == len(corpus_emb) and not emap.thumbs.failed


def test_colour_by_another_column_updates_the_trace_in_place(emap, corpus_emb):
    figure, points, n_traces = emap.figure, emap.figure.data[0], len(emap.figure.data)
    emap.color.value = "subject"
    assert emap.figure is figure and emap.figure.data[0] is points and len(emap.figure.data) == n_traces
    subjects = corpus_emb.meta["subject"].to_numpy()
    codes = _codes(emap)
    assert all(len(set(codes[subjects == s])) == 1 for s in set(subjects))
    assert emap.figure.layout.legend.title.text == "subject"
    emap.color.value = "label"


def test_hover_shows_the_precomputed_thumbnail(emap, corpus_emb):
    _event(emap.figure, "hover", [7])
    shown = bytes(emap.preview.value)
    assert shown == emap.thumbs.get(7)
    with Image.open(io.BytesIO(shown)) as im:
        assert max(im.size) <= emap.thumbs.side
    name = corpus_emb.paths[7].rsplit("/", 1)[-1]
    assert name in emap.preview_caption.value and corpus_emb.meta["label"][7] in emap.preview_caption.value


def test_search_selects_and_highlights_matching_points(emap, corpus_emb):
    emap.search.value = "Coffee"  # case-insensitive, path or metadata
    want = [i for i, p in enumerate(corpus_emb.paths) if "coffee" in p.lower()]
    assert len(want) == 6
    assert list(emap.figure.data[0].selectedpoints) == want
    assert list(emap.selection) == want
    assert emap.grid.value.count("<img") == 6 and emap.table.value.count("</tr>") == 7  # header + 6
    # plotly.js answers a removed outline with an empty, selector-less selection: not the user's
    _event(emap.figure, "selected", [])
    assert list(emap.figure.data[0].selectedpoints) == want and list(emap.selection) == want
    emap.search.value = ""
    assert emap.figure.data[0].selectedpoints is None and len(emap.selection) == 0
    assert emap.export_button.disabled


def test_box_selection_fills_grid_and_table_and_exports_csv(emap, corpus_emb):
    chosen = [3, 11, 20, 29]
    _event(emap.figure, "selected", chosen, selector=BOX)
    assert list(emap.selection) == chosen
    assert emap.grid.value.count("<img") == 4 and not emap.export_button.disabled
    for i in chosen:
        assert corpus_emb.paths[i].rsplit("/", 1)[-1] in emap.grid.value
    emap.export_button.click()
    saved = pd.read_csv(emap.saved)
    assert list(saved["path"]) == [corpus_emb.paths[i] for i in chosen]
    assert list(saved["label"]) == [corpus_emb.meta["label"][i] for i in chosen]
    np.testing.assert_allclose(saved[["pca_x", "pca_y"]].to_numpy(), emap.coords[chosen], rtol=1e-5)
    assert str(emap.saved) in emap.export_status.value
    emap.clear_button.click()
    assert len(emap.selection) == 0
    _event(emap.figure, "selected", chosen, selector=BOX)
    _event(emap.figure, "deselect", [])  # plotly's double-click in the plot
    assert len(emap.selection) == 0 and emap.export_button.disabled


def test_export_with_nothing_selected_says_what_to_do(emap):
    emap.clear_selection()
    with pytest.raises(ValueError, match="nothing is selected"):
        emap.export_csv()


def test_click_shows_nearest_neighbours(emap, corpus_emb):
    _event(emap.figure, "click", [5])
    want = E.nearest(corpus_emb, 5, k=4)
    assert emap.query == 5
    assert list(emap.neighbours["index"]) == list(want["index"])
    np.testing.assert_allclose(emap.neighbours["similarity"], want["similarity"])
    overlay = emap.figure.data[1]
    np.testing.assert_allclose(np.c_[overlay.x, overlay.y], emap.coords[want["index"].to_numpy()])
    np.testing.assert_allclose([emap.figure.data[2].x[0], emap.figure.data[2].y[0]], emap.coords[5])
    assert emap.neighbour_grid.value.count("<img") == 5  # the query and its 4 neighbours
    emap.k_slider.value = 6
    assert len(emap.neighbours) == 6 and len(emap.figure.data[1].x) == 6


def test_switching_projection_moves_points_in_place(emap, corpus_emb):
    points = emap.figure.data[0]
    emap.show_neighbours(2)
    emap.method.value = "tsne"
    assert emap.wait(120)
    assert emap.shown_method == "tsne" and emap.figure.data[0] is points
    tsne = E.map_points("tsne", corpus_emb, seed=0)
    np.testing.assert_allclose(np.c_[points.x, points.y], tsne, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.c_[emap.figure.data[1].x, emap.figure.data[1].y],
                               tsne[emap.neighbours["index"].to_numpy()], rtol=1e-4, atol=1e-4)
    assert "t-SNE" in emap.figure.layout.title.text
    emap.method.value = "pca"  # cached: immediate
    assert emap.shown_method == "pca"


def test_umap_opens_on_pca_and_switches_when_ready(monkeypatch, corpus, corpus_emb):
    """The compile (~17 s) and the fit run in the background; here both are stand-ins we release."""
    from artlab.widgets import embedding_map

    release, calls = threading.Event(), []
    fake_umap = np.random.default_rng(3).normal(size=(len(corpus_emb), 2))
    real_project = maps.map_points

    def warm_up():
        calls.append("warm")
        assert release.wait(30)
        return 17.0

    def project(method, data, dims=2, seed=0, **kw):
        calls.append(method)
        return fake_umap if method == "umap" else real_project(method, data, dims=dims, seed=seed, **kw)

    monkeypatch.setattr(maps, "_umap_warm", False)
    monkeypatch.setattr(maps, "warm_up_umap", warm_up)
    monkeypatch.setattr(maps, "map_points", project)
    m = embedding_map.EmbeddingMap(corpus, corpus_emb)  # method="umap", no coords
    points = m.figure.data[0]
    assert m.shown_method == "pca" and "compiles for ~17 s" in m.status.value
    np.testing.assert_allclose(np.c_[points.x, points.y], real_project("pca", corpus_emb), rtol=1e-5, atol=1e-6)
    assert "until UMAP is ready" in m.figure.layout.title.text
    release.set()
    assert m.wait(30)
    assert calls[:3] == ["pca", "warm", "umap"]
    assert m.shown_method == "umap" and m.figure.data[0] is points
    np.testing.assert_allclose(np.c_[points.x, points.y], fake_umap)
    assert "UMAP ready" in m.status.value and "until" not in m.figure.layout.title.text
    # once compiled in this kernel, the next map does not warm up again
    calls.clear()
    m2 = embedding_map.EmbeddingMap(corpus, corpus_emb, thumbnails=m.thumbs)
    assert m2.wait(30) and calls == ["pca", "umap"] and "compiles" not in m2.status.value


def test_a_cached_layout_opens_at_once_without_fitting(monkeypatch, corpus, corpus_emb, emap, tmp_path):
    """What a relaunch of the curator app does: the UMAP layout of the same vectors is read from the layout
    cache, shown at once (no PCA first, no status about waiting), and umap is neither compiled nor fitted."""
    from artlab.widgets import embedding_map

    fits, fake = [], np.random.default_rng(5).normal(size=(len(corpus_emb), 2))
    monkeypatch.setattr(maps, "compile_umap", lambda: fits.append("compile") or False)
    monkeypatch.setattr(maps, "map_points", lambda method, *a, **k: fits.append(method) or fake)
    first = embedding_map.EmbeddingMap(corpus, corpus_emb, thumbnails=emap.thumbs, layout_cache=tmp_path)
    assert first.wait(30) and first.shown_method == "umap" and fits == ["pca", "compile", "umap"]
    fits.clear()
    again = embedding_map.EmbeddingMap(corpus, corpus_emb, thumbnails=emap.thumbs, layout_cache=tmp_path)
    assert again.shown_method == "umap" and fits == [] and not again._pending
    np.testing.assert_allclose(np.c_[again.figure.data[0].x, again.figure.data[0].y], fake, rtol=1e-6)
    assert "until" not in again.figure.layout.title.text and "UMAP" not in again.status.value
    other_seed = embedding_map.EmbeddingMap(corpus, corpus_emb, thumbnails=emap.thumbs, layout_cache=tmp_path,
                                            seed=1)
    assert other_seed.wait(30) and fits == ["pca", "compile", "umap"]  # another map: fitted, not read


def test_words_for_curators_levels_to_colour_by_and_neighbour_scores(emap, corpus_emb):
    """The main view speaks plainly: no layer or pooling in the title, a layout menu in words, folder levels
    named as such, and neighbours scored by the share of the collection they are closer than."""
    title = emap.figure.layout.title.text
    assert corpus_emb.layer not in title and corpus_emb.pooling not in title
    assert ("by similarity (UMAP)", "umap") in emap.method.options
    assert ("folder level 1", "folder_1") in emap.color.options  # the sample corpus's style folders
    page = " ".join(getattr(w, "value", "") for w in emap.children if isinstance(getattr(w, "value", None), str))
    assert "cosine" not in page and "embedding space" not in page and "Most alike" in page
    _event(emap.figure, "click", [5])
    grid = emap.neighbour_grid.value
    want = E.nearest(corpus_emb, 5, k=emap.k_slider.value)
    assert f"#1 · closer than {want['closer_than'].iloc[0]:.0f}% of the others" in grid
    assert "closer than 100% of the others" in grid  # the nearest is closer than every other image


def test_an_empty_folder_level_is_coloured_as_none_not_as_a_blank_name():
    emb = _synthetic(6)
    emb.meta["folder_2"] = ["van_gogh", "van_gogh", "monet", "", "", None]  # files at another depth: ""
    colouring = browse.MapTable(emb).colouring("folder_2")
    assert dict(zip(colouring.names, colouring.sizes)) == {"(none)": 3, "van_gogh": 2, "monet": 1}


def test_the_hovered_slot_never_shows_an_empty_image():
    """An empty ipywidgets Image is a broken-image icon in the browser: the slot shows a neutral box until a
    picture is there, and again when a hovered image has no preview."""
    from artlab.widgets import EmbeddingMap

    emb = _synthetic(30)  # paths that do not exist: no preview can be made
    m = EmbeddingMap(None, emb, method="pca")
    assert m.preview.layout.display == "none" and m.preview_placeholder.layout.display != "none"
    assert m.wait(30)
    _event(m.figure, "hover", [3])
    assert m.preview.layout.display == "none" and m.preview_placeholder.layout.display != "none"
    assert "preview unavailable" in m.preview_caption.value
    m.thumbs.get = lambda i: b"\xff\xd8jpeg"  # now a picture is there
    _event(m.figure, "hover", [4])
    assert m.preview.layout.display != "none" and m.preview_placeholder.layout.display == "none"
    assert bytes(m.preview.value) == b"\xff\xd8jpeg"


def test_twenty_thousand_points_no_per_point_work_on_hover(monkeypatch):
    from artlab.widgets import embedding_map, thumbnails

    made = []

    def fake_thumbnail(path, side=96, quality=80):
        made.append(path)
        return b"\xff\xd8thumb:" + path.encode()

    nearest_calls = []
    monkeypatch.setattr(thumbnails, "thumbnail_bytes", fake_thumbnail)
    monkeypatch.setattr(browse, "nearest", lambda *a, **k: nearest_calls.append(a) or pd.DataFrame())
    n = 20_000
    emb = _synthetic(n)
    coords = np.random.default_rng(1).normal(size=(n, 2))
    m = embedding_map.EmbeddingMap(None, emb, coords=coords, color_by="artist")
    assert m.wait(60)
    assert len(made) == n and len(set(made)) == n, "each thumbnail is made exactly once, up front"
    assert not nearest_calls
    fig = m.figure
    assert len(fig.data) == 3 + embedding_map.MAX_COLOURS and len(fig.data[0].x) == n
    assert fig.data[0].type == "scattergl"
    made.clear()
    for i in np.random.default_rng(2).integers(0, n, 200):
        _event(fig, "hover", [int(i)])
        assert bytes(m.preview.value) == b"\xff\xd8thumb:" + emb.paths[i].encode()
    assert made == [], "hovering made no thumbnail: a lookup only"
    # recolouring and searching touch trace properties only, never add traces
    m.color.value = "year"  # numeric with many values: a colour bar
    assert fig.data[0].marker.showscale and np.asarray(fig.data[0].marker.color)[:3].tolist() == [1800, 1807, 1814]
    m.search.value = "artist7"
    want = [i for i in range(n) if f"artist{i % 40}".startswith("artist7")]
    assert list(fig.data[0].selectedpoints) == want
    assert m.grid.value.count('class="artlab-thumb"') == m.grid_max and f"of {len(want):,}" in m.grid.value
    assert len(fig.data) == 3 + embedding_map.MAX_COLOURS and made == []


def test_many_categories_lump_the_rarest_as_other():
    from artlab.widgets import EmbeddingMap
    from artlab.widgets.embedding_map import MAX_COLOURS

    emb = _synthetic(400)
    emb.meta["artist"] = [f"a{i % 30}" for i in range(400)]
    m = EmbeddingMap(None, emb, coords=np.zeros((400, 2)), color_by="artist", thumbnails=[b"\xff\xd8"] * 400)
    legend = [t.name for t in m.figure.data[3:] if t.visible]
    assert len(legend) == MAX_COLOURS and legend[-1].startswith("other (7 values)")
    assert set(_codes(m)) == set(range(MAX_COLOURS))


def test_three_dimensional_map(corpus, corpus_emb):
    from artlab.widgets import EmbeddingMap

    m = EmbeddingMap(corpus, corpus_emb, method="pca", dims=3)
    assert m.figure.data[0].type == "scatter3d"
    np.testing.assert_allclose(np.c_[m.figure.data[0].x, m.figure.data[0].y, m.figure.data[0].z],
                               E.map_points("pca", corpus_emb, dims=3), rtol=1e-5, atol=1e-6)
    m.show_neighbours(0)
    assert len(m.figure.data[1].z) == m.k_slider.value
    m.search.value = "coffee"  # no selectedpoints in 3-D: the matches are drawn larger
    sizes = np.asarray(m.figure.data[0].marker.size)
    coffee = np.array(["coffee" in p for p in corpus_emb.paths])
    assert len(m.selection) == 6 and sizes[coffee].min() > sizes[~coffee].max()
    m.search.value = ""
    assert np.isscalar(m.figure.data[0].marker.size)
    m.thumbs.stop()


def test_bad_inputs_get_clear_errors(corpus, corpus_emb):
    from artlab.data import Collection
    from artlab.widgets import EmbeddingMap

    with pytest.raises(ValueError, match=r"coords has shape \(36, 3\); expected \(36, 2\)"):
        EmbeddingMap(corpus, corpus_emb, coords=np.zeros((36, 3)))
    with pytest.raises(ValueError, match="color_by='artist' is not a metadata column; choose one of label"):
        EmbeddingMap(corpus, corpus_emb, coords=np.zeros((36, 2)), color_by="artist")
    with pytest.raises(TypeError, match="artlab.embed.Embeddings"):
        EmbeddingMap(corpus, np.zeros((36, 4)))
    with pytest.raises(ValueError, match="method='umap3d'"):
        EmbeddingMap(corpus, corpus_emb, method="umap3d")
    other = Collection(corpus.items[:10], corpus.root, "ten")
    with pytest.raises(ValueError, match="26 of the 36 embedded images are not in the collection"):
        EmbeddingMap(other, corpus_emb, coords=np.zeros((36, 2)))
    with pytest.raises(ValueError, match="thumbnails has 3 entries for 36 images"):
        EmbeddingMap(corpus, corpus_emb, coords=np.zeros((36, 2)), thumbnails=[b"x"] * 3)


def test_unreadable_images_get_a_placeholder_not_an_error(tmp_path):
    from artlab.widgets.thumbnails import ThumbnailStore, thumbnail_grid_html

    good = tmp_path / "good.png"
    Image.new("RGBA", (300, 200), (200, 10, 10, 128)).save(good)  # alpha: the careful path
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    store = ThumbnailStore([good, bad], side=64)
    store.start()
    assert store.wait(30)
    with Image.open(io.BytesIO(store.get(0))) as im:
        assert im.size == (64, 43)
    assert store.get(1) is None and 1 in store.failed
    html = thumbnail_grid_html(store, [0, 1])
    assert html.count("<img") == 1 and "unreadable" in html


# ---------------------------------------------------------------------------------------------- ClassifierView
@pytest.fixture(scope="module")
def probe(corpus_emb):
    return C.linear_probe(corpus_emb, folds=3)


@pytest.fixture(scope="module")
def view(probe, corpus_emb, corpus, emap):
    from artlab.widgets import ClassifierView

    return ClassifierView(probe, corpus_emb, corpus, thumbnails=emap.thumbs)


def test_confusion_heatmap_shows_the_probe(view, probe):
    np.testing.assert_array_equal(np.asarray(view.heatmap.data[0].z), probe.confusion)
    assert list(view.heatmap.data[0].x) == list(view.heatmap.data[0].y) == probe.classes
    assert f"{probe.accuracy:.1%}" in view.report.value and f"{probe.balanced_accuracy:.1%}" in view.report.value
    assert "precision" in view.report.value and "recall" in view.report.value
    assert probe.model_label in view.heatmap.layout.title.text


def test_every_cell_lists_exactly_its_images(view, probe):
    for r, true in enumerate(probe.classes):
        for c, predicted in enumerate(probe.classes):
            cell = view.images_in_cell(true, predicted)
            assert len(cell) == probe.confusion[r, c]
            assert all(probe.labels[i] == true and probe.predictions[i] == predicted for i in cell)


def test_clicking_a_cell_shows_its_images_with_paths(view, probe, corpus_emb):
    true, predicted = probe.classes[2], probe.classes[0]
    _event(view.heatmap, "click", [[2, 0]], xs=[predicted], ys=[true])
    assert view.cell == (true, predicted)
    assert (view.true_class.value, view.predicted_class.value) == (true, predicted)
    want = view.images_in_cell(true, predicted)
    assert view.shown == want
    assert view.grid.value.count("<img") == len(want)
    for i in want:
        assert corpus_emb.paths[i] in view.grid.value
    shape = view.heatmap.layout.shapes[0]
    assert (shape.x0, shape.y0) == (-0.5, 1.5)
    kind = "correctly classified" if true == predicted else "misclassified"
    assert f"<b>{len(want)}</b>" in view.cell_title.value and kind in view.cell_title.value


def test_row_percent_scale(view, probe):
    view.scale.value = "row %"
    z = np.asarray(view.heatmap.data[0].z)
    rows = probe.confusion.sum(axis=1) > 0
    np.testing.assert_allclose(z[rows].sum(axis=1), 100)
    assert view.heatmap.data[0].text[0][0].endswith("%") and "row %" in view.heatmap.layout.title.text
    view.scale.value = "counts"
    np.testing.assert_array_equal(np.asarray(view.heatmap.data[0].z), probe.confusion)


def test_classifier_report_is_a_readable_table(view, probe):
    """Issue 15: pandas' to_html packed the report's cells edge to edge. Every cell is padded and kept on one
    line, numbers right-aligned, class names left-aligned; support is a count; the accuracy row shows the
    accuracy once (under f1-score, as scikit-learn's text report does) and the number of images."""
    import re

    from artlab.widgets.classifier_view import report_table_html

    table = view.report.value[view.report.value.index("<table"):]
    cells = re.findall(r"<t([dh]) style=\"([^\"]*)\">([^<]*)</t[dh]>", table)
    assert cells and all("padding:3px 10px" in style and "white-space:nowrap" in style for _, style, _ in cells)
    numbers = [(style, text) for kind, style, text in cells if kind == "d" and text]
    assert numbers and all("text-align:right" in style and re.fullmatch(r"\d+(\.\d\d)?", text)
                           for style, text in numbers)
    names = [text for kind, style, text in cells if kind == "h" and "text-align:left" in style]
    assert names[: len(probe.classes)] == probe.classes
    n = int(probe.report["support"].max())
    row = re.search(r"<th[^>]*>accuracy</th>((?:<td[^>]*>[^<]*</td>)+)", table).group(1)
    assert re.findall(r">([^<]*)</td>", row) == ["", "", f"{probe.accuracy:.2f}", str(n)]
    assert "border-top" in table.split(">accuracy<")[0].rsplit("<tr", 1)[1], "a rule above the averages"
    odd = report_table_html(pd.DataFrame({"precision": [0.5], "support": [3.0]}, index=["<b>x</b>"]))
    assert "&lt;b&gt;x&lt;/b&gt;" in odd and ">3<" in odd


def test_confusion_plot_has_a_width_of_its_own(view, probe):
    """Sized by the page, the plot was drawn wider than its box beside the report and lost its last column;
    now it has a width for its classes, and a narrow page wraps the report under it."""
    k = len(probe.classes)
    assert view.heatmap.layout.width >= 60 * k + 190 - 1
    row = next(w for w in view.children if getattr(w, "children", None) and view.report in w.children)
    assert row.layout.flex_flow == "row wrap" and row.children[0].layout.flex == "0 0 auto"


def test_classifier_view_rejects_mismatched_inputs(probe, corpus_emb):
    from artlab.widgets import ClassifierView

    with pytest.raises(ValueError, match="other embeddings"):
        ClassifierView(probe, corpus_emb.subset(range(30)), thumbnails=[None] * 30)
    with pytest.raises(TypeError, match="linear_probe"):
        ClassifierView(object(), corpus_emb, thumbnails=[None] * 36)


def test_export_of_names_that_are_not_utf8(tmp_path):
    """A selection holding a file name with undecodable bytes exports (the byte as \\xNN, as
    Embeddings.save_csv writes it) instead of crashing with UnicodeEncodeError."""
    import codecs
    import os

    from artlab.embed.embeddings import write_csv as _write_csv

    raw = b"/data/caf\xe9.png"
    frame = pd.DataFrame({"path": [os.fsdecode(raw), "/data/plain.png"], "label": ["a", "b"]})
    out = _write_csv(frame, tmp_path / "sel.csv")
    back = pd.read_csv(out, encoding="utf-8")
    assert list(back["path"]) == ["/data/caf\\xe9.png", "/data/plain.png"]
    assert os.fsencode(os.fsdecode(codecs.escape_decode(back["path"][0].encode())[0])) == raw
