"""Every committed notebook is exactly what its generator, tools/make_notebook_NN.py, writes.

The generators are the notebooks' source: a lesson is edited there and regenerated. Each test runs one
generator as ``python tools/make_notebook_NN.py --out-dir TMP`` does (its ``__main__`` block, in this
process so that torch is imported once) and compares the written notebook with notebooks/NN_*.ipynb, parsed
as JSON: the cells' types, ids, metadata and sources, the notebook's metadata and format version. Outputs and
execution counts are left out of the comparison (tests/test_notebooks.py checks that the committed notebooks
have none), so an edit to a generator that is not regenerated, or a hand edit to a notebook that is not made
in its generator, fails here. Cell ids are deterministic (tools/notebook_writer.py), so this is also the
file the generator writes, byte for byte.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _generator(notebook: Path) -> Path:
    return TOOLS / f"make_notebook_{notebook.name[:2]}.py"


def _tool_determined(nb: dict) -> dict:
    """The parts of a notebook the generator determines (everything but outputs and execution counts)."""
    cells = [{key: value for key, value in cell.items() if key not in ("outputs", "execution_count")}
             for cell in nb["cells"]]
    return {**{key: value for key, value in nb.items() if key != "cells"}, "cells": cells}


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else source


def _line(lines: list[str], n: int) -> str:
    return lines[n] if n < len(lines) else "<end of cell>"


def _first_difference(written: dict, committed: dict) -> str:
    if len(written["cells"]) != len(committed["cells"]):
        return f"the generator writes {len(written['cells'])} cells, the notebook has {len(committed['cells'])}"
    for index, (new, old) in enumerate(zip(written["cells"], committed["cells"])):
        for key in sorted(set(new) | set(old)):
            if new.get(key) == old.get(key):
                continue
            where = f"cell {index} ({old.get('id')}), {key!r}"
            if key == "source":
                new_lines, old_lines = _text(new[key]).splitlines(), _text(old.get(key, "")).splitlines()
                line = next((n for n, (a, b) in enumerate(zip(new_lines, old_lines)) if a != b),
                            min(len(new_lines), len(old_lines)))
                return (f"{where}, line {line + 1}: generator {_line(new_lines, line)!r} "
                        f"!= committed {_line(old_lines, line)!r}")
            return f"{where}: generator {new.get(key)!r:.300} != committed {old.get(key)!r:.300}"
    for key in sorted((set(written) | set(committed)) - {"cells"}):
        if written.get(key) != committed.get(key):
            return f"notebook {key!r}: generator {written.get(key)!r} != committed {committed.get(key)!r}"
    return "?"


def test_every_notebook_has_a_generator():
    assert NOTEBOOKS, "no notebooks found"
    missing = [p.name for p in NOTEBOOKS if not _generator(p).is_file()]
    assert not missing, f"notebooks without a tools/make_notebook_NN.py generator: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_is_what_its_generator_writes(path, tmp_path, monkeypatch, capsys):
    tool = _generator(path)
    monkeypatch.syspath_prepend(str(TOOLS))  # the generators import notebook_writer from their own folder
    monkeypatch.setattr(sys, "argv", [str(tool), "--out-dir", str(tmp_path)])
    runpy.run_path(str(tool), run_name="__main__")
    out = tmp_path / path.name
    assert out.is_file(), f"tools/{tool.name} --out-dir DIR did not write DIR/{path.name}: {capsys.readouterr().out}"
    assert not (set(p.name for p in tmp_path.iterdir()) - {path.name}), "the generator wrote other files"

    written = _tool_determined(json.loads(out.read_text(encoding="utf-8")))
    committed = _tool_determined(json.loads(path.read_text(encoding="utf-8")))
    assert written == committed, (
        f"notebooks/{path.name} is not what tools/{tool.name} writes; run python tools/{tool.name} to regenerate "
        f"it (and commit the result). First difference: {_first_difference(written, committed)}")


def test_cell_ids_are_deterministic_and_valid():
    """Valid nbformat cell ids (1-64 of [a-zA-Z0-9-_]), unique within each notebook."""
    import re

    for path in NOTEBOOKS:
        ids = [cell["id"] for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]]
        assert len(set(ids)) == len(ids), f"{path.name}: duplicate cell ids"
        assert all(re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", i) for i in ids), f"{path.name}: invalid cell ids {ids}"
