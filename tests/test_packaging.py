"""The two dependency lists (pip and conda) stay the same set."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# conda package names that differ from PyPI's
CONDA_TO_PYPI = {"pytorch": "torch", "python-build": "build"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pypi = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    conda = set()
    text = (ROOT / "environment.yml").read_text()
    for line in text[text.index("dependencies:"):].splitlines():
        m = re.match(r"^\s+-\s+([A-Za-z][\w.-]*)", line)
        if m and m.group(1) not in ("pip", "python", "-e"):
            conda.add(CONDA_TO_PYPI.get(m.group(1).lower(), m.group(1).lower()))
    assert conda == pypi, f"only in environment.yml: {conda - pypi}; only in pyproject: {pypi - conda}"
