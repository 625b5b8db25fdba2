"""The artlab command: demo page, corpus, lab, and packaging of the widgets folder."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from artlab.cli import build_parser, main, notebooks_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # ~25-30 s: builds the whole quick tour (make test-fast leaves it out)
def test_demo_quick_writes_index_with_figures(tmp_path, capsys, corpus, hub_cache):
    assert main(["demo", "--quick", "--out", str(tmp_path / "tour")]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    page = Path(printed)
    assert page == tmp_path / "tour" / "index.html" and page.is_file()
    html = page.read_text()
    images = re.findall(r'<img src="([^"]+)"', html)
    assert {"corpus.png", "feature_maps.png", "style_distances.png", "textures.png", "predictions.png",
            "confidence.png"} <= set(images)
    for name in images:
        data = (page.parent / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000
    # no VGG-19 file in the (private) hub cache: the tour runs on the bundled ImageNet EfficientNet-Lite0,
    # says so and how to get VGG-19, and shows no random-weights banner
    assert "efficientnet_lite0 · ImageNet" in html and "artlab weights download vgg19" in html
    assert "random weights" not in html and "random init" not in html


def test_lab_command_points_jupyter_at_the_notebooks(monkeypatch):
    calls = []
    monkeypatch.setattr("subprocess.call", lambda cmd: calls.append(cmd) or 0)
    assert main(["lab", "--", "--no-browser"]) == 0
    cmd = calls[0]
    assert cmd[1:4] == ["-m", "jupyter", "lab"]
    assert f"--ServerApp.root_dir={notebooks_dir()}" in cmd and cmd[-1] == "--no-browser"


def test_lab_without_notebooks_says_what_to_do(tmp_path, capsys):
    assert main(["lab", "--dir", str(tmp_path / "missing")]) == 2
    assert "pass --dir" in capsys.readouterr().err


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "artlab"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("artlab ")


def test_parser_lists_every_command():
    text = build_parser().format_help()
    for command in ("demo", "lab", "corpus", "weights"):
        assert command in text


def test_widgets_are_the_package_folder_in_an_editable_install():
    import artlab.widgets

    assert Path(artlab.widgets.__file__).resolve() == ROOT / "artlab" / "widgets" / "__init__.py"


@pytest.mark.slow
def test_regular_wheel_install_maps_widgets(tmp_path):
    """A built wheel carries artlab/widgets and imports from there."""
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    wheel = next(tmp_path.glob("artlab-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "artlab/widgets/__init__.py" in names and "artlab/widgets/feature_maps.py" in names
    assert not [n for n in names if n.startswith(("widgets/", "tests/", "notebooks/"))]
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    code = f"import sys; sys.path.insert(0, {str(target)!r}); import artlab.widgets as w; print(w.__file__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(target / "artlab" / "widgets" / "__init__.py")
    # the core never imports the Jupyter layer's libraries
    core = [n for n in names if n.startswith("artlab/") and not n.startswith("artlab/widgets/") and n.endswith(".py")]
    for name in core:
        source = zipfile.ZipFile(wheel).read(name).decode()
        assert not re.search(r"^\s*(import|from)\s+(ipywidgets|plotly)", source, re.M), name
