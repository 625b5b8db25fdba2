"""The progress rule (artlab.runs.wants_progress) and the blocking form of a Run (drive).

``progress=None`` means "on when a person is watching": inside a Jupyter kernel or when
stderr is a terminal; ``ARTLAB_PROGRESS`` overrides that for a whole process; True/False
always win. The detection is monkeypatched here, so no test needs a kernel or a terminal.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from artlab import runs
from artlab.runs import PROGRESS_ENV, Run, drive, in_kernel, progress_bar, stderr_is_terminal, wants_progress


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    """Each test starts without ARTLAB_PROGRESS, whatever the shell running the suite set."""
    monkeypatch.delenv(PROGRESS_ENV, raising=False)


def _watching(monkeypatch, *, kernel: bool, tty: bool) -> None:
    monkeypatch.setattr(runs, "in_kernel", lambda: kernel)
    monkeypatch.setattr(runs, "stderr_is_terminal", lambda: tty)


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(("kernel", "tty", "shown"), [(True, False, True), (False, True, True),
                                                      (True, True, True), (False, False, False)])
def test_automatic_progress_is_on_only_when_a_person_is_watching(monkeypatch, kernel, tty, shown):
    _watching(monkeypatch, kernel=kernel, tty=tty)
    assert wants_progress(None) is shown


@pytest.mark.parametrize("kernel", [True, False])
def test_an_explicit_choice_always_wins(monkeypatch, kernel):
    _watching(monkeypatch, kernel=kernel, tty=kernel)
    monkeypatch.setenv(PROGRESS_ENV, "1" if not kernel else "0")
    assert wants_progress(True) is True
    assert wants_progress(False) is False


@pytest.mark.parametrize(("value", "shown"), [("0", False), ("off", False), ("False", False), ("no", False),
                                              ("1", True), ("on", True), (" TRUE ", True), ("yes", True)])
def test_the_environment_variable_overrides_the_detection(monkeypatch, value, shown):
    _watching(monkeypatch, kernel=not shown, tty=not shown)  # the detection says the opposite
    monkeypatch.setenv(PROGRESS_ENV, value)
    assert wants_progress(None) is shown


def test_an_empty_environment_variable_means_automatic(monkeypatch):
    _watching(monkeypatch, kernel=True, tty=False)
    monkeypatch.setenv(PROGRESS_ENV, "")
    assert wants_progress(None) is True


def test_bad_values_are_refused_with_what_to_do(monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, "maybe")
    with pytest.raises(ValueError, match="ARTLAB_PROGRESS='maybe'.*set it to 1"):
        wants_progress(None)
    monkeypatch.delenv(PROGRESS_ENV)
    with pytest.raises(TypeError, match="True, False or None"):
        wants_progress("yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="True, False or None"):
        wants_progress(1)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the detection


class _Shell:
    def __init__(self, kernel: object | None) -> None:
        if kernel is not None:
            self.kernel = kernel


def _fake_ipython(monkeypatch, shell: object | None) -> None:
    module = types.ModuleType("IPython")
    module.get_ipython = lambda: shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", module)


def test_a_kernel_is_an_ipython_shell_with_a_kernel(monkeypatch):
    _fake_ipython(monkeypatch, _Shell(kernel=object()))
    assert in_kernel() is True
    _fake_ipython(monkeypatch, _Shell(kernel=None))  # terminal IPython: no kernel
    assert in_kernel() is False
    _fake_ipython(monkeypatch, None)  # IPython imported, no shell running
    assert in_kernel() is False
    monkeypatch.delitem(sys.modules, "IPython")
    assert in_kernel() is False


class _Stream:
    def __init__(self, tty: bool | None) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        if self.tty is None:
            raise ValueError("I/O operation on closed file")
        return self.tty


@pytest.mark.parametrize(("stream", "expected"), [(_Stream(True), True), (_Stream(False), False),
                                                   (_Stream(None), False), (object(), False), (None, False)])
def test_a_terminal_is_a_stderr_that_says_it_is_one(monkeypatch, stream, expected):
    monkeypatch.setattr(sys, "stderr", stream)
    assert stderr_is_terminal() is expected


def test_progress_bar_follows_the_rule(monkeypatch):
    _watching(monkeypatch, kernel=False, tty=False)
    with progress_bar(3, "x", enabled=None) as bar:
        assert bar.disable
    _watching(monkeypatch, kernel=False, tty=True)
    with progress_bar(3, "x", enabled=None, file=_Sink()) as bar:
        assert not bar.disable
    with progress_bar(3, "x", enabled=False) as bar:
        assert bar.disable


class _Sink:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


# --------------------------------------------------------------------------- drive


@dataclass
class _Step:
    i: int
    loss: float


class _Countdown(Run[_Step]):
    """A run of ``n`` steps whose loss halves each step."""

    def __init__(self, n: int) -> None:
        self.n, self.done = n, 0

    def _steps(self) -> Iterator[_Step]:
        while self.done < self.n:
            self.done += 1
            yield _Step(self.done, 2.0 ** -self.done)


def test_drive_shows_the_steps_and_the_postfix_on_stderr(capsys):
    run = drive(_Countdown(5), total=5, desc="countdown", progress=True,
                postfix=lambda step: {"loss": f"{step.loss:.3g}"})
    err = capsys.readouterr().err
    assert run.done == 5 and run.closed is False
    assert "countdown" in err and "5/5" in err and "loss=0.0312" in err


def test_drive_without_progress_writes_nothing(capsys, monkeypatch):
    _watching(monkeypatch, kernel=True, tty=True)  # someone is watching, but the caller said no
    drive(_Countdown(4), total=4, desc="countdown", progress=False, postfix=lambda step: {"loss": step.loss})
    assert capsys.readouterr() == ("", "")


def test_drive_is_automatic_and_silent_in_tests(capsys, monkeypatch):
    _watching(monkeypatch, kernel=False, tty=False)  # a script piped to a file
    drive(_Countdown(3), total=3, desc="countdown", progress=None)
    assert capsys.readouterr().err == ""


def test_a_resumed_run_continues_its_bar_where_it_stopped(capsys):
    run = _Countdown(6)
    for step in run:
        if step.i == 2:
            break
    drive(run, total=6, done=run.done, desc="countdown", progress=True)
    err = capsys.readouterr().err
    assert run.done == 6 and "2/6" in err and "6/6" in err and "0/6" not in err


def test_iterating_a_run_yourself_stays_silent(capsys, monkeypatch):
    _watching(monkeypatch, kernel=True, tty=True)
    assert [s.i for s in _Countdown(3)] == [1, 2, 3]
    assert capsys.readouterr() == ("", "")


def test_an_interrupt_closes_the_bar_and_propagates(capsys):
    class Interrupted(_Countdown):
        def _steps(self) -> Iterator[_Step]:
            yield _Step(1, 1.0)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        drive(Interrupted(3), total=3, desc="countdown", progress=True)
    assert "1/3" in capsys.readouterr().err


# --------------------------------------------------------------------------- a StyleGAN projection


def test_a_projection_result_shows_progress_only_when_asked(G, capsys):
    import torch

    from artlab.stylegan import project

    target = torch.rand(1, 3, G.img_resolution, G.img_resolution, generator=torch.Generator().manual_seed(0))
    quiet = project(G, target, steps=3, lpips_weight=0.0, pixel_weight=1.0, n_w_samples=64).result(progress=False)
    assert capsys.readouterr().err == ""
    shown = project(G, target, steps=3, lpips_weight=0.0, pixel_weight=1.0, n_w_samples=64).result(progress=True)
    err = capsys.readouterr().err
    assert "projection" in err and "3/3" in err and "best=" in err
    assert quiet.steps_done == shown.steps_done == 3
    assert torch.equal(quiet.ws, shown.ws)  # the bar changes nothing in the computation
