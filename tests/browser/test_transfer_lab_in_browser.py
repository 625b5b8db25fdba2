"""TransferLab in a real JupyterLab: Run shows a live preview and loss curves, a slider
change mid-run restarts warm, Stop ends the run and keeps the image; no console errors."""

from __future__ import annotations

import re

import pytest

import lab

SETUP = """\
import warnings
import torch
from artlab.gram import ReceptiveFieldWarning
from artlab.models import backbone
from artlab.widgets import TransferLab

warnings.simplefilter("ignore", ReceptiveFieldWarning)  # 64 px is below tiny_vgg's receptive field (speed)
g = torch.Generator().manual_seed(0)
content = torch.rand(1, 3, 48, 64, generator=g)
style = torch.rand(1, 3, 48, 48, generator=g) * 0.5
# 100000 steps, slowed after the first ones until Stop (lab.hold_after_code): the run is still going
# whenever the test acts, on any machine
transfer_lab = TransferLab(content, style, backbone("tiny_vgg", weights=None), size=64, steps=100000,
                           preview_every=2, preview_size=32, quick_steps=3, output_dir="transfer-output")
first_conv = next(m for m in transfer_lab.model.modules() if isinstance(m, torch.nn.Conv2d))
""" + lab.hold_after_code("first_conv", "transfer_lab.stop_button", after=40) + """
transfer_lab"""


def _preview_src(page) -> str:
    return page.locator(f"{lab.NOTEBOOK_PANEL} img.widget-image:not(.artlab-empty)").first.get_attribute("src") or ""


@pytest.mark.timeout(420)  # generous: the shared 2-core machine can be very busy
def test_transfer_lab_in_the_browser(jupyter_server, page, console_errors, tmp_path):
    lab.open_code_notebook(page, jupyter_server, SETUP, "transfer_lab.ipynb", run_timeout_s=120)
    lab.wait_for_text(page, ".widget-html", "press Run")
    page.locator(f"{lab.NOTEBOOK_PANEL} .js-plotly-plot").first.wait_for(timeout=30_000)
    before = _preview_src(page)

    lab.click_button(page, "Run")
    lab.wait_for_text(page, ".widget-html", re.compile(r"step \d+/100000"), timeout_s=60)
    page.wait_for_function(
        "([sel, before]) => { const img = document.querySelector(sel);"
        " return img && img.src !== before && img.complete && img.naturalWidth > 0; }",
        arg=[f"{lab.NOTEBOOK_PANEL} img.widget-image:not(.artlab-empty)", before], timeout=60_000)
    # the loss curves grew a line
    page.wait_for_function(
        "sel => Array.from(document.querySelectorAll(sel)).some(p => (p.getAttribute('d') || '').length > 20)",
        arg=f"{lab.NOTEBOOK_PANEL} .js-plotly-plot .scatterlayer path.js-line", timeout=60_000)

    # Pause holds the run (a state, not a moment to catch: the tiny network can finish 1000 steps in
    # seconds); a slider moved while paused makes the run restart warm, not anew, once it resumes
    lab.click_button(page, "Pause")
    lab.wait_for_text(page, ".widget-html", re.compile(r"paused · (run|quick preview) · step \d+/"), timeout_s=60)
    lab.set_slider(page, "log10 ratio", 3)
    lab.click_button(page, "Resume")
    lab.click_button(page, "Pause")  # once the caption is back: whichever step the restarted run is at
    lab.wait_for_text(page, ".widget-html", re.compile(r"paused · warm restart · step \d+/100000"), timeout_s=60)

    lab.click_button(page, "Stop")
    status = lab.wait_for_text(page, ".widget-html",
                               re.compile(r"stopped · kept the best image .* · 1 warm restart"), timeout_s=60)
    print(f"\nstatus after Stop: {status}")
    lab.click_button(page, "Save PNG")
    saved = lab.wait_for_text(page, ".widget-html", re.compile(r"saved .*transfer-001\.png"), timeout_s=30)
    print(f"save note: {saved}")
    assert (jupyter_server.root_dir / "transfer-output" / "transfer-001.png").is_file()
    lab.screenshot(page, tmp_path / "transfer_lab.png")
    assert lab.error_outputs(page) == []
    assert console_errors == []
