"""What every stage's ``progress(done, total)`` promises, checked on the calls a test recorded."""

from __future__ import annotations

import itertools


class ProgressRecorder:
    """A progress callback that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))


def assert_honest_progress(calls: list[tuple[int, int]]) -> None:
    """More than a start and an end; one total from the first report; done grows strictly to the total."""
    assert len(calls) > 2, calls
    totals = {total for _, total in calls}
    assert len(totals) == 1, f"the total changed: {sorted(totals)}"
    done = [d for d, _ in calls]
    assert all(a < b for a, b in itertools.pairwise(done)), f"done did not grow strictly: {done}"
    assert done[0] > 0, calls
    assert done[-1] == calls[-1][1], f"the last report is {calls[-1]}, not done == total"
