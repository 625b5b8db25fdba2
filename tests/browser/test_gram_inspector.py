"""GramInspector in a real JupyterLab: plotly heatmaps render, a layer change
redraws them, texture synthesis previews live and stops on request."""

from __future__ import annotations

import re
import time

import nbformat
import pytest

import lab

SETUP = """\
import torch
from artlab.models import backbone
from artlab.widgets import GramInspector

g = torch.Generator().manual_seed(1)  # not 0: synthesis starts from seed-0 noise
inspector = GramInspector(backbone("tiny_vgg", weights=None), torch.rand(1, 3, 48, 48, generator=g),
                          torch.rand(1, 3, 48, 48, generator=g), names=("painting", "photo"), block=8)
inspector"""


def _svg_texts(page, css: str) -> list[str]:
    return page.locator(f"{lab.NOTEBOOK_PANEL} {css}").all_text_contents()


def _wait_svg_text(page, css: str, pattern: str, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        texts = _svg_texts(page, css)
        for text in texts:
            if re.search(pattern, text):
                return text
        if time.monotonic() > deadline:
            raise lab.LabTimeout(f"no {css!r} matching {pattern!r}; saw {texts}")
        time.sleep(0.1)


@pytest.mark.timeout(240)
def test_gram_inspector_in_the_browser(jupyter_server, page, console_errors, tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SETUP)])
    relpath = jupyter_server.write_notebook(nb, "gram_inspector.ipynb")
    lab.open_notebook(page, jupyter_server, relpath, timeout_s=90)
    lab.run_all_cells(page, timeout_s=120)
    lab.wait_widgets_rendered(page, minimum=1)
    assert lab.error_outputs(page) == []

    # both plotly figures (heatmaps, bars) rendered as real plots
    page.locator(f"{lab.NOTEBOOK_PANEL} .js-plotly-plot").nth(1).wait_for(timeout=30_000)
    _wait_svg_text(page, ".gtitle", r"relu1_1 · gatys")
    _wait_svg_text(page, ".gtitle", r"style distance per layer")
    assert page.locator(f"{lab.NOTEBOOK_PANEL} .js-plotly-plot .heatmaplayer image").count() >= 3

    lab.select_dropdown(page, "layer", "relu3_1")
    _wait_svg_text(page, ".gtitle", r"relu3_1 · gatys · channels 0–7 of 24")
    lab.select_dropdown(page, "normalise", "hw")
    _wait_svg_text(page, ".gtitle", r"relu3_1 · hw")

    lab.set_slider(page, "steps", 500)
    lab.click_button(page, "Synthesise texture")
    lab.wait_for_text(page, ".widget-html", re.compile(r"step \d+/500"), timeout_s=60)
    preview = page.locator(f"{lab.NOTEBOOK_PANEL} img.widget-image").last
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=preview.element_handle(),
                           timeout=60_000)
    lab.click_button(page, "Stop")
    status = lab.wait_for_text(page, ".widget-html", re.compile(r"stopped"), timeout_s=60)
    print(f"\nstatus after Stop: {status}")
    lab.screenshot(page, tmp_path / "gram_inspector.png")
    assert console_errors == []
