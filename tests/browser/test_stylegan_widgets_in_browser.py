"""LatentExplorer and ProjectionView in a real JupyterLab: moving a control redraws the
image, walks and projections update live and stop on request; no console errors."""

from __future__ import annotations

import re

import pytest

import lab

COMMON = """\
import torch
torch.set_num_threads(1)  # a 32 px generator: one thread is faster than two busy ones
from artlab.stylegan import tiny_generator
from artlab.stylegan.generate import generate
G = tiny_generator(c_dim=4, resolution=32)
"""

EXPLORER = COMMON + """\
from artlab.widgets import LatentExplorer
# 3 keyframes x 120 frames paced at 2 fps: a walk lasts 3 minutes however fast the machine
explorer = LatentExplorer(G, seed=3, frames=120, fps=2, output_dir="stylegan-output")
explorer"""

PROJECTION = COMMON + """\
from artlab.widgets import ProjectionView
view = ProjectionView(G, generate(G, seeds=[21], c=2), steps=1000, perceptual="lpips-vgg-random",
                      preview_every=2, n_w_samples=256)
""" + lab.hold_after_code("G.synthesis", "view.stop_button", after=10) + """
view"""

IMAGES = f"{lab.NOTEBOOK_PANEL} img.widget-image:not(.artlab-empty)"


def _src(page, index: int = 0) -> str:
    return page.locator(IMAGES).nth(index).get_attribute("src") or ""


def _wait_new_image(page, before: str, index: int = 0, timeout_s: float = 60) -> str:
    page.wait_for_function(
        "([sel, i, before]) => { const img = document.querySelectorAll(sel)[i];"
        " return img && img.src !== before && img.complete && img.naturalWidth > 0; }",
        arg=[IMAGES, index, before], timeout=timeout_s * 1000)
    return _src(page, index)


@pytest.mark.timeout(300)
def test_latent_explorer_in_the_browser(jupyter_server, page, console_errors, tmp_path):
    lab.open_code_notebook(page, jupyter_server, EXPLORER, "latent_explorer.ipynb", run_timeout_s=180)
    lab.wait_for_text(page, ".widget-html", re.compile(r"seed 3 · ψ 1\.00 · 100% class 0"))
    lab.wait_for_text(page, ".widget-html", re.compile(r"random weights"))
    first = _wait_new_image(page, "")

    lab.set_slider(page, "seed", 42)
    after_seed = _wait_new_image(page, first)
    lab.wait_for_text(page, ".widget-html", re.compile(r"seed 42 · ψ 1\.00"))
    lab.set_slider(page, "ψ (truncation)", 0.5)
    after_psi = _wait_new_image(page, after_seed)
    lab.click_button(page, "70/30")
    lab.wait_for_text(page, ".widget-html", re.compile(r"70% class 0 / 30% class 1"))
    _wait_new_image(page, after_psi)

    lab.click_button(page, "Play")
    lab.wait_for_text(page, ".widget-html", re.compile(r"frame \d+ · seed 42 → 43"), timeout_s=60)
    lab.click_button(page, "Stop")
    status = lab.wait_for_text(page, ".widget-html", re.compile(r"stopped"), timeout_s=60)
    print(f"\nstatus after Stop: {status}")

    lab.click_button(page, "Export GIF")
    note = lab.wait_for_text(page, ".widget-html", re.compile(r"GIF of \d+ frames: .*walk-z-seed42-001\.gif"))
    print(f"export note: {note}")
    assert (jupyter_server.root_dir / "stylegan-output" / "walk-z-seed42-001.gif").is_file()
    lab.screenshot(page, tmp_path / "latent_explorer.png")
    assert lab.error_outputs(page) == []
    assert console_errors == []


@pytest.mark.timeout(300)
def test_projection_view_in_the_browser(jupyter_server, page, console_errors, tmp_path):
    lab.open_code_notebook(page, jupyter_server, PROJECTION, "projection_view.ipynb", run_timeout_s=180)
    lab.wait_for_text(page, ".widget-html", "press Project")
    lab.wait_for_text(page, ".widget-html", re.compile(r"LPIPS with random VGG backbone: not a perceptual metric"))
    page.locator(f"{lab.NOTEBOOK_PANEL} .js-plotly-plot").first.wait_for(timeout=30_000)
    target = _wait_new_image(page, "", index=0)
    assert target

    lab.select_dropdown(page, "class", "class 2")
    lab.click_button(page, "Project")
    lab.wait_for_text(page, ".widget-html", re.compile(r"step \d+/1000"), timeout_s=90)
    _wait_new_image(page, "", index=1)  # the reconstruction appears beside the target
    page.wait_for_function(
        "sel => Array.from(document.querySelectorAll(sel)).some(p => (p.getAttribute('d') || '').length > 20)",
        arg=f"{lab.NOTEBOOK_PANEL} .js-plotly-plot .scatterlayer path.js-line", timeout=60_000)
    lab.click_button(page, "Stop")
    status = lab.wait_for_text(page, ".widget-html", re.compile(r"stopped · kept the best latents"), timeout_s=60)
    print(f"\nstatus after Stop: {status}")

    lab.select_dropdown(page, "walk to", "class 0")
    lab.click_button(page, "Walk to class")
    lab.wait_for_text(page, ".widget-html", re.compile(r"\d+ frames from the projection to class 0"), timeout_s=60)
    _wait_new_image(page, "", index=2)
    lab.screenshot(page, tmp_path / "projection_view.png")
    assert lab.error_outputs(page) == []
    assert console_errors == []
