"""GramInspector, driven by setting its controls and asserting on the figure data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from artlab.models import backbone

# 48 px test images are below tiny_vgg's 156 px receptive field on purpose (speed)
pytestmark = pytest.mark.filterwarnings("ignore::artlab.gram.ReceptiveFieldWarning")


@pytest.fixture(scope="module")
def inspector():
    from artlab.widgets import GramInspector

    g = torch.Generator().manual_seed(1)  # not 0: synthesis starts from seed-0 noise
    a = torch.rand(1, 3, 48, 48, generator=g)
    b = torch.rand(1, 3, 48, 48, generator=g) * 0.5
    return GramInspector(backbone("tiny_vgg", weights=None), a, b, names=("painting", "photo"), block=8)


def _z(inspector, i):
    return np.asarray(inspector.heatmaps.data[i].z)


def test_heatmaps_show_both_grams_and_their_difference(inspector):
    a, b, diff = (_z(inspector, i) for i in range(3))
    assert a.shape == b.shape == diff.shape == (8, 8)
    np.testing.assert_allclose(diff, a - b, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a, a.T, rtol=1e-5, atol=1e-7)  # a diagonal block of a Gram is symmetric
    assert inspector.heatmaps.data[0].x == inspector.heatmaps.data[1].x, "A and B share one channel order"


def test_layer_change_updates_in_place(inspector):
    figure = inspector.heatmaps
    before = _z(inspector, 0).copy()
    inspector.layer.value = "relu3_1"
    assert inspector.heatmaps is figure
    assert inspector.block_size.max == 24  # tiny_vgg has 24 channels at relu3_1
    assert not np.array_equal(before, _z(inspector, 0))
    assert "relu3_1" in inspector.heatmaps.layout.title.text
    inspector.layer.value = "relu1_1"


def test_block_slider_moves_the_window(inspector):
    inspector.layer.value = "relu3_1"
    inspector.sort.value = "index"
    inspector.block_size.value = 8
    inspector.block_start.value = 2
    assert list(inspector.heatmaps.data[0].x) == [str(c) for c in range(2, 10)]
    full = inspector.gram_set(0).grams["relu3_1"].double().numpy()
    np.testing.assert_allclose(_z(inspector, 0), full[2:10, 2:10], rtol=1e-5, atol=1e-9)
    inspector.block_start.value = 99  # beyond the end: clipped by the slider to the last full block
    assert list(inspector.heatmaps.data[0].x)[-1] == "23"
    inspector.block_start.value = 0
    inspector.sort.value = "clustered"
    inspector.layer.value = "relu1_1"


def test_normalisation_changes_scale_and_bars(inspector):
    gatys = _z(inspector, 0).max()
    bars_gatys = list(inspector.bars.data[0].y)
    inspector.normalize.value = "hw"
    channels = inspector.gram_set(0).grams["relu1_1"].shape[0]
    np.testing.assert_allclose(_z(inspector, 0).max(), gatys * channels, rtol=1e-4)
    assert list(inspector.bars.data[0].y) != bars_gatys
    assert all(v > 0 for v in inspector.bars.data[0].y)
    inspector.normalize.value = "gatys"


@pytest.mark.slow
def test_synthesis_previews_and_keeps_the_best(inspector):
    inspector.steps.value = 10
    inspector.start_synthesis(block=True)
    assert "done" in inspector.status.value and "step 10/10" in inspector.status.value
    assert inspector.preview.filled and bytes(inspector.preview.value).startswith(b"\x89PNG")
    assert inspector.best_texture.shape == (1, 3, 48, 48)
    assert len(inspector.losses) == 10 and min(inspector.losses) < 0.5 * inspector.losses[0]
    assert not inspector.run_button.disabled and inspector.stop_button.disabled


def test_stop_ends_a_background_synthesis_early(inspector):
    import time

    inspector.steps.value = 500
    inspector.start_synthesis()  # a background thread, as the button does
    deadline = time.monotonic() + 30
    while "step" not in inspector.status.value and time.monotonic() < deadline:
        time.sleep(0.02)
    inspector.stop_synthesis()
    inspector.worker.join(timeout=30)
    assert not inspector.worker.running
    assert "stopped" in inspector.status.value and "/500" in inspector.status.value
    assert inspector.best_texture is not None and not inspector.run_button.disabled


def test_layout_polish(inspector):
    """Issue 15's screenshots: the run button read "Synthesise tex…" (ipywidgets' 148 px default); A's and
    B's colour bar lay over the difference map; the texture slot showed a broken-image icon until a run."""
    from artlab.widgets import GramInspector
    from artlab.widgets.kit import EMPTY_CLASS

    button = inspector.run_button.layout
    assert button.width == "auto" and button.min_width == "max-content"
    layout = inspector.heatmaps.layout
    bar_x, thickness = layout.coloraxis.colorbar.x, layout.coloraxis.colorbar.thickness
    width = layout.width or 800  # at the narrowest page it is drawn in, the bar and its labels fit the gutter
    labels_px = 45
    assert layout.xaxis2.domain[1] < bar_x
    assert bar_x + (thickness + labels_px) / width < layout.xaxis3.domain[0], "A/B colour bar over A − B"
    assert inspector.bars.layout.yaxis.exponentformat == "power", "10⁻⁶, not plotly's SI \"1µ\", on the log axis"

    g = torch.Generator().manual_seed(3)
    fresh = GramInspector(backbone("tiny_vgg", weights=None), torch.rand(1, 3, 32, 32, generator=g),
                          torch.rand(1, 3, 32, 32, generator=g), block=4)
    assert not fresh.preview.filled and EMPTY_CLASS in fresh.preview._dom_classes
    assert fresh.preview.layout.display is None, "a slot of fixed width shows its grey placeholder"
