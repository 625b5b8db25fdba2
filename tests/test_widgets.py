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

    from artlab.widgets.kit import figure_widget

    fig = make_subplots(rows=1, cols=2, subplot_titles=["a", "b"])
    fig.add_heatmap(z=[[1, 2], [3, 4]], row=1, col=1)
    fig.add_scatter(y=[1, 2], row=1, col=2)
    fig.update_layout(height=300, title="t")
    edits = []
    widget = go.FigureWidget()
    widget.observe(lambda change: edits.append(change["name"]) if change["new"] else None,
                   names=["_py2js_addTraces", "_py2js_relayout", "_py2js_update"])
    reference = go.FigureWidget(fig).to_plotly_json()
    # build on a widget we observe: same steps as figure_widget, which returns a fresh one
    built = figure_widget(fig).to_plotly_json()
    for trace in reference["data"] + built["data"]:
        trace.pop("uid")
    assert built == reference
    widget.add_traces(list(fig.data))
    widget.update_layout(fig.layout.to_plotly_json())
    assert edits == ["_py2js_addTraces", "_py2js_update"]
    assert figure_widget(fig)._widget_data == [] and "height" not in figure_widget(fig)._widget_layout
