"""Shared by tools/make_notebook_*.py: write a lesson notebook without outputs.

Each tool ends with ``main(cells, "NN_name.ipynb")``: ``python tools/make_notebook_NN.py`` writes
notebooks/NN_name.ipynb, ``--out-dir DIR`` writes DIR/NN_name.ipynb instead (tests/test_notebook_sources.py
regenerates every notebook into a temporary folder and compares it with the committed one). Cell ids are
derived from the notebook's name and the cell's position, so regenerating an unchanged lesson gives a
byte-identical file.
"""

import argparse
import re
from pathlib import Path

import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def cell_id(name: str, index: int) -> str:
    """A deterministic nbformat cell id (1-64 of [a-zA-Z0-9-_]): the notebook's stem and the cell's index,
    e.g. ``00_start_here-03``."""
    stem = re.sub(r"[^a-zA-Z0-9_-]", "-", Path(name).stem)[:56]
    return f"{stem}-{index:02d}"


def write(cells: list, name: str, out_dir: str | Path | None = None) -> Path:
    """Write ``cells`` as <out_dir>/<name> (default notebooks/<name>) with the python3 kernel, no outputs and
    deterministic cell ids."""
    for index, cell in enumerate(cells):
        cell["id"] = cell_id(name, index)
    nb = nbf.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    })
    nbf.validate(nb)
    path = Path(NOTEBOOKS if out_dir is None else out_dir) / name
    nbf.write(nb, path)
    print(f"wrote {path}")
    return path


def main(cells: list, name: str, argv: list[str] | None = None) -> Path:
    """The tools' command line: ``[--out-dir DIR]`` (default: the repository's notebooks/ folder)."""
    parser = argparse.ArgumentParser(description=f"Write {name} (outputs empty).")
    parser.add_argument("--out-dir", type=Path, default=NOTEBOOKS,
                        help="folder to write the notebook into (default: %(default)s)")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    return write(cells, name, args.out_dir)


def lite0_spec():
    """EfficientNet-Lite0's spec (style layers, content layer, β): texts that name its layers are generated
    from it, so a change to the network's defaults shows up as a notebook to regenerate (a test compares)."""
    from artlab.models import registered_backbones

    return registered_backbones()["efficientnet_lite0"]


def names(layers) -> str:
    """`a`, `b` and `c`: layer names for a text."""
    quoted = [f"`{layer}`" for layer in layers]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]

