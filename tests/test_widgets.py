"""Widgets, driven by setting their controls (the browser tests drive them for real)."""

from __future__ import annotations

import pytest
import torch

from artlab.models import backbone


@pytest.fixture(scope="module")
def viewer():
    from artlab.widgets import FeatureMapViewer

    model = backbone("tiny_vgg", weights=None)
    g = torch.Generator().manual_seed(0)
    images = {"painting": torch.rand(1, 3, 48, 48, generator=g), "photo": torch.rand(1, 3, 48, 48, generator=g)}
    return FeatureMapViewer(model, images, layers=["relu1_1", "relu3_1", "relu5_1"], channels=4)


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
    viewer.order.value = "first"
    viewer.count.value = 3
    assert viewer.channels_for("photo") == [0, 1, 2]
    viewer.order.value = "most active"
    act = viewer._acts["photo"]["relu5_1"][0].flatten(1).mean(1)
    assert viewer.channels_for("photo") == torch.topk(act, 3).indices.tolist()
    viewer.count.value = 99  # more than the layer has: clipped, not an error
    assert len(viewer.channels_for("photo")) == 32


def test_random_weights_are_flagged(viewer):
    badge = viewer.children[-1].value
    assert "random weights" in badge and "tiny_vgg · random init" in badge


def test_viewer_refuses_bad_input():
    from artlab.widgets import FeatureMapViewer

    model = backbone("tiny_vgg", weights=None)
    with pytest.raises(ValueError, match="at least one image"):
        FeatureMapViewer(model, {})
    with pytest.raises(ValueError, match="no layer 'relu9_1'"):
        FeatureMapViewer(model, {"a": torch.rand(1, 3, 32, 32)}, layers=["relu9_1"])


def test_figure_widget_sends_the_figure_as_edits():
    """widgets._common.figure_widget: the same figure as go.FigureWidget(fig), but none of it in the
    whole-figure state (which a view rendered early never redraws from): traces and layout go as
    addTraces/update edits, which every view applies whenever it renders."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from widgets._common import figure_widget

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
