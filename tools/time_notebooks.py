"""Execute lesson notebooks headless and report how long each takes, and when its first picture appears.

    .venv/bin/python tools/time_notebooks.py               # every notebook, default settings
    .venv/bin/python tools/time_notebooks.py --quick 01 03 # ARTLAB_QUICK=1, notebooks 01 and 03
    .venv/bin/python tools/time_notebooks.py --save /tmp/executed 01   # keep the executed copies to look at

Runs each notebook in a fresh kernel from a temporary working folder (as the test suite does),
so nothing is written into notebooks/. Exit status 1 when a notebook fails. The lesson budget
(issue 15: a class period) is :data:`BUDGET_S` per notebook at its defaults on a 2-core CPU, with
the first picture within :data:`FIRST_PICTURE_S`; tests/test_notebooks.py runs every notebook at
its defaults with :func:`time_notebook` and prints the times, ``benchmarks/bench_notebooks.py``
reports them against the budget.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
BUDGET_S = 180.0       # a lesson notebook under Run All at its defaults
FIRST_PICTURE_S = 20.0  # … and the first picture on screen


@dataclass
class NotebookTiming:
    """One headless run: total ``seconds``, seconds until the first cell with a picture (an image or a
    widget) finished (``first_picture_s``, None if none), the slowest cell (index, seconds, first line)
    and the error text (None when the notebook ran through)."""

    name: str
    seconds: float
    first_picture_s: float | None
    slowest_cell: tuple[int, float, str]
    error: str | None
    notebook: nbformat.NotebookNode

    def line(self, mode: str = "default") -> str:
        first = f"{self.first_picture_s:5.1f} s" if self.first_picture_s is not None else "  none "
        cell, secs, src = self.slowest_cell
        status = "FAILED: " + self.error if self.error else "ok"
        return (f"{self.name:30s} {mode:8s} {self.seconds:7.1f} s  first picture {first}  "
                f"slowest cell {cell} {secs:6.1f} s ({src[:40]})  {status}")


def _stamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _shows_a_picture(cell: nbformat.NotebookNode) -> bool:
    """An image, or a widget that is not a progress bar (tqdm's text form reads "40%|████  | 4/10 …")."""
    data = [o.get("data", {}) for o in cell.get("outputs", [])]
    return any("image/png" in d or "image/jpeg" in d or ("application/vnd.jupyter.widget-view+json" in d
               and "%|" not in str(d.get("text/plain", ""))) for d in data)


def time_notebook(path: str | os.PathLike, *, quick: bool, work: str | os.PathLike,
                  timeout: int = 600, env: dict[str, str] | None = None) -> NotebookTiming:
    """Execute ``path`` in a fresh kernel with ``work`` as its folder (ARTLAB_QUICK=1 when ``quick``).

    Errors in a cell are returned, not raised, so a caller can report them with the times. The kernel
    inherits this process's environment plus ``env``.
    """
    path = Path(path)
    saved = {k: os.environ.get(k) for k in ("ARTLAB_QUICK", "MPLBACKEND", *(env or {}))}
    os.environ.update({"ARTLAB_QUICK": "1" if quick else "0", **(env or {})})
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    error = None
    try:
        start = time.perf_counter()
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=True,
                           resources={"metadata": {"path": str(work)}}).execute()
        except CellExecutionError as exc:
            error = str(exc).splitlines()[-1] if str(exc) else type(exc).__name__
        seconds = time.perf_counter() - start
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    first_start, first_picture, slowest = None, None, (0, 0.0, "")
    for i, cell in enumerate(nb.cells):
        stamps = cell.get("metadata", {}).get("execution", {})
        if cell.cell_type != "code" or "iopub.execute_input" not in stamps or "shell.execute_reply" not in stamps:
            continue
        began, ended = _stamp(stamps["iopub.execute_input"]), _stamp(stamps["shell.execute_reply"])
        first_start = first_start or began
        if (ended - began).total_seconds() > slowest[1]:
            slowest = (i, (ended - began).total_seconds(), cell.source.splitlines()[0] if cell.source else "")
        if first_picture is None and _shows_a_picture(cell):
            first_picture = (ended - first_start).total_seconds()
    return NotebookTiming(path.name, seconds, first_picture, slowest, error, nb)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", help="notebook number prefixes (00 … 08); default: all")
    parser.add_argument("--quick", action="store_true", help="ARTLAB_QUICK=1 (the small settings)")
    parser.add_argument("--save", type=Path, help="write the executed notebooks into this folder")
    parser.add_argument("--timeout", type=int, default=3600, help="per-cell timeout in seconds")
    args = parser.parse_args(argv)
    paths = sorted(p for p in NOTEBOOKS.glob("*.ipynb") if not args.which or p.name[:2] in args.which)
    failed = False
    for path in paths:
        with tempfile.TemporaryDirectory() as work:
            timing = time_notebook(path, quick=args.quick, work=work, timeout=args.timeout)
        print(timing.line("quick" if args.quick else "default"), flush=True)
        if args.save is not None:
            args.save.mkdir(parents=True, exist_ok=True)
            nbformat.write(timing.notebook, args.save / path.name)
        failed |= timing.error is not None
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
