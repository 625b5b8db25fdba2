"""Lesson notebooks against the class-period budget: Run All at the defaults, 3 min each, first picture ~20 s.

Each lesson notebook runs headless in a fresh kernel from a temporary folder
(``tools/time_notebooks.py``'s :func:`time_notebook`, the function the test suite uses) at its default
settings, which are what a student's Run All gets on a CPU. Reported per notebook: the seconds,
the seconds until the first picture (an image or a widget) is on screen, the slowest cell, and two
ratios against the budget: ``total/budget`` (≤ 1: fits 3 minutes) and ``first_picture/budget``
(≤ 1: the first picture within 20 s). ``--quick`` runs the small settings (ARTLAB_QUICK=1) instead,
which says nothing about the budget and is only a smoke run.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _timer():
    spec = importlib.util.spec_from_file_location("time_notebooks", TOOLS / "time_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(quick: bool = False) -> list[dict]:
    timer = _timer()
    rows = []
    for path in sorted(timer.NOTEBOOKS.glob("*.ipynb")):
        with tempfile.TemporaryDirectory() as work:
            t = timer.time_notebook(path, quick=quick, work=work, timeout=1800)
        first = t.first_picture_s if t.first_picture_s is not None else float("nan")
        rows.append({
            "case": f"{path.name} ({'quick' if quick else 'defaults'})",
            "seconds": t.seconds,
            "first_picture_s": first,
            "total/budget": t.seconds / timer.BUDGET_S,
            "first_picture/budget": first / timer.FIRST_PICTURE_S,
            "slowest_cell": f"{t.slowest_cell[0]}: {t.slowest_cell[1]:.1f} s",
            "status": t.error or "ok",
        })
    return rows
