"""NeuronAtlas in a real JupyterLab: the histogram renders, a layer change and "next by difference"
redraw it, the CAM shows the predicted class, and a visualisation previews live and stops on request."""

from __future__ import annotations

import re

import pytest

import lab

SETUP = """\
import tempfile
from pathlib import Path
import torch
from artlab.data import Collection, Item
from artlab.images import save_image
from artlab.models import backbone
from artlab.widgets import NeuronAtlas

root, g, items = Path(tempfile.mkdtemp()), torch.Generator().manual_seed(0), []
for i in range(4):
    blocks = torch.nn.functional.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=(48, 48))
    for domain, image in (("painting", blocks), ("photo", torch.rand(1, 3, 48, 48, generator=g))):
        items.append(Item(save_image(image, root / f"{domain}-{i}.png"), domain, {"domain": domain}))
atlas = NeuronAtlas(backbone("tiny_efficientnet_lite", weights=None), Collection(items, root), layer="stage3",
                    size=48, vis_size=32, steps=8, examples=3, output_dir=str(root / "out"))
atlas.steps.max = 100_000  # with the hold below, a visualisation lasts far longer than the test
first_conv = next(m for m in atlas.model.modules() if isinstance(m, torch.nn.Conv2d))
""" + lab.hold_after_code("first_conv", "atlas.stop_button", after=30) + """
atlas"""


@pytest.mark.timeout(240)
def test_neuron_atlas_in_the_browser(jupyter_server, page, console_errors, tmp_path):
    lab.open_code_notebook(page, jupyter_server, SETUP, "neuron_atlas.ipynb", run_timeout_s=120)

    # the histogram is a real plotly plot with both domains' bars; the patches are decoded images
    page.locator(f"{lab.NOTEBOOK_PANEL} .js-plotly-plot").first.wait_for(timeout=30_000)
    lab.wait_svg_text(page, ".gtitle", r"stage3 · channel \d+ · activation per domain")
    lab.wait_svg_text(page, ".legendtext", r"^painting$")
    lab.wait_svg_text(page, ".legendtext", r"^photo$")
    lab.wait_images_loaded(page, minimum=2)
    lab.wait_for_text(page, ".widget-html", re.compile(r"rank 1 of 10 by painting vs photo"))

    lab.select_dropdown(page, "layer", "stage4")
    lab.wait_svg_text(page, ".gtitle", r"stage4 · channel \d+ · activation per domain")
    lab.wait_for_text(page, ".widget-html", re.compile(r"rank 1 of 20"))
    lab.click_button(page, "next by difference")
    lab.wait_for_text(page, ".widget-html", re.compile(r"rank 2 of 20"))
    channel = lab.widget(page, "channel", "widget-slider").locator(".widget-readout").inner_text()
    lab.wait_svg_text(page, ".gtitle", rf"stage4 · channel {re.escape(channel)} · activation per domain")

    lab.click_button(page, "Show CAM")
    lab.wait_for_text(page, ".widget-html", re.compile(r"Grad-CAM at stage4 for the predicted class"))

    lab.set_slider(page, "steps", 100_000)
    lab.click_button(page, "Visualise")
    lab.wait_for_text(page, ".widget-html", re.compile(r"stage4 · channel \d+: step \d+/100000"), timeout_s=60)
    preview = page.locator(f"{lab.NOTEBOOK_PANEL} img.widget-image").nth(0)
    page.wait_for_function("img => !img.classList.contains('artlab-empty') && img.complete && img.naturalWidth > 0",
                           arg=preview.element_handle(),
                           timeout=60_000)
    lab.click_button(page, "Stop")
    status = lab.wait_for_text(page, ".widget-html", re.compile(r"stopped"), timeout_s=60)
    print(f"\nstatus after Stop: {status}")
    page.locator(f"{lab.NOTEBOOK_PANEL} button.jupyter-button:not([disabled])",
                 has_text=re.compile(r"^\s*Visualise\s*$")).wait_for(timeout=30_000)  # enabled again
    lab.screenshot(page, tmp_path / "neuron_atlas.png")
    assert console_errors == []
