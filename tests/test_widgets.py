"""Widgets, driven by setting their controls (the browser tests drive them for real)."""

from __future__ import annotations

import pytest
import torch

from artlab.models import backbone


def _images():
    g = torch.Generator().manual_seed(0)
    return {"painting": torch.rand(1, 3, 48, 48, generator=g), "photo": torch.rand(1, 3, 48, 48, generator=g)}


@pytest.fixture(scope="module")
def viewer():
    """The ActivationExplorer in the mosaic look (what FeatureMapViewer was)."""
    from artlab.widgets import ActivationExplorer

    model = backbone("tiny_vgg", weights=None)
    return ActivationExplorer(model, _images(), layers=["relu1_1", "relu3_1", "relu5_1"], look="mosaic", k=4,
                              page_size=32)


def test_viewer_starts_with_rendered_maps(viewer):
    assert viewer.layer.value == "relu1_1"
    for name in ("painting", "photo"):
        assert bytes(viewer.views[name].value).startswith(b"\x89PNG")
        assert "relu1_1: 8 channels, 48×48" in viewer.captions[name].value


def test_changing_the_layer_updates_the_maps_in_place(viewer):
    view = viewer.views["painting"]
    before = view.value
    viewer.layer.value = "relu3_1"
    assert viewer.views["painting"] is view, "the image widget is updated, not replaced"
    assert view.value != before
    assert "relu3_1: 24 channels, 12×12" in viewer.captions["painting"].value
    viewer.layer.value = "relu1_1"


def test_channel_order_and_count(viewer):
    viewer.layer.value = "relu5_1"
    viewer.mode.value = "first"
    viewer.k.value = 3
    assert viewer.channels(1) == [0, 1, 2]
    viewer.mode.value = "own"
    act = viewer.activation(1, "relu5_1")[0].flatten(1).mean(1)
    assert viewer.channels(1) == torch.topk(act, 3).indices.tolist()
    viewer.k.value = 99  # more than the layer has: clipped, not an error
    assert len(viewer.channels(1)) == 32


def test_random_weights_are_flagged(viewer):
    badge = viewer.children[-1].value
    assert "random weights" in badge and "tiny_vgg · random init" in badge


def test_viewer_refuses_bad_input():
    from artlab.widgets import ActivationExplorer

    model = backbone("tiny_vgg", weights=None)
    with pytest.raises(ValueError, match="at least one image"):
        ActivationExplorer(model, {}, look="mosaic")
    with pytest.raises(ValueError, match="no layer 'relu9_1'"):
        ActivationExplorer(model, {"a": torch.rand(1, 3, 32, 32)}, layers=["relu9_1"], look="mosaic")


def test_feature_map_viewer_is_a_deprecated_mosaic_explorer():
    """FeatureMapViewer (one release more): warns, and builds the ActivationExplorer in the look it had."""
    from artlab.widgets import ActivationExplorer, FeatureMapViewer

    model = backbone("tiny_vgg", weights=None)
    with pytest.warns(DeprecationWarning, match="ActivationExplorer"):
        old = FeatureMapViewer(model, _images(), channels=3)
    assert isinstance(old, ActivationExplorer) and old.look == "mosaic"
    assert old.layers == list(model.spec.style_layers), "its own default layers: the style layers"
    assert old.count is old.k and old.k.value == 3 and old.k.max == 8  # relu1_1 of tiny_vgg: 8 channels
    assert old.mode.value == "own" and old.channels_for("photo") == old.channels(1)
    assert "relu1_1: 8 channels, 48×48 · showing [" in old.captions["photo"].value
    assert bytes(old.views["painting"].value).startswith(b"\x89PNG")


def test_figures_top_channels_is_a_deprecated_alias():
    from artlab import figures

    act = torch.zeros(1, 6, 4, 4)
    act[0, 4] += 2.0
    act[0, 1] += 1.0
    assert figures.most_active_channels(act, 2) == [4, 1]
    with pytest.warns(DeprecationWarning, match="most_active_channels"):
        assert figures.top_channels(act, 2) == [4, 1]


def test_figure_widget_sends_the_figure_as_edits():
    """artlab.widgets.kit.figure_widget: the same figure as go.FigureWidget(fig), but none of it in the
    whole-figure state (which a view rendered early never redraws from): traces and layout go as
    addTraces/update edits, which every view applies whenever it renders."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from artlab.widgets.kit import MODEBAR_BAND, figure_widget

    fig = make_subplots(rows=1, cols=2, subplot_titles=["a", "b"])
    fig.add_heatmap(z=[[1, 2], [3, 4]], row=1, col=1)
    fig.add_scatter(y=[1, 2], row=1, col=2)
    fig.update_layout(height=300, title="t")
    edits = []
    widget = go.FigureWidget()
    widget.observe(lambda change: edits.append(change["name"]) if change["new"] else None,
                   names=["_py2js_addTraces", "_py2js_relayout", "_py2js_update"])
    reference = go.FigureWidget(fig)
    # ... plus the band for plotly's toolbar above the title (figure_widget's own layout)
    reference.update_layout(margin_t=100 + MODEBAR_BAND, height=300 + MODEBAR_BAND, title_yref="container",
                            title_y=1, title_yanchor="top", title_pad_t=MODEBAR_BAND)
    reference = reference.to_plotly_json()
    # build on a widget we observe: same steps as figure_widget, which returns a fresh one
    built = figure_widget(fig).to_plotly_json()
    for trace in reference["data"] + built["data"]:
        trace.pop("uid")
    assert built == reference
    widget.add_traces(list(fig.data))
    widget.update_layout(fig.layout.to_plotly_json())
    assert edits == ["_py2js_addTraces", "_py2js_update"]
    assert figure_widget(fig)._widget_data == [] and "height" not in figure_widget(fig)._widget_layout


# ---------------------------------------------------------------------------------------------- polish (issue 15)


def _synthetic_embeddings(n: int = 40, classes: int = 4):
    """n fake images in well-separated clusters (paths need not exist: thumbnails are passed)."""
    import numpy as np
    import pandas as pd

    from artlab.embed import Embeddings

    rng = np.random.default_rng(0)
    label = np.arange(n) % classes
    vectors = (rng.normal(size=(n, 8)) + 4 * np.eye(8)[label]).astype(np.float32)
    paths = [f"/nonexistent/{i:03d}.jpg" for i in range(n)]
    meta = pd.DataFrame({"path": paths, "label": [f"class{k}" for k in label]})
    return Embeddings(vectors=vectors, paths=paths, meta=meta, model_label="synthetic vectors", pretrained=False,
                      layer="none", pooling="mean", size=0)


def _widget_builders(tmp_path, corpus):
    """How to build each public widget class small: {class name: () -> widget}."""
    import numpy as np

    from artlab.data import Collection, Item
    from artlab.embed import linear_probe
    from artlab.images import save_image
    from artlab.stylegan import tiny_generator
    from artlab.stylegan.generate import generate
    from artlab import widgets

    vgg = backbone("tiny_vgg", weights=None)
    a, b = _images().values()
    emb = _synthetic_embeddings()
    thumbs = [b"\xff\xd8"] * len(emb.paths)
    g = torch.Generator().manual_seed(0)
    items = [Item(save_image(torch.rand(1, 3, 32, 32, generator=g), tmp_path / "atlas" / f"{d}-{i}.png"), d,
                  {"domain": d}) for i in range(3) for d in ("painting", "photo")]
    G = tiny_generator(c_dim=2, resolution=32)

    def distance(x, y):  # a stand-in perceptual distance (no LPIPS network)
        return ((x - y) ** 2).flatten(1).mean(dim=1)

    distance.label, distance.pretrained = "pixel MSE (test stand-in)", False

    def curator():
        folder = tmp_path / "curated"
        for item in list(corpus.items)[:6]:
            (folder / str(item.label)).mkdir(parents=True, exist_ok=True)
            (folder / str(item.label) / item.path.name).write_bytes(item.path.read_bytes())
        app = widgets.CuratorApp(folder, model="tiny_vgg", size=32, batch_size=6, cache_dir=tmp_path / "cache",
                                 csv_path=tmp_path / "sel.csv", map_options={"method": "pca"}, start=False,
                                 warm_up=False)
        app.load()
        app.compute()
        app.show_map()
        return app

    return {
        "ActivationExplorer": lambda: widgets.ActivationExplorer(vgg, a, b, layers=["relu1_1", "relu3_1"]),
        "FeatureMapViewer": lambda: widgets.FeatureMapViewer(vgg, {"a": a, "b": b}, ["relu1_1"], channels=2),
        "GramInspector": lambda: widgets.GramInspector(vgg, a, b, block=8),
        "ClassifierView": lambda: widgets.ClassifierView(linear_probe(emb, folds=2), emb, thumbnails=thumbs),
        "EmbeddingMap": lambda: widgets.EmbeddingMap(None, emb, coords=np.zeros((len(emb.paths), 2)),
                                                     thumbnails=thumbs),
        "CuratorApp": curator,
        "DomainShiftView": lambda: widgets.DomainShiftView(
            torch.rand(6, 3, 32, 32, generator=g), torch.rand(6, 3, 32, 32, generator=g) * 0.5, vgg,
            layers=["relu1_1", "relu2_1"], size=32, n_boot=5, n_perm=5, progress=False, channels=1, examples=1),
        "NeuronAtlas": lambda: widgets.NeuronAtlas(vgg, Collection(items, tmp_path / "atlas"), layer="relu3_1",
                                                   size=32, vis_size=16, steps=8, examples=2,
                                                   output_dir=str(tmp_path / "out")),
        "ProjectionView": lambda: widgets.ProjectionView(G, generate(G, seeds=[1], c=1), perceptual=distance,
                                                         n_w_samples=64, output_dir=tmp_path / "out"),
        "LatentExplorer": lambda: widgets.LatentExplorer(G, seed=1, frames=2, output_dir=tmp_path / "out"),
        "TransferLab": lambda: widgets.TransferLab(a, b, vgg, output_dir=tmp_path / "out"),
    }


def _walk(widget):
    """``widget`` and every widget below it (children of boxes)."""
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def test_every_widget_figure_is_private_and_titled_below_the_toolbar(tmp_path, corpus, monkeypatch, recwarn):
    """No figure artlab shows offers plotly's "Share chart…" button (an upload of the figure and its data to
    Plotly's cloud) or a plotly.js server to send it to: every FigureWidget of every public widget carries
    FIGURE_CONFIG from the first message that opens it to the page, and no later message changes that.
    And every figure keeps the toolbar's band above its title."""
    import ipywidgets
    import plotly.graph_objects as go

    from artlab import widgets
    from artlab.widgets.kit import FIGURE_CONFIG, MODEBAR_BAND

    widget_module = ipywidgets.widgets.widget
    opened, updates = [], []
    create = widget_module.comm.create_comm

    def recording_create(**kwargs):
        state = kwargs.get("data", {}).get("state", {})
        if state.get("_model_name") == "AnyModel" and "_widget_data" in state:  # a plotly FigureWidget
            opened.append(state.get("_config"))
        return create(**kwargs)

    send = ipywidgets.Widget._send

    def recording_send(self, msg, buffers=None):
        if isinstance(self, go.FigureWidget) and "_config" in msg.get("state", {}):
            updates.append(msg["state"]["_config"])
        return send(self, msg, buffers)

    monkeypatch.setattr(widget_module.comm, "create_comm", recording_create)
    monkeypatch.setattr(ipywidgets.Widget, "_send", recording_send)

    builders = _widget_builders(tmp_path, corpus)
    assert sorted(builders) == sorted(widgets.__all__), "a public widget class without a builder here"
    figures = {}
    for name, build in builders.items():
        widget = build()
        figures[name] = [w for w in _walk(widget) if isinstance(w, go.FigureWidget)]
    for name in ("ActivationExplorer", "GramInspector", "ClassifierView", "EmbeddingMap", "CuratorApp",
                 "DomainShiftView", "NeuronAtlas", "ProjectionView", "TransferLab"):
        assert figures[name], f"{name} shows no plotly figure any more: update this test"
    shown = [fig for found in figures.values() for fig in found]
    for fig in shown:
        assert fig._config["showSendToCloud"] is False and fig._config["plotlyServerURL"] == ""
        assert fig._config["displaylogo"] is False and "sendChartToCloud" in fig._config["modeBarButtonsToRemove"]
        title = fig.layout.title
        assert title.yref == "container" and title.yanchor == "top" and title.pad.t >= MODEBAR_BAND
        assert fig.layout.margin.t >= MODEBAR_BAND + 30, "room for the toolbar band and a title line"
    assert len(opened) >= len(shown) and all(config == FIGURE_CONFIG for config in opened), opened
    assert all(config.get("showSendToCloud") is False and config.get("plotlyServerURL") == ""
               for config in updates), updates


def test_a_config_set_later_cannot_bring_the_cloud_button_back():
    from artlab.widgets.kit import PrivateFigureWidget

    fig = PrivateFigureWidget()
    fig._config = {"showSendToCloud": True, "plotlyServerURL": "https://cloud.plotly.com/newchart",
                   "modeBarButtonsToRemove": ["lasso2d"], "scrollZoom": True}
    assert fig._config["showSendToCloud"] is False and fig._config["plotlyServerURL"] == ""
    assert fig._config["scrollZoom"] is True, "other settings pass through"
    assert fig._config["modeBarButtonsToRemove"] == ["lasso2d", "sendChartToCloud"]


def test_titles_set_later_stay_below_the_toolbar():
    """A widget that sets its title's text after building keeps the band (assigning a whole title would not)."""
    from artlab.widgets import GramInspector
    from artlab.widgets.kit import MODEBAR_BAND

    a, b = _images().values()
    inspector = GramInspector(backbone("tiny_vgg", weights=None), a, b, block=8)
    inspector.layer.value = "relu3_1"
    for fig in (inspector.heatmaps, inspector.bars):
        assert fig.layout.title.text.startswith(("relu3_1", "style distance"))
        assert fig.layout.title.pad.t == MODEBAR_BAND and fig.layout.title.yref == "container"


def test_empty_image_slots_show_a_placeholder_not_a_broken_image():
    """An ipywidgets Image with no picture is an <img> of an empty blob: the browser's broken-image icon.
    png_image() slots show a light-grey placeholder until they get a picture (and hide while empty
    when they have no width of their own, where the placeholder would stretch across the page)."""
    from PIL import Image as PILImage
    import io

    from artlab.images import to_png_bytes
    from artlab.widgets.kit import EMPTY_CLASS, ImageSlot, placeholder_bytes, png_image

    sized, free = png_image(width="200px"), png_image()
    for slot in (sized, free):
        assert len(slot.value) > 0 and not slot.filled and EMPTY_CLASS in slot._dom_classes
        assert PILImage.open(io.BytesIO(bytes(slot.value))).size == (1, 1)
    assert sized.layout.display is None and free.layout.display == "none"

    picture = to_png_bytes(torch.rand(1, 3, 8, 8))
    for slot in (sized, free):
        slot.value = picture
        assert slot.filled and EMPTY_CLASS not in slot._dom_classes and slot.layout.display is None
        slot.clear()
        assert not slot.filled and bytes(slot.value) == placeholder_bytes("png")
    assert free.layout.display == "none" and sized.layout.display is None

    owner_hidden = png_image(width="100px")
    owner_hidden.layout.display = "none"  # a widget hiding a slot keeps it hidden when it fills
    owner_hidden.value = picture
    assert owner_hidden.layout.display == "none"

    jpeg = ImageSlot(format="jpeg")
    assert bytes(jpeg.value)[:2] == b"\xff\xd8" and not jpeg.filled
    assert ImageSlot(format="url").value.tobytes().startswith(b"data:image/png;base64,")
    with pytest.raises(ValueError, match="png, jpeg"):
        placeholder_bytes("tiff")


def test_the_mosaic_columns_have_a_gutter():
    """The images' columns in the mosaic look: side by side, the painting's mosaic ran into the photo's."""
    from artlab.widgets import ActivationExplorer

    explorer = ActivationExplorer(backbone("tiny_vgg", weights=None), _images(), layers=["relu1_1"], look="mosaic")
    row = next(w for w in explorer.children if isinstance(w, __import__("ipywidgets").HBox)
               and all(hasattr(c, "children") for c in w.children) and len(w.children) == 2
               and any(c is explorer.views["painting"] for c in w.children[0].children))
    assert all(column.layout.margin and column.layout.margin.split()[1] != "0" for column in row.children)
