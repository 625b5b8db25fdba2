"""Shared by tools/make_notebook_*.py: write a lesson notebook without outputs."""

from pathlib import Path

import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def write(cells: list, name: str) -> Path:
    """Write ``cells`` as notebooks/<name> with the python3 kernel and no outputs."""
    nb = nbf.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    })
    path = NOTEBOOKS / name
    nbf.write(nb, path)
    print(f"wrote {path}")
    return path


def lite0_spec():
    """EfficientNet-Lite0's spec (style layers, content layer, β): texts that name its layers are generated
    from it, so a change to the network's defaults shows up as a notebook to regenerate (a test compares)."""
    from artlab.models import registered_backbones

    return registered_backbones()["efficientnet_lite0"]


def names(layers) -> str:
    """`a`, `b` and `c`: layer names for a text."""
    quoted = [f"`{layer}`" for layer in layers]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]

