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


def _fake_setup(tmp_path: Path, env: dict[str, str]) -> list[str]:
    """Run ``dev.sh setup`` against a stand-in ``uv`` on PATH that records its command lines
    (and makes a stand-in venv); returns the recorded lines. Nothing is downloaded."""
    import os
    import subprocess

    bin_dir, log = tmp_path / "bin", tmp_path / "uv.log"
    bin_dir.mkdir(exist_ok=True)
    uv = bin_dir / "uv"
    uv.write_text('#!/usr/bin/env bash\necho "$*" >> "$UV_LOG"\n'
                  'if [ "$1" = venv ]; then v="${@: -1}"; mkdir -p "$v/bin"; printf "#!/bin/sh\\n" > "$v/bin/python"; '
                  'chmod +x "$v/bin/python"; fi\n')
    uv.chmod(0o755)
    run_env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "UV_LOG": str(log),
               "ARTLAB_VENV": str(tmp_path / "venv"), **env}
    subprocess.run(["bash", str(ROOT / "dev.sh"), "setup"], env=run_env, check=True, capture_output=True, timeout=60)
    return log.read_text().splitlines() if log.exists() else []


def test_cpu_only_torch_install_is_one_variable(tmp_path):
    """ARTLAB_TORCH=cpu asks uv for PyTorch's CPU wheels and is remembered; ARTLAB_TORCH=pypi goes back;
    a switch reinstalls torch (another build of the same version), an unchanged setup calls nothing."""
    calls = _fake_setup(tmp_path, {})
    assert len(calls) == 2 and "--torch-backend" not in calls[1] and "--reinstall" not in calls[1]
    assert _fake_setup(tmp_path, {}) == calls  # up to date: uv is not called again
    calls = _fake_setup(tmp_path, {"ARTLAB_TORCH": "cpu"})
    assert len(calls) == 3
    assert "--torch-backend cpu --reinstall-package torch --reinstall-package torchvision -e" in calls[2]
    assert len(_fake_setup(tmp_path, {})) == 3  # remembered: the CPU build stays, nothing to do
    calls = _fake_setup(tmp_path, {"ARTLAB_TORCH": "pypi"})
    assert len(calls) == 4 and "--torch-backend" not in calls[3]
    assert "--reinstall-package torch --reinstall-package torchvision -e" in calls[3]
