"""Self-test of the browser harness: a tiny notebook with text, a matplotlib
PNG and two linked ipywidgets, run in a real JupyterLab in real chromium."""

from __future__ import annotations

import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import lab

HELLO = "hello from the artlab browser harness"

CELLS = [
    f"import os\nprint({HELLO!r}, 'ARTLAB_QUICK=' + os.environ.get('ARTLAB_QUICK', 'unset'))",
    (
        "%matplotlib inline\n"
        "import matplotlib.pyplot as plt\n"
        "fig, ax = plt.subplots(figsize=(3, 2))\n"
        "ax.plot([0, 1, 2], [0, 1, 4])\n"
        "plt.show()"
    ),
    (
        "import ipywidgets as widgets\n"
        "dd = widgets.Dropdown(options=['monet', 'vangogh', 'hokusai'], value='monet', description='Style')\n"
        "label = widgets.Label(value='chosen: monet')\n"
        "def _on_change(change):\n"
        "    label.value = 'chosen: ' + change['new']\n"
        "dd.observe(_on_change, names='value')\n"
        "display(dd, label)"
    ),
    (
        "size = widgets.IntSlider(value=3, min=0, max=10, description='Size')\n"
        "go = widgets.Button(description='Go')\n"
        "result = widgets.Label(value='not clicked')\n"
        "go.on_click(lambda _: setattr(result, 'value', f'clicked with size {size.value}'))\n"
        "display(widgets.VBox([size, go, result]))"
    ),
]


def harness_notebook() -> nbformat.NotebookNode:
    return new_notebook(cells=[new_markdown_cell("# harness self-test")] + [new_code_cell(src) for src in CELLS])


@pytest.mark.timeout(180)
def test_harness_roundtrip(jupyter_server, page, console_errors, tmp_path):
    t0 = time.monotonic()
    relpath = jupyter_server.write_notebook(harness_notebook(), "harness_selftest.ipynb")

    lab.open_notebook(page, jupyter_server, relpath)
    t_open = time.monotonic()
    lab.run_all_cells(page, timeout_s=90)
    t_run = time.monotonic()

    # 1. text
    lab.wait_for_text(
        page, ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']", f"{HELLO} ARTLAB_QUICK=1"
    )

    # 2. a decoded PNG
    images = lab.wait_images_loaded(page, minimum=1)
    assert images[0]["naturalWidth"] > 0 and images[0]["mime"] == "image/png"

    # 3. live widgets (not the "Loading widget..." / model-not-found text)
    summary = lab.wait_widgets_rendered(page, minimum=5)  # dropdown, label, box + 3 children
    assert summary.widget_fallbacks == []
    assert summary.rendered_images >= 1
    assert summary.errors == [], summary.errors
    assert summary.stderr == [], summary.stderr
    assert lab.dropdown_value(page, "Style") == "monet"
    assert lab.widget_label_texts(page) == ["chosen: monet", "not clicked"]

    # kernel round trip: browser change -> comm -> observer -> label in browser
    lab.select_dropdown(page, "Style", "hokusai")
    lab.wait_for_text(page, "div.jupyter-widgets.widget-label", "chosen: hokusai")

    # slider + button inside a VBox: the helpers find the innermost view
    lab.set_slider(page, "Size", 7)
    lab.click_button(page, "Go")
    lab.wait_for_text(page, "div.jupyter-widgets.widget-label", "clicked with size 7")
    lab.wait_kernel_idle(page)

    shot = lab.screenshot(page, tmp_path / "harness.png")
    print(f"\nscreenshot: {shot}")
    print(f"timings: open {t_open - t0:.1f}s, run all {t_run - t_open:.1f}s, total {time.monotonic() - t0:.1f}s")

    assert console_errors == []


@pytest.mark.timeout(120)
def test_harness_reports_errors(jupyter_server, page, console_errors):
    """The harness sees a traceback and tells it from a plain stderr line;
    the saved notebook confirms it exactly. Run All stops at the error."""
    nb = new_notebook(
        cells=[
            new_code_cell("import sys; print('just a warning', file=sys.stderr)"),
            new_code_cell("1 / 0"),
            new_code_cell("print('not reached')"),
        ]
    )
    relpath = jupyter_server.write_notebook(nb, "harness_errors.ipynb")
    lab.open_notebook(page, jupyter_server, relpath)
    state = lab.run_all_cells(page, timeout_s=60)
    assert state["prompts"][2] in ("[ ]:", "[ ]")  # never ran

    summary = lab.output_summary(page)
    assert len(summary.stderr) == 2
    assert len(summary.errors) == 1 and "ZeroDivisionError" in summary.errors[0]

    saved = lab.save_notebook(page, jupyter_server, relpath)
    assert lab.saved_error_outputs(saved) == ["cell 1: ZeroDivisionError: division by zero"]
    assert console_errors == []
