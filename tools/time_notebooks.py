"""Execute lesson notebooks headless and report how long each takes.

    .venv/bin/python tools/time_notebooks.py               # every notebook, default settings
    .venv/bin/python tools/time_notebooks.py --quick 01 03 # ARTLAB_QUICK=1, notebooks 01 and 03
    .venv/bin/python tools/time_notebooks.py --save /tmp/executed 01   # keep the executed copies to look at

Runs each notebook in a fresh kernel from a temporary working folder (as the test suite does),
so nothing is written into notebooks/. Exit status 1 when a notebook fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run(path: Path, *, quick: bool, save: Path | None, timeout: int) -> tuple[float, str | None]:
    """Execute one notebook; (seconds, error text or None)."""
    os.environ["ARTLAB_QUICK"] = "1" if quick else "0"
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    error = None
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": work}}).execute()
        except CellExecutionError as exc:
            error = str(exc).splitlines()[-1] if str(exc) else type(exc).__name__
        seconds = time.perf_counter() - start
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, save / path.name)
    return seconds, error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", help="notebook number prefixes (00 … 05); default: all")
    parser.add_argument("--quick", action="store_true", help="ARTLAB_QUICK=1, as in the test suite")
    parser.add_argument("--save", type=Path, help="write the executed notebooks into this folder")
    parser.add_argument("--timeout", type=int, default=3600, help="per-cell timeout in seconds")
    args = parser.parse_args(argv)
    paths = sorted(p for p in NOTEBOOKS.glob("*.ipynb") if not args.which or p.name[:2] in args.which)
    failed = False
    for path in paths:
        seconds, error = run(path, quick=args.quick, save=args.save, timeout=args.timeout)
        mode = "quick" if args.quick else "default"
        print(f"{path.name:32s} {mode:8s} {seconds:7.1f} s  {'FAILED: ' + error if error else 'ok'}", flush=True)
        failed |= error is not None
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
