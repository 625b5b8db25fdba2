"""One protocol for long jobs: an iterator of small step dataclasses that a caller can stop.

Style transfer, texture synthesis, StyleGAN projection and fine-tuning all run for
seconds to minutes. Each is a :class:`Run`: iterate it to take steps (each yields a
small dataclass with the numbers and, now and then, a preview), ``break`` whenever you
like, then :meth:`Run.close` it; what was computed so far stays on the run object
(``best_image``, a trained model, ...). Widgets, scripts, benchmarks and tests all drive
the same loop, so a widget's Stop button and a script's ``break`` do the same thing.

Progress has one signature everywhere: ``on_progress(stage, done, total)`` (a
:data:`Progress`), called between units of work; raising from it stops the job, and
what was finished before stays.

Progress bars follow one rule, :func:`wants_progress`: every blocking call that can take
more than a few seconds takes ``progress: bool | None = None``. ``True`` shows a bar,
``False`` never does (library use), and ``None`` (the default) means "when a person is
watching": on inside a Jupyter/IPython kernel or when stderr is a terminal, off otherwise
(scripts piped to a file, tests, services). The environment variable
``ARTLAB_PROGRESS=0`` (or ``1``) sets what ``None`` means for the whole process: the
switch for programs that use artlab as a library. A bar is tqdm's (a widget in
notebooks, one line on stderr in a terminal) with an ETA, and for optimisations the
current loss. Iterating a :class:`Run` yourself stays silent, because the caller is
driving it; its blocking forms (``result()``, :func:`drive`) show the bar.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from tqdm.auto import tqdm

__all__ = ["PROGRESS_ENV", "Progress", "Run", "drive", "in_kernel", "progress_bar", "stderr_is_terminal",
           "wants_progress"]

#: The environment variable that sets what ``progress=None`` means for the whole process ("0" or "1").
PROGRESS_ENV = "ARTLAB_PROGRESS"
_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")

#: ``on_progress(stage, done, total)``: ``stage`` names the work ("features paintings",
#: "embedding"), ``done`` of ``total`` units are finished. Raise from it to stop.
Progress = Callable[[str, int, int], None]

StepT = TypeVar("StepT")


class Run(Iterator[StepT], Generic[StepT]):
    """A long job as an iterator of steps, stoppable between any two of them.

    Subclasses implement :meth:`_steps`, a generator that yields one step dataclass per
    unit of work and keeps its results on ``self`` as it goes (so a stopped run still has
    them). The base supplies ``__iter__``/``__next__``/:meth:`close`/:meth:`run`:

    >>> run = stylize(photo, painting)        # doctest: +SKIP
    >>> for step in run:                      # doctest: +SKIP
    ...     if step.loss < 1e3:
    ...         break
    >>> run.close(); run.best_image           # doctest: +SKIP
    """

    _generator: Iterator[StepT] | None = None
    _closed: bool = False

    def _steps(self) -> Iterator[StepT]:  # pragma: no cover - abstract
        """The job itself: a generator of steps (subclasses implement it)."""
        raise NotImplementedError

    def __iter__(self) -> Run[StepT]:
        return self

    def __next__(self) -> StepT:
        if self._closed:
            raise StopIteration
        if self._generator is None:
            self._generator = self._steps()
        return next(self._generator)

    def close(self) -> None:
        """Stop for good; what was computed so far stays available on the run."""
        self._closed = True
        if self._generator is not None:
            self._generator.close()  # type: ignore[attr-defined]

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def run(self) -> Run[StepT]:
        """Take every remaining step (unless closed) and return the run itself."""
        for _ in self:
            pass
        return self


def in_kernel() -> bool:
    """Whether this code runs inside a Jupyter/IPython kernel (a notebook, JupyterLab, Voilà).

    Read from the running IPython shell, if any: a kernel's shell has a ``kernel``; the
    plain terminal IPython does not (there stderr is a terminal anyway).
    """
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # a half-imported or unusual IPython: not a kernel we can show a widget in
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def stderr_is_terminal() -> bool:
    """Whether stderr (where a terminal progress bar goes) is an interactive terminal."""
    stream = sys.stderr
    try:
        return stream is not None and bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def wants_progress(progress: bool | None) -> bool:
    """Whether to show a progress bar: the one place artlab decides it (see the module docstring).

    ``True``/``False``: as given. ``None`` (every call's default): the environment variable
    ``ARTLAB_PROGRESS`` when set ("1"/"0", also "true"/"false", "yes"/"no", "on"/"off"),
    otherwise on when a person is watching: inside a Jupyter/IPython kernel
    (:func:`in_kernel`) or when stderr is a terminal (:func:`stderr_is_terminal`).
    """
    if progress is True or progress is False:
        return progress
    if progress is not None:
        raise TypeError(f"progress must be True, False or None (automatic), got {progress!r}")
    setting = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if setting in _ON:
        return True
    if setting in _OFF:
        return False
    if setting:
        raise ValueError(f"{PROGRESS_ENV}={os.environ[PROGRESS_ENV]!r} is not understood; set it to 1 (progress "
                         f"bars on), 0 (off) or unset it (on in notebooks and terminals)")
    return in_kernel() or stderr_is_terminal()


def progress_bar(total: int | None, desc: str, *, enabled: bool | None, unit: str = "it", **kw: Any) -> tqdm:
    """artlab's progress bar (tqdm: a widget in notebooks, one line on stderr in a terminal, with an ETA).

    ``enabled`` is a call's ``progress`` argument, resolved by :func:`wants_progress`
    (None: on when a person is watching). A disabled bar is silent but has the same
    methods, so code updates it either way.
    """
    return tqdm(total=total, desc=desc, unit=unit, disable=not wants_progress(enabled), **kw)


def drive(run: Run[StepT], *, total: int | None, desc: str, progress: bool | None, done: int = 0,
          unit: str = "step", postfix: Callable[[StepT], dict[str, object]] | None = None) -> Run[StepT]:
    """Take every remaining step of ``run`` with a progress bar (when wanted) and return the run.

    The blocking form of a :class:`Run` (what ``result()`` methods use): ``total`` steps
    in all, ``done`` of them taken before (a resumed run's bar starts there),
    ``postfix(step)`` the numbers shown after the bar (e.g. the current loss). An
    exception (Ctrl+C included) closes the bar and propagates, so the run can be resumed.
    """
    with progress_bar(total, desc, enabled=progress, unit=unit, initial=done) as bar:
        for step in run:
            if postfix is not None and not bar.disable:
                bar.set_postfix(postfix(step), refresh=False)
            bar.update(1)
    return run
