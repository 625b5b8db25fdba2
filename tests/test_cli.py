"""The artlab command: demo page, corpus, lab, and packaging of the widgets folder."""

from __future__ import annotations

import json
import os
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


def _notebook(*sources: str, outputs: bool = False, metadata: dict | None = None) -> str:
    """A minimal lesson notebook; with ``outputs`` it looks as if it had been run."""
    cells = [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": src,
              "execution_count": i + 1 if outputs else None,
              "outputs": [{"output_type": "stream", "name": "stdout", "text": "ran\n"}] if outputs else []}
             for i, src in enumerate(sources)]
    return json.dumps({"cells": cells, "metadata": metadata or {}, "nbformat": 4, "nbformat_minor": 5})


@pytest.fixture
def shipped(tmp_path):
    """A fake checkout's notebooks/ with two lessons (version 1)."""
    folder = tmp_path / "shipped"
    folder.mkdir()
    (folder / "00_start_here.ipynb").write_text(_notebook("print('start v1')"))
    (folder / "03_style_transfer.ipynb").write_text(_notebook("print('transfer v1')"))
    return folder


@pytest.fixture
def jupyter(monkeypatch):
    """Records the command line artlab lab would start instead of starting JupyterLab."""
    calls: list[list[str]] = []
    monkeypatch.setattr("subprocess.call", lambda cmd: calls.append(cmd) or 0)
    return calls


def _jupyter_head(folder: Path) -> list[str]:
    root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    return [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={folder.resolve()}", *root]


def test_lab_passes_its_jupyter_options_on(tmp_path, shipped, jupyter):
    work = tmp_path / "lessons"
    assert main(["lab", "--dir", str(work), "--from", str(shipped), "--no-browser", "--port", "8898"]) == 0
    assert jupyter == [[*_jupyter_head(work), "--no-browser", "--port=8898"]]
    # options artlab does not know, and everything after --, go to Jupyter in order; --dir after -- is Jupyter's
    assert main(["lab", "--from", str(shipped), "--ip", "0.0.0.0", "--ServerApp.token", "abc", "--dir", str(work),
                 "--", "--some-jupyter-flag", "--dir", "x"]) == 0
    assert jupyter[1] == [*_jupyter_head(work), "--ip=0.0.0.0", "--ServerApp.token", "abc",
                          "--some-jupyter-flag", "--dir", "x"]


def test_lab_rejects_a_bad_port_and_other_commands_keep_rejecting_unknown_options(tmp_path, shipped, jupyter,
                                                                                  capsys):
    with pytest.raises(SystemExit):
        main(["lab", "--dir", str(tmp_path / "w"), "--from", str(shipped), "--port", "http"])
    assert "'http' is not a port number" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["corpus", "--no-browser"])
    assert "unrecognized arguments: --no-browser" in capsys.readouterr().err
    assert jupyter == []


def test_lab_copies_the_checkouts_lessons_into_the_home_folder(tmp_path, monkeypatch, jupyter, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    shipped_lessons = sorted(notebooks_dir().glob("*.ipynb"))
    before = {p.name: p.read_bytes() for p in shipped_lessons}
    assert main(["lab"]) == 0
    work = tmp_path / "artlab-lessons"
    assert jupyter == [_jupyter_head(work)]
    assert {p.name: p.read_bytes() for p in work.glob("*.ipynb")} == before
    assert f"copied {len(before)} lessons into {work}" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in shipped_lessons} == before  # the checkout is untouched
    assert "artlab-lessons" in build_parser().format_help()


def test_lab_keeps_run_and_changed_copies_and_updates_untouched_ones(tmp_path, shipped, jupyter, capsys):
    work = tmp_path / "lessons"
    args = ["lab", "--dir", str(work), "--from", str(shipped)]
    assert main(args) == 0
    assert "copied 2 lessons" in capsys.readouterr().out
    # the student runs lesson 03; Jupyter rewrites lesson 00's metadata on opening it (no other change)
    ran = _notebook("print('transfer v1')", outputs=True)
    (work / "03_style_transfer.ipynb").write_text(ran)
    (work / "00_start_here.ipynb").write_text(_notebook("print('start v1')", metadata={"language_info": {"n": 1}}))
    assert main(args) == 0
    assert "artlab lab: copied" not in capsys.readouterr().out
    assert (work / "03_style_transfer.ipynb").read_text() == ran
    # a new artlab ships new versions of both lessons
    (shipped / "00_start_here.ipynb").write_text(_notebook("print('start v2')"))
    (shipped / "03_style_transfer.ipynb").write_text(_notebook("print('transfer v2')"))
    assert main(args) == 0
    out = capsys.readouterr().out
    assert (work / "00_start_here.ipynb").read_bytes() == (shipped / "00_start_here.ipynb").read_bytes()
    assert "updated 00_start_here.ipynb to the new version" in out
    assert (work / "03_style_transfer.ipynb").read_text() == ran  # never overwritten
    assert (work / "03_style_transfer-new.ipynb").read_bytes() == (shipped / "03_style_transfer.ipynb").read_bytes()
    line = next(x for x in out.splitlines() if "03_style_transfer-new.ipynb" in x)
    assert "yours is kept" in line and "artlab lab --reset 03" in line
    # offered once: deleting the offer does not bring it back until the next version
    (work / "03_style_transfer-new.ipynb").unlink()
    assert main(args) == 0
    assert "03_style" not in capsys.readouterr().out and not (work / "03_style_transfer-new.ipynb").exists()
    (shipped / "03_style_transfer.ipynb").write_text(_notebook("print('transfer v3')"))
    assert main(args) == 0
    assert "print('transfer v3')" in (work / "03_style_transfer-new.ipynb").read_text()
    # the student runs the offered copy too: v4 goes to -new-2, both runs are kept
    ran_new = _notebook("print('transfer v3')", outputs=True)
    (work / "03_style_transfer-new.ipynb").write_text(ran_new)
    (shipped / "03_style_transfer.ipynb").write_text(_notebook("print('transfer v4')"))
    assert main(args) == 0
    assert (work / "03_style_transfer-new.ipynb").read_text() == ran_new
    assert "print('transfer v4')" in (work / "03_style_transfer-new-2.ipynb").read_text()
    assert (work / "03_style_transfer.ipynb").read_text() == ran
    assert len(jupyter) == 6 and all(cmd == _jupyter_head(work) for cmd in jupyter)


def test_lab_reset_puts_the_shipped_lesson_back_and_keeps_yours(tmp_path, shipped, jupyter, capsys):
    work = tmp_path / "lessons"
    args = ["lab", "--dir", str(work), "--from", str(shipped)]
    assert main(args) == 0
    ran = _notebook("print('transfer v1')", "x = 1", outputs=True)
    (work / "03_style_transfer.ipynb").write_text(ran)
    (shipped / "03_style_transfer.ipynb").write_text(_notebook("print('transfer v2')"))
    assert main(args) == 0
    assert (work / "03_style_transfer-new.ipynb").is_file()
    capsys.readouterr()
    assert main([*args, "--reset", "03"]) == 0
    assert "your copy is kept as 03_style_transfer-yours.ipynb" in capsys.readouterr().out
    assert (work / "03_style_transfer-yours.ipynb").read_text() == ran
    assert (work / "03_style_transfer.ipynb").read_bytes() == (shipped / "03_style_transfer.ipynb").read_bytes()
    assert not (work / "03_style_transfer-new.ipynb").exists()  # the untouched offer is now the lesson itself
    # a second reset of a changed copy never replaces the first kept one
    (work / "03_style_transfer.ipynb").write_text(ran)
    assert main([*args, "--reset", "03_style_transfer"]) == 0
    assert (work / "03_style_transfer-yours.ipynb").read_text() == ran
    assert (work / "03_style_transfer-yours-2.ipynb").read_text() == ran
    assert main([*args, "--reset", "7"]) == 2
    assert "--reset '7' names no single lesson; use a lesson number (00, 03) or all" in capsys.readouterr().err


def test_lab_never_overwrites_a_file_it_cannot_read_or_did_not_write(tmp_path, shipped, jupyter):
    work = tmp_path / "lessons"
    work.mkdir()
    (work / "00_start_here.ipynb").write_text("not a notebook")
    (work / "03_style_transfer.ipynb").write_text(_notebook("my own lesson"))  # same name, not from artlab
    assert main(["lab", "--dir", str(work), "--from", str(shipped)]) == 0
    assert (work / "00_start_here.ipynb").read_text() == "not a notebook"
    assert (work / "03_style_transfer.ipynb").read_text() == _notebook("my own lesson")
    assert (work / "00_start_here-new.ipynb").read_bytes() == (shipped / "00_start_here.ipynb").read_bytes()
    assert main(["lab", "--dir", str(work), "--from", str(shipped), "--reset", "all"]) == 0
    assert (work / "00_start_here-yours.ipynb").read_text() == "not a notebook"
    assert (work / "03_style_transfer-yours.ipynb").read_text() == _notebook("my own lesson")


def test_lab_without_shipped_lessons_says_what_to_do(tmp_path, monkeypatch, jupyter, capsys):
    checkout_lessons = notebooks_dir()
    monkeypatch.setattr("artlab.lessons.shipped_dir", lambda: None)  # as in a pip-installed artlab
    work = tmp_path / "lessons"
    assert main(["lab", "--dir", str(work)]) == 2
    err = capsys.readouterr().err
    assert "ship with the source repository" in err and "--from CHECKOUT/notebooks" in err and jupyter == []
    # copies made earlier still open, as they are
    work.mkdir()
    (work / "00_start_here.ipynb").write_text(_notebook("mine", outputs=True))
    assert main(["lab", "--dir", str(work)]) == 0
    assert "opening your copies" in capsys.readouterr().out and jupyter == [_jupyter_head(work)]
    assert (work / "00_start_here.ipynb").read_text() == _notebook("mine", outputs=True)
    # the shipped folder itself is never served
    assert main(["lab", "--dir", str(checkout_lessons), "--from", str(checkout_lessons)]) == 2
    assert "choose another --dir" in capsys.readouterr().err


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
