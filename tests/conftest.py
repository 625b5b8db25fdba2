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


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread while a module runs (``pytestmark = pytest.mark.usefixtures(...)``).

    For modules of tiny tensors: on the shared 2-core test machine two threads spent most
    of their time waiting on each other (measured: MobileNet training steps 20× slower,
    a 32 px StyleGAN image ~0.5 s instead of ~0.01 s).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
