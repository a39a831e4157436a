"""StageProgress: a fixed total, counts that only grow, and a last report at the total."""

from __future__ import annotations

from medspace.core import StageProgress


def test_counts_grow_to_the_total_and_repeats_are_not_reported() -> None:
    seen: list[tuple[int, int]] = []
    steps = StageProgress(5, lambda done, total: seen.append((done, total)))
    steps.advance()
    steps.advance(0)  # nothing done: nothing reported
    with steps.part(3) as report:
        report(1, 2)  # half of a 3-unit step: one unit
        report(1, 2)  # the same count again is not reported twice
    steps.advance()
    assert seen == [(1, 5), (2, 5), (4, 5), (5, 5)]


def test_a_part_that_reports_nothing_still_counts_whole() -> None:
    seen: list[tuple[int, int]] = []
    steps = StageProgress(2, lambda done, total: seen.append((done, total)))
    with steps.part(2):
        pass
    assert seen == [(2, 2)]


def test_without_a_callback_it_only_counts() -> None:
    steps = StageProgress(2)
    steps.advance(2)
    assert steps.done == steps.total == 2
