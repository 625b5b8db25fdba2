"""One protocol for long jobs: an iterator of small step dataclasses that a caller can stop.

Style transfer, texture synthesis, StyleGAN projection and fine-tuning all run for
seconds to minutes. Each is a :class:`Run`: iterate it to take steps (each yields a
small dataclass with the numbers and, now and then, a preview), ``break`` whenever you
like, then :meth:`Run.close` it; what was computed so far stays on the run object
(``best_image``, a trained model, ...). Widgets, scripts, benchmarks and tests all drive
the same loop, so a widget's Stop button and a script's ``break`` do the same thing.

Progress has one signature everywhere: ``on_progress(stage, done, total)`` (a
:data:`Progress`), called between units of work; raising from it stops the job, and
what was finished before stays. Library calls print no progress bar unless asked
(``progress=True``); the CLI and the notebooks ask.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from tqdm.auto import tqdm

__all__ = ["Progress", "Run", "progress_bar"]

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


def progress_bar(total: int | None, desc: str, *, enabled: bool, unit: str = "it", **kw: Any) -> tqdm:
    """artlab's progress bar (tqdm: a widget in notebooks, one line on stderr in a terminal).

    ``enabled=False`` gives a silent bar with the same methods, so code updates it
    either way; library calls pass their ``progress`` argument (default False).
    """
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, **kw)
