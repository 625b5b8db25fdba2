"""Shared fixtures. The suite never touches the network and never needs ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

# No test may try to download anything; figures render headless.
os.environ.setdefault("ARTLAB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real paintings and photos); skips when absent (a user's fresh clone)."""
    data = SHARED / "data"
    if not (data / "paintings").is_dir():
        pytest.skip("../shared/data is not present (only developers' machines and CI have it)")
    return data


@pytest.fixture(scope="session")
def corpus():
    """The default sample corpus (built once per machine, then read from the cache)."""
    from artlab.data import sample_corpus

    return sample_corpus(progress=False)


@pytest.fixture()
def hub_cache(tmp_path, monkeypatch) -> Path:
    """A private, empty torch hub cache (TORCH_HOME) for weight-resolution tests."""
    import torch

    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    ckpt = home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    return ckpt
