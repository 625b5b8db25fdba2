"""ActivationExplorer and DomainShiftView, driven by setting their controls and asserting on figure data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from artlab.models import backbone


def _click(figure, trace_index: int, point, x=0, y=0) -> None:
    """Deliver a plotly click on ``trace_index`` the way the browser does (the FigureWidget's JS message).

    ``point``: the point's index, an int for a scatter and [row, column] for a heatmap, as plotly.js sends it.
    """
    figure._handler_js2py_pointsCallback({"new": {
        "event_type": "plotly_click",
        "points": {"xs": [x], "ys": [y], "point_indexes": [point], "trace_indexes": [trace_index]},
        "device_state": None, "selector": None,
    }})


def _forward_counter(model) -> list[int]:
    calls = [0]

    def count(_module, _inputs):
        calls[0] += 1

    model.register_forward_pre_hook(count)
    return calls


# ---------------------------------------------------------------------------- ActivationExplorer


@pytest.fixture(scope="module")
def vgg():
    return backbone("tiny_vgg", weights=None)


@pytest.fixture(scope="module")
def pair():
    g = torch.Generator().manual_seed(0)
    painting = torch.rand(1, 3, 64, 64, generator=g)
    photo = torch.rand(1, 3, 64, 64, generator=g) * 0.6  # a dimmer image: activations differ
    return painting, photo


@pytest.fixture(scope="module")
def explorer(vgg, pair):
    from artlab.widgets import ActivationExplorer

    calls = _forward_counter(vgg)
    widget = ActivationExplorer(vgg, *pair, layers=["relu1_1", "relu2_1", "relu3_1", "relu5_1"], k=5)
    widget.forwards_at_start = calls[0]
    widget.forward_calls = calls
    return widget


def _act(explorer, which, layer=None):
    return explorer.activation(which, layer)[0].detach().float()


def _restore(explorer):
    explorer.layer.value = "relu1_1"
    explorer.mode.value = "pages"
    explorer.page.value = 1
    explorer.scale.value = "map"
    explorer.rank_by.value = "mean"


def test_explorer_starts_with_both_grids_and_the_badge(explorer):
    assert explorer.layer.value == "relu1_1" and explorer.mode.value == "pages"
    assert explorer.forwards_at_start == 2, "one forward per image for all offered layers"
    # relu1_1 of tiny_vgg has 8 channels: 8 tiles per image shown, the other slots of the page hidden
    assert [t.visible for t in explorer.grid.data[:16]] == [True] * 8 + [False] * 8
    for which in (0, 1):
        tiles = explorer.tile_maps(which)
        assert len(tiles) == 8
        assert tiles[0].shape == (48, 48), "64×64 maps are shown at the tile size (48 px)"
        expected = F.adaptive_avg_pool2d(_act(explorer, which)[None, 3:4], (48, 48))[0, 0].numpy()
        np.testing.assert_allclose(tiles[3], expected, rtol=1e-5, atol=1e-6)
    assert "relu1_1" in explorer.grid.layout.title.text and "page 1/1" in explorer.grid.layout.title.text
    badge = explorer.children[0].value
    assert "random weights" in badge and "tiny_vgg · random init" in badge


def test_layer_switch_updates_in_place_without_a_forward_pass(explorer):
    grid, detail, before = explorer.grid, explorer.detail, explorer.tile_maps(0)[0].copy()
    calls = explorer.forward_calls[0]
    explorer.layer.value = "relu3_1"
    assert explorer.grid is grid and explorer.detail is detail and explorer.children[5] is grid
    assert explorer.forward_calls[0] == calls, "switching layers re-slices cached activations"
    assert explorer.page.max == 2 and explorer.channel.max == 23  # 24 channels at relu3_1
    tiles = explorer.tile_maps(0)
    assert len(tiles) == 16 and tiles[0].shape == (16, 16) and not np.array_equal(tiles[0], before)
    np.testing.assert_allclose(tiles[5], _act(explorer, 0)[5].numpy(), rtol=1e-6)
    np.testing.assert_allclose(explorer.tile_maps(1)[5], _act(explorer, 1)[5].numpy(), rtol=1e-6)
    assert "relu3_1: 24 channels" in explorer.caption.value
    _restore(explorer)


def test_paging_through_channels(explorer):
    explorer.layer.value = "relu3_1"
    explorer.page.value = 2
    assert explorer.channels() == list(range(16, 24))
    titles = [explorer.grid.layout.annotations[i].text for i in explorer._titles[:16]]
    assert titles == [f"ch {c}" for c in range(16, 24)] + [""] * 8
    assert [t.visible for t in explorer.grid.data[16:32]] == [True] * 8 + [False] * 8
    np.testing.assert_allclose(explorer.tile_maps(1)[2], _act(explorer, 1)[18].numpy(), rtol=1e-6)
    assert "page 2/2 (channels 16–23)" in explorer.grid.layout.title.text
    explorer.layer.value = "relu1_1"  # fewer channels: the page is clipped, not an error
    assert explorer.page.value == 1 and explorer.channels() == list(range(8))
    _restore(explorer)


def _channel_means(act):
    return act.flatten(1).mean(1)


def test_top_k_by_activation_and_by_difference(explorer):
    explorer.layer.value = "relu5_1"
    explorer.k.value = 5
    explorer.mode.value = "active_a"
    assert explorer.page.disabled and not explorer.k.disabled, "only the controls that apply are live"
    assert explorer.channels() == torch.topk(_channel_means(_act(explorer, 0)), 5).indices.tolist()
    explorer.mode.value = "active_b"
    assert explorer.channels() == torch.topk(_channel_means(_act(explorer, 1)), 5).indices.tolist()
    explorer.mode.value = "difference"
    diff = (_channel_means(_act(explorer, 0)) - _channel_means(_act(explorer, 1))).abs()
    shown = explorer.channels()
    assert shown == torch.topk(diff, 5).indices.tolist()
    titles = [explorer.grid.layout.annotations[i].text for i in explorer._titles[:5]]
    assert titles == [f"ch {c}" for c in shown]
    np.testing.assert_allclose(explorer.tile_maps(0)[0], _act(explorer, 0)[shown[0]].numpy(), rtol=1e-6)
    assert sum(t.visible for t in explorer.grid.data) == 10
    assert "top 5 by |Δ mean|" in explorer.grid.layout.title.text
    explorer.rank_by.value = "energy"
    energy = (_act(explorer, 0).flatten(1) ** 2).mean(1) - (_act(explorer, 1).flatten(1) ** 2).mean(1)
    assert explorer.channels() == torch.topk(energy.abs(), 5).indices.tolist()
    _restore(explorer)


def test_colour_scale_modes(explorer):
    explorer.layer.value = "relu2_1"
    a, b = explorer.tile_maps(0), explorer.tile_maps(1)
    ranges = [(t.zmin, t.zmax) for t in explorer.grid.data[:32]]
    for (lo, hi), z in zip(ranges[:16], a):  # each map its own range (a dead channel gets a tiny one)
        assert lo == pytest.approx(z.min()) and hi == pytest.approx(max(z.max(), z.min() + 1e-6))
    assert not any(t.showscale for t in explorer.grid.data)
    explorer.scale.value = "channel"  # a channel shares one range in both images
    for i in range(16):
        lo, hi = min(a[i].min(), b[i].min()), max(a[i].max(), b[i].max())
        hi = max(hi, lo + 1e-6)
        for trace in (explorer.grid.data[i], explorer.grid.data[16 + i]):
            assert (trace.zmin, trace.zmax) == pytest.approx((lo, hi))
    explorer.shared_scale = True
    assert explorer.scale.value == "shared" and explorer.shared_scale
    whole = (min(z.min() for z in a + b), max(z.max() for z in a + b))
    assert all((t.zmin, t.zmax) == pytest.approx(whole) for t in explorer.grid.data[:32])
    assert [t.showscale for t in explorer.grid.data if t.visible].count(True) == 1, "one scale, one colour bar"
    _restore(explorer)


def test_clicking_a_tile_shows_the_channel_large_over_the_image(explorer):
    explorer.layer.value = "relu3_1"
    explorer.mode.value = "difference"
    target = explorer.channels()[2]
    _click(explorer.grid, 16 + 2, [3, 4], x=4, y=3)  # the photo's third tile
    assert explorer.channel.value == target
    assert f"channel {target}" in explorer.detail.layout.title.text
    images = [t for t in explorer.detail.data if t.type == "image"]
    assert len(images) == 2 and all(t.source.startswith("data:image/png;base64,") for t in images)
    for which, fmap in enumerate(explorer.detail_maps()):
        assert fmap.shape == (64, 64), "the map is upsampled (bilinear) to the picture it lies over"
        small = _act(explorer, which)[target]
        expected = F.interpolate(small[None, None], size=(64, 64), mode="bilinear", align_corners=False)[0, 0]
        np.testing.assert_allclose(fmap, expected.numpy(), rtol=1e-5, atol=1e-6)
        assert fmap.max() == pytest.approx(float(small.max()), rel=0.5)  # same values, only spread out
    explorer.opacity.value = 0.3
    assert [explorer.detail.data[i].opacity for i in (1, 3)] == [0.3, 0.3]
    explorer.select_channel(0)
    assert "channel 0" in explorer.detail.layout.title.text
    with pytest.raises(ValueError, match="channels 0–23"):
        explorer.select_channel(24)
    _restore(explorer)


def test_explorer_on_corpus_images_with_a_resnet(corpus):
    from artlab.widgets import ActivationExplorer

    model = backbone("tiny_resnet", weights=None)
    photos, paintings = corpus.subset(style="photo"), corpus.subset(style="pointillism")
    photo, painting = photos.load(0, size=64), paintings.load(0, size=(48, 80))  # different sizes on purpose
    explorer = ActivationExplorer(model, painting, photo, page_size=8, columns=4)
    assert explorer.layers[0] == "conv1" and "layer3" in explorer.layers
    explorer.layer.value = "layer3"
    explorer.mode.value = "difference"
    shown = explorer.channels()
    assert len(shown) == explorer.k.value and len(set(shown)) == len(shown)
    assert explorer.tile_maps(0)[0].shape != explorer.tile_maps(1)[0].shape  # each image keeps its own geometry
    explorer.select_channel(shown[0])
    assert [m.shape for m in explorer.detail_maps()] == [(48, 80), (64, 64)]


def test_explorer_refuses_bad_input(vgg, pair):
    from artlab.widgets import ActivationExplorer

    with pytest.raises(ValueError, match="no layer 'relu9_1'"):
        ActivationExplorer(vgg, *pair, layers=["relu9_1"])
    with pytest.raises(ValueError, match="at least one layer"):
        ActivationExplorer(vgg, *pair, layers=[])
    with pytest.raises(ValueError, match="photo"):
        ActivationExplorer(vgg, pair[0], torch.rand(3, 3))


def test_explorer_takes_named_images_in_either_look(vgg, pair):
    """A mapping {name: image} of any number of images: one block of tiles (or one mosaic) per image."""
    from artlab.widgets import ActivationExplorer

    noise = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    images = {"painting": pair[0], "photo": pair[1], "noise": noise}
    explorer = ActivationExplorer(vgg, images, layers=["relu1_1", "relu3_1"], page_size=8, k=5)
    assert explorer.names == ("painting", "photo", "noise")
    assert [value for _, value in explorer.mode.options] == ["pages", "active_a", "active_b", "active_c"]
    assert len(explorer.grid.data) == 24 and explorer.tile_maps(2)[0].shape == (32, 32)
    explorer.mode.value = "active_c"
    assert explorer.channels() == torch.topk(_channel_means(_act(explorer, 2)), 5).indices.tolist()
    assert "painting | photo | noise · top 5 of noise by mean" in explorer.grid.layout.title.text
    explorer.select_channel(3)
    assert [m.shape for m in explorer.detail_maps()] == [(64, 64), (64, 64), (32, 32)]

    mosaic = ActivationExplorer(vgg, images, layers=["relu3_1"], look="mosaic", k=3)
    assert mosaic.grid is None and list(mosaic.views) == list(images)
    for which, name in enumerate(images):  # each image its own most active channels
        assert mosaic.channels(which) == torch.topk(_channel_means(_act(mosaic, which)), 3).indices.tolist()
        assert bytes(mosaic.views[name].value).startswith(b"\x89PNG")
        assert f"showing {mosaic.channels(which)}" in mosaic.captions[name].value
    with pytest.raises(TypeError, match="not both"):
        ActivationExplorer(vgg, images, pair[1])
    with pytest.raises(ValueError, match="look must be one of grid, mosaic"):
        ActivationExplorer(vgg, *pair, look="tiles")


# ---------------------------------------------------------------------------- DomainShiftView

SHIFT_LAYERS = ["relu1_1", "relu3_1", "relu5_1"]


@pytest.fixture(scope="module")
def shift_parts(corpus, vgg):
    """Photos vs pointillist paintings of the sample corpus at 64 px (tiny, random: numbers mean nothing)."""
    from artlab.activations import SmallSampleWarning, domain_shift
    from artlab.images import load_images

    photos, paintings = corpus.subset(style="photo"), corpus.subset(style="pointillism")
    with pytest.warns(SmallSampleWarning):
        shift = domain_shift(photos, paintings, vgg, SHIFT_LAYERS, size=64, n_boot=10, n_perm=30,
                             progress=False, names=("photo", "painting"))
    return shift, load_images(shift.sources_a, 64), load_images(shift.sources_b, 64)


@pytest.fixture(scope="module")
def shift_view(shift_parts, vgg):
    from artlab.widgets import DomainShiftView

    return DomainShiftView.from_result(*shift_parts, vgg, channels=3, examples=2)


def _value_trace(view, measure):
    return next(t for t in view.curves.data if t.name == measure)


def test_shift_curves_show_every_measure_with_its_band(shift_view, shift_parts):
    shift = shift_parts[0]
    assert shift_view.measures == ["frechet", "kid", "mmd", "probe"]
    for measure in shift_view.measures:
        rows = shift.table[shift.table["measure"] == measure].set_index("layer").loc[SHIFT_LAYERS]
        line = _value_trace(shift_view, measure)
        assert list(line.x) == SHIFT_LAYERS
        np.testing.assert_allclose(line.y, rows["value"].to_numpy())
        band = next(t for t in shift_view.curves.data if t.name == f"{measure} CI")
        np.testing.assert_allclose(band.y, [*rows["ci_high"], *rows["ci_low"][::-1]])
        assert list(band.x) == SHIFT_LAYERS + SHIFT_LAYERS[::-1]
    title = shift_view.curves.layout.title.text
    assert "photo vs painting" in title and "tiny_vgg · random init" in title
    assert "random weights" in shift_view.children[0].value
    assert "relu5_1" in shift_view.numbers.value and "caveats per number" in shift_view.notes.value


def _reference_examples(vgg, images, layer, channel, k):
    """The whole set's maps of ``channel``, each image's mean of it, and the k largest means."""
    from artlab.models import features

    act = features(vgg, images, [layer])[layer][:, channel]
    score = act.flatten(1).mean(1)
    return act, score, torch.topk(score, k).values


def test_negative_and_below_chance_values_are_marked_and_explained(shift_parts, vgg):
    import dataclasses

    from artlab.widgets import DomainShiftView

    shift, images_a, images_b = shift_parts
    table = shift.table.copy()
    kid_row = table.index[(table.layer == SHIFT_LAYERS[0]) & (table.measure == "kid")][0]
    probe_row = table.index[(table.layer == SHIFT_LAYERS[-1]) & (table.measure == "probe")][0]
    table.loc[kid_row, "value"], table.loc[probe_row, "value"] = -0.003, 0.42
    others = table.drop([kid_row, probe_row])
    table.loc[others.index[others.measure == "kid"], "value"] = 0.5  # only the two planted values look odd
    table.loc[others.index[others.measure == "mmd"], "value"] = 0.1
    table.loc[others.index[others.measure == "probe"], "value"] = 0.8
    view = DomainShiftView.from_result(dataclasses.replace(shift, table=table), images_a, images_b, vgg,
                                       channels=1, examples=1)
    numbers = view.numbers.value
    assert numbers.count(" *</td>") == 2  # exactly the two planted cells are marked
    assert "-0.003 [" in numbers and "0.42 [" in numbers
    assert "* below 0: no detectable difference, not an error" in numbers
    assert "* below chance (0.5): the probe found nothing to learn" in numbers
    assert 'title="below 0: no detectable difference' in numbers
    kid_hover = _value_trace(view, "kid").text
    assert "no detectable difference" in kid_hover[0] and not any("no detectable" in t for t in kid_hover[1:])
    assert "nothing to learn" in _value_trace(view, "probe").text[-1]


def test_picking_a_layer_shows_its_divergent_channels_with_examples(shift_view, shift_parts, vgg):
    shift, images_a, images_b = shift_parts
    shift_view.layer.value = "relu3_1"
    expected = shift.divergent_channels("relu3_1", k=3)
    assert list(shift_view.divergent["channel"]) == list(expected["channel"])
    for trace in shift_view.curves.data:
        if trace.name.endswith(" selected"):
            assert list(trace.x) == ["relu3_1"]
    annotations = [a.text for a in shift_view.gallery.layout.annotations]
    for row, channel in enumerate(expected["channel"]):
        assert annotations[row * 4].startswith(f"ch {channel} · photo #")
        for which, images in enumerate((images_a, images_b)):
            maps, score, best = _reference_examples(vgg, images, "relu3_1", int(channel), 2)
            names = annotations[row * 4 + 2 * which : row * 4 + 2 * which + 2]
            shown_index = [int(t.rsplit("#", 1)[1]) for t in names]
            # the whole set's strongest images (compared by score: random-init channels can tie)
            np.testing.assert_allclose(score[shown_index].numpy(), best.numpy(), rtol=1e-4, atol=1e-7)
            shown = shift_view.gallery_maps(which)[row]
            assert len(shown) == 2 and shown[0].shape == (16, 16)
            for tile, index in zip(shown, shown_index):
                np.testing.assert_allclose(tile, maps[index].numpy(), rtol=1e-4, atol=1e-6)
        ranges = {(t.zmin, t.zmax) for t in shift_view.gallery.data[row * 4 : row * 4 + 4]}
        assert len(ranges) == 1, "a channel's examples from both sets share one colour range"
    assert "<b>relu3_1: channels that differ most</b>" in shift_view.channel_table.value
    assert 'font-weight:bold;background:#eef"><td>relu3_1' in shift_view.numbers.value
    shift_view.layer.value = "relu5_1"


def test_clicking_a_curve_point_selects_its_layer(shift_view):
    index = shift_view.curves.data.index(_value_trace(shift_view, "mmd"))
    _click(shift_view.curves, index, 0, x="relu1_1", y=0.0)
    assert shift_view.layer.value == "relu1_1"
    assert "selected relu1_1" in shift_view.curves.layout.title.text
    # relu1_1 maps are 64×64: shown at the 40 px tile size
    assert shift_view.gallery_maps(0)[0][0].shape == (40, 40)
    with pytest.raises(ValueError, match="measured at relu1_1, relu3_1, relu5_1"):
        shift_view.select_layer("relu2_1")
    shift_view.select_layer("relu5_1")
    assert shift_view.layer.value == "relu5_1"


def test_shift_view_from_the_collections_the_shift_was_computed_on(shift_parts, vgg, corpus):
    from artlab.widgets import DomainShiftView

    shift, images_a, images_b = shift_parts
    view = DomainShiftView.from_result(shift, corpus.subset(style="photo"), corpus.subset(style="pointillism"), vgg,
                                       channels=1, examples=1)
    assert torch.equal(view.images[0], images_a) and torch.equal(view.images[1], images_b)
    assert len(view.gallery_maps(0)) == 1


def test_shift_view_refuses_mismatched_inputs(shift_parts, vgg, corpus):
    from artlab.widgets import DomainShiftView

    shift, images_a, images_b = shift_parts
    with pytest.raises(ValueError, match="set photo: 5 images given but the shift was computed on 6"):
        DomainShiftView.from_result(shift, images_a[:5], images_b, vgg)
    with pytest.raises(ValueError, match="set photo: 6 of the measured images .* are not in this collection"):
        DomainShiftView.from_result(shift, corpus.subset(style="slic"), images_b, vgg)
    with pytest.raises(ValueError, match="pass the same model"):
        DomainShiftView.from_result(shift, images_a, images_b, backbone("tiny_vgg", weights=None, seed=1))
    with pytest.raises(TypeError, match=r"\['n_boot'\] are for computing a shift"):
        DomainShiftView.from_result(shift, images_a, images_b, vgg, n_boot=5)


def test_shift_view_computes_the_shift_itself(corpus, vgg):
    from artlab.activations import SmallSampleWarning
    from artlab.widgets import DomainShiftView

    g = torch.Generator().manual_seed(2)
    noise = torch.rand(4, 3, 48, 48, generator=g)  # a tensor set beside a Collection
    with pytest.warns(SmallSampleWarning):
        view = DomainShiftView(corpus.subset(style="woodblock"), noise, vgg, layers=["relu2_1", "relu4_1"], size=48,
                               measures=("kid", "mmd"), n_boot=5, n_perm=20, progress=False,
                               names=("woodblock", "noise"), channels=2, examples=2)
    assert view.measures == ["kid", "mmd"] and view.layers == ["relu2_1", "relu4_1"]
    assert view.images[0].shape == (6, 3, 48, 48) and torch.equal(view.images[1], noise)
    assert len([t for t in view.curves.data if t.mode == "lines+markers"]) == 2
    assert view.layer.value == "relu4_1" and len(view.gallery_maps(1)[0]) == 2
    assert "woodblock vs noise" in view.curves.layout.title.text


# ---------------------------------------------------------------------------------------------- spectra figure


@pytest.mark.parametrize("side, lo, span", [(8, 1e-3, 3.0), (16, 2.0, 40.0), (32, 1e-6, 1e5), (64, 5.0, 1.6),
                                            (112, 1e-2, 1e9), (224, 0.05, 600.0)])
def test_spectra_tick_labels_never_overlap(side, lo, span):
    """Issue 15: the spectra's log axes labelled their minor ticks ("2×10⁻¹ 3×10⁻¹ …", full size) when a
    panel spans less than a decade, and the labels ran into each other. Drawn here, every shown label
    of every axis has its own room, and each axis has at least two labels to read the scale from."""
    import itertools

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from artlab.activations import plot_spectra

    bins = side // 2 + 1
    freqs, power = np.arange(bins) / side, np.geomspace(lo * span, lo, bins)[None]
    fig = plot_spectra({"a": (freqs, power), "b": (freqs, power * 3)}, {"a": (freqs, power / 2), "b": (freqs, power)})
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            labels = [t.label1 for t in axis.get_major_ticks() + axis.get_minor_ticks()
                      if low <= t.get_loc() <= high and t.label1.get_visible() and t.label1.get_text()]
            boxes = [label.get_window_extent(renderer) for label in labels]
            texts = [label.get_text() for label in labels]
            assert len(boxes) >= 2, f"{axis.axis_name} axis of {ax.get_title()}: labels {texts}"
            assert not any(p.overlaps(q) for p, q in itertools.combinations(boxes, 2)), texts
