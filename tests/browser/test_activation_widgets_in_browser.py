"""ActivationExplorer and DomainShiftView in a real JupyterLab: the plotly grids and
curves render, a layer change redraws them, a click on a tile (or a curve point)
reaches the kernel and updates the linked view, with no console errors. The
explorer's mosaic look (once FeatureMapViewer) swaps its PNG mosaics in place."""

from __future__ import annotations

import re

import pytest

import lab

EXPLORER = """\
import torch
from artlab.models import backbone
from artlab.widgets import ActivationExplorer

g = torch.Generator().manual_seed(0)
explorer = ActivationExplorer(backbone("tiny_vgg", weights=None), torch.rand(1, 3, 64, 64, generator=g),
                              torch.rand(1, 3, 64, 64, generator=g) * 0.6, layers=["relu1_1", "relu3_1", "relu5_1"])
explorer"""

MOSAIC = """\
import torch
from artlab.models import backbone
from artlab.widgets import ActivationExplorer

g = torch.Generator().manual_seed(0)
images = {"painting": torch.rand(1, 3, 64, 64, generator=g), "photo": torch.rand(1, 3, 64, 64, generator=g) * 0.6}
ActivationExplorer(backbone("tiny_vgg", weights=None), images, layers=["relu1_1", "relu3_1", "relu5_1"],
                   look="mosaic", page_size=32)"""

SHIFT = """\
import warnings
import torch
from artlab.activations import SmallSampleWarning
from artlab.models import backbone
from artlab.widgets import DomainShiftView

warnings.simplefilter("ignore", SmallSampleWarning)  # 6 images per set, on purpose (speed)
g = torch.Generator().manual_seed(0)
view = DomainShiftView(torch.rand(6, 3, 48, 48, generator=g), torch.rand(6, 3, 48, 48, generator=g) * 0.5,
                       backbone("tiny_vgg", weights=None), layers=["relu1_1", "relu3_1", "relu5_1"], size=48,
                       n_boot=10, n_perm=20, progress=False, names=("bright", "dim"), channels=2, examples=2)
view"""


@pytest.mark.timeout(240)
def test_activation_explorer_in_the_browser(jupyter_server, page, console_errors, tmp_path):
    lab.open_code_notebook(page, jupyter_server, EXPLORER, "activation_explorer.ipynb")

    # both plotly figures (tile grids, large view) rendered as real plots
    page.locator(f"{lab.NOTEBOOK_PANEL} .js-plotly-plot").nth(1).wait_for(timeout=30_000)
    lab.wait_svg_text(page, ".gtitle", r"relu1_1 · painting \(left\) \| photo \(right\) · page 1/1")
    lab.wait_svg_text(page, ".gtitle", r"relu1_1 · channel 0 · mean activation")
    assert page.locator(f"{lab.NOTEBOOK_PANEL} .js-plotly-plot .heatmaplayer image").count() >= 16

    lab.select_dropdown(page, "layer", "relu3_1")
    lab.wait_svg_text(page, ".gtitle", r"relu3_1 · .* · page 1/2 \(channels 0–15\)")
    lab.set_slider(page, "page", 2)
    lab.wait_svg_text(page, ".gtitle", r"relu3_1 · .* · page 2/2 \(channels 16–23\)")

    # a click on the painting's second tile (channel 17) shows that channel large
    grid = page.locator(f"{lab.NOTEBOOK_PANEL} .js-plotly-plot").first
    grid.locator(".draglayer .x2y2 .nsewdrag").click()
    lab.wait_svg_text(page, ".gtitle", r"relu3_1 · channel 17 · mean activation")
    assert lab.widget(page, "channel").locator("input").input_value() == "17"

    lab.click_button(page, "most different")
    lab.wait_svg_text(page, ".gtitle", r"relu3_1 · .* · top 8 by \|Δ mean\|")
    page.locator(f"{lab.NOTEBOOK_PANEL} .js-plotly-plot").nth(1).scroll_into_view_if_needed()
    lab.screenshot(page, tmp_path / "activation_explorer.png")
    assert console_errors == []


@pytest.mark.timeout(240)
def test_activation_explorer_mosaic_look_in_the_browser(jupyter_server, page, console_errors, tmp_path):
    lab.open_code_notebook(page, jupyter_server, MOSAIC, "activation_mosaics.ipynb")

    lab.wait_for_text(page, ".widget-html", re.compile(r"relu1_1: 8 channels, 64×64 · showing \["))
    images = page.locator(f"{lab.NOTEBOOK_PANEL} img.widget-image:not(.artlab-empty)")
    lab.wait_images_loaded(page, minimum=4)  # per image: the picture and its mosaic
    before = images.evaluate_all("imgs => imgs.map(i => i.src)")
    lab.select_dropdown(page, "layer", "relu3_1")
    lab.wait_for_text(page, ".widget-html", re.compile(r"relu3_1: 24 channels, 16×16"))
    assert images.evaluate_all("imgs => imgs.map(i => i.src)") != before, "the mosaics did not change with the layer"
    lab.set_slider(page, "channels", 3)
    lab.wait_for_text(page, ".widget-html", re.compile(r"relu3_1: .*showing \[\d+, \d+, \d+\]"))
    lab.click_button(page, "first")
    lab.wait_for_text(page, ".widget-html", re.compile(r"relu3_1: .*showing \[0, 1, 2\]"))
    lab.screenshot(page, tmp_path / "activation_mosaics.png")
    assert console_errors == []


_POINT_JS = """([plot, trace, index]) => {
  const full = plot._fullData[trace], layout = plot._fullLayout;
  const xa = layout[full.xaxis.replace('x', 'xaxis')], ya = layout[full.yaxis.replace('y', 'yaxis')];
  const box = plot.querySelector('.main-svg').getBoundingClientRect();
  return {x: box.left + xa._offset + xa.d2p(full.x[index]), y: box.top + ya._offset + ya.d2p(full.y[index])};
}"""


@pytest.mark.timeout(240)
def test_domain_shift_view_in_the_browser(jupyter_server, page, console_errors, tmp_path):
    lab.open_code_notebook(page, jupyter_server, SHIFT, "domain_shift_view.ipynb")

    page.locator(f"{lab.NOTEBOOK_PANEL} .js-plotly-plot").nth(1).wait_for(timeout=30_000)
    lab.wait_svg_text(page, ".gtitle", r"bright vs dim per layer · selected relu5_1")
    lab.wait_svg_text(page, ".gtitle", r"relu5_1: most divergent channels")
    assert page.locator(f"{lab.NOTEBOOK_PANEL} .js-plotly-plot .heatmaplayer image").count() >= 8

    lab.select_dropdown(page, "layer", "relu3_1")
    lab.wait_svg_text(page, ".gtitle", r"relu3_1: most divergent channels")
    lab.wait_svg_text(page, ".gtitle", r"selected relu3_1")

    # a click on the first point of the MMD curve (relu1_1) selects that layer
    curves = page.locator(f"{lab.NOTEBOOK_PANEL} .js-plotly-plot").first
    trace = curves.evaluate("plot => plot._fullData.findIndex(t => t.name === 'mmd')")
    point = page.evaluate(_POINT_JS, [curves.element_handle(), trace, 0])
    page.mouse.click(point["x"], point["y"])
    lab.wait_svg_text(page, ".gtitle", r"relu1_1: most divergent channels")
    assert lab.dropdown_value(page, "layer") == "relu1_1"
    page.locator(f"{lab.NOTEBOOK_PANEL} .js-plotly-plot").nth(1).scroll_into_view_if_needed()
    lab.screenshot(page, tmp_path / "domain_shift_view.png")
    assert console_errors == []
