"""How a stage tells its caller how far it has got: units of work done against a total known up front.

Every stage that reports progress takes a callback ``progress(done, total)``. The stage counts its units (a
raw table read, a DQD check measured, a table written) before the first report, so ``total`` never changes,
``done`` only grows and the last report is ``done == total``. `StageProgress` keeps that promise in one
place instead of in each stage's arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: The callback a stage reports to: ``progress(units_done, units_total)``.
ProgressCallback = Callable[[int, int], None]


class StageProgress:
    """A stage's units of work done so far out of a total fixed when it starts.

    Reports only when ``done`` grows, so a caller sees each count once and in order. A step made of several
    units of a function that reports on its own (``run_checks`` inside ``run_quality``) is counted with
    `part`.

    Example:
        >>> seen = []
        >>> steps = StageProgress(3, lambda done, total: seen.append((done, total)))
        >>> steps.advance()
        >>> with steps.part(2) as report:
        ...     report(1, 2)
        >>> seen
        [(1, 3), (2, 3), (3, 3)]
    """

    def __init__(self, total: int, progress: ProgressCallback | None = None) -> None:
        self.total = total
        self.done = 0
        self._progress = progress

    def advance(self, units: int = 1) -> None:
        """Count ``units`` more units of work as done."""
        self._move_to(self.done + units)

    @contextmanager
    def part(self, units: int) -> Iterator[ProgressCallback]:
        """A callback for a step counted as ``units`` of this stage's: its ``(done, total)`` moves this one
        proportionally, and the step counts whole when the block ends (also when it reported nothing)."""
        base = self.done

        def report(done: int, total: int) -> None:
            self._move_to(base + (units * done // total if total else units))

        yield report
        self._move_to(base + units)

    def _move_to(self, done: int) -> None:
        # Never backwards and never the same count twice: a caller may draw every report it gets.
        if done > self.done:
            self.done = done
            if self._progress is not None:
                self._progress(done, self.total)
