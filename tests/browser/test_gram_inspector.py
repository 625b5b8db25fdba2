"""GramInspector in a real JupyterLab: plotly heatmaps render, a layer change
redraws them, texture synthesis previews live and stops on request."""

from __future__ import annotations

import re

import pytest

import lab

SETUP = """\
import torch
from artlab.models import backbone
from artlab.widgets import GramInspector

g = torch.Generator().manual_seed(1)  # not 0: synthesis starts from seed-0 noise
inspector = GramInspector(backbone("tiny_vgg", weights=None), torch.rand(1, 3, 48, 48, generator=g),
                          torch.rand(1, 3, 48, 48, generator=g), names=("painting", "photo"), block=8)
inspector.steps.max = 100_000  # with the hold below, a synthesis lasts far longer than the test
first_conv = next(m for m in inspector.model.modules() if isinstance(m, torch.nn.Conv2d))
""" + lab.hold_after_code("first_conv", "inspector.stop_button", after=60) + """
inspector"""


@pytest.mark.timeout(240)
def test_gram_inspector_in_the_browser(jupyter_server, page, console_errors, tmp_path):
    lab.open_code_notebook(page, jupyter_server, SETUP, "gram_inspector.ipynb", run_timeout_s=120)

    # both plotly figures (heatmaps, bars) rendered as real plots
    page.locator(f"{lab.NOTEBOOK_PANEL} .js-plotly-plot").nth(1).wait_for(timeout=30_000)
    lab.wait_svg_text(page, ".gtitle", r"relu1_1 · gatys")
    lab.wait_svg_text(page, ".gtitle", r"style distance per layer")
    assert page.locator(f"{lab.NOTEBOOK_PANEL} .js-plotly-plot .heatmaplayer image").count() >= 3

    lab.select_dropdown(page, "layer", "relu3_1")
    lab.wait_svg_text(page, ".gtitle", r"relu3_1 · gatys · channels 0–7 of 24")
    lab.select_dropdown(page, "normalise", "hw")
    lab.wait_svg_text(page, ".gtitle", r"relu3_1 · hw")

    lab.set_slider(page, "steps", 100_000)
    lab.click_button(page, "Synthesise texture")
    lab.wait_for_text(page, ".widget-html", re.compile(r"step \d+/100000"), timeout_s=60)
    preview = page.locator(f"{lab.NOTEBOOK_PANEL} img.widget-image").last
    page.wait_for_function("img => !img.classList.contains('artlab-empty') && img.complete && img.naturalWidth > 0",
                           arg=preview.element_handle(),
                           timeout=60_000)
    lab.click_button(page, "Stop")
    status = lab.wait_for_text(page, ".widget-html", re.compile(r"stopped"), timeout_s=60)
    print(f"\nstatus after Stop: {status}")
    lab.screenshot(page, tmp_path / "gram_inspector.png")
    assert console_errors == []
