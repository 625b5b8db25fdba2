"""Smoke test: notebooks/00_start_here.ipynb runs top to bottom in a real
JupyterLab (kernel env ARTLAB_QUICK=1, set by the server fixture), without
errors, and renders at least one image."""

from __future__ import annotations

import re

import pytest

import lab

REPO_ROOT = lab.REPO_ROOT
NOTEBOOK = REPO_ROOT / "notebooks" / "00_start_here.ipynb"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_start_here_runs_clean(jupyter_server, page, console_errors, tmp_path):
    if not NOTEBOOK.exists():
        pytest.skip(f"{NOTEBOOK.relative_to(REPO_ROOT)} does not exist yet")
    # a copy in the server root: outputs Lab saves never touch notebooks/
    relpath = jupyter_server.add_notebook(NOTEBOOK)

    lab.open_notebook(page, jupyter_server, relpath, timeout_s=90)
    lab.run_all_cells(page, timeout_s=180)
    shot = lab.screenshot(page, tmp_path / "00_start_here.png")
    print(f"\nscreenshot: {shot}")

    summary = lab.output_summary(page)
    assert summary.errors == [], "tracebacks in outputs:\n" + "\n---\n".join(summary.errors)
    assert summary.widget_fallbacks == [], summary.widget_fallbacks
    assert summary.rendered_images >= 1 or summary.images, "no image output rendered"
    lab.wait_images_loaded(page, minimum=3)  # corpus grid, painting/photo pair, feature-map figure
    texts = page.locator(f"{lab.NOTEBOOK_PANEL} .jp-OutputArea-output").all_inner_texts()
    assert not [t for t in texts if t.strip().startswith("<Figure size")], "a figure rendered as text"

    # The feature-map explorer (ActivationExplorer, mosaic look) at the end of the notebook, driven like a user would.
    lab.wait_widgets_rendered(page, minimum=1)
    maps = page.locator(f"{lab.NOTEBOOK_PANEL} img.widget-image:not(.artlab-empty)")
    before = maps.evaluate_all("imgs => imgs.map(i => i.src)")
    # The network is the best on this machine (VGG-19 when its file is cached, else the bundled
    # EfficientNet-Lite0); the viewer starts at its first layer, and the note says which network it is.
    options = lab.dropdown_options(page, "layer")
    assert options[0] in ("relu1_1", "stem"), options
    assert lab.dropdown_value(page, "layer") == options[0]
    network = "vgg19" if options[0] == "relu1_1" else "efficientnet_lite0"
    assert any(network in t and "ImageNet" in t for t in texts), "the notebook does not say which network it uses"
    deeper = options[len(options) // 2]
    lab.select_dropdown(page, "layer", deeper)
    lab.wait_for_text(page, ".widget-html", re.compile(rf"{re.escape(deeper)}: \d+ channels"), timeout_s=30)
    after = maps.evaluate_all("imgs => imgs.map(i => i.src)")
    assert after != before, "the feature-map images did not change with the layer"
    lab.set_slider(page, "channels", 3)
    shown = lab.wait_for_text(page, ".widget-html",
                              re.compile(rf"{re.escape(deeper)}: .*showing \[\d+, \d+, \d+\]"))
    print(f"\nviewer caption after the slider: {shown}")
    lab.screenshot(page, tmp_path / "viewer.png")

    saved = lab.save_notebook(page, jupyter_server, relpath)
    assert lab.saved_error_outputs(saved) == []
    assert console_errors == []
