"""Person-level linkage scores, checked against brute force over every pair of records."""

from __future__ import annotations

import itertools
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medspace.core import InputError
from medspace.link import score_link, score_persons

records = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=14)


@given(records)
def test_scores_agree_with_brute_force(assignments: list[tuple[int, int]]) -> None:
    linked = {f"r{i}": f"P{p}" for i, (p, _) in enumerate(assignments)}
    truth = {f"r{i}": f"T{t}" for i, (_, t) in enumerate(assignments)}
    got = score_persons(linked, truth)
    pairs = list(itertools.combinations(truth, 2))
    same_linked = {pair for pair in pairs if linked[pair[0]] == linked[pair[1]]}
    same_true = {pair for pair in pairs if truth[pair[0]] == truth[pair[1]]}
    assert got.precision == (len(same_linked & same_true) / len(same_linked) if same_linked else 1.0)
    assert got.recall == (len(same_linked & same_true) / len(same_true) if same_true else 1.0)
    persons, true_persons = set(linked.values()), set(truth.values())
    assert (got.persons, got.true_persons, got.records) == (len(persons), len(true_persons), len(truth))
    members = {t: [r for r in truth if truth[r] == t] for t in true_persons}
    assert got.split_persons == sum(1 for rs in members.values() if len({linked[r] for r in rs}) > 1)
    assert got.merged_persons == sum(
        1 for p in persons if len({truth[r] for r in linked if linked[r] == p}) > 1
    )
    main = set()
    for rs in members.values():
        counts = {p: sum(1 for r in rs if linked[r] == p) for p in {linked[r] for r in rs}}
        main.add(sorted(counts, key=lambda p: (-counts[p], p))[0])
    assert got.phantom_persons == len(persons - main)


def test_an_unlinked_record_is_a_person_of_its_own() -> None:
    got = score_persons({"a": "P1"}, {"a": "T1", "b": "T1"})
    assert (got.persons, got.recall, got.split_persons, got.phantom_persons) == (2, 0.0, 1, 1)


def test_score_link_names_a_bad_truth_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        score_link(tmp_path, tmp_path, tmp_path / "truth.parquet")
    pq.write_table(pa.table({"file": ["x"], "line": [1], "person_id": ["T1"]}), tmp_path / "truth.parquet")
    with pytest.raises(InputError, match=r"lacks column.*row") as caught:
        score_link(tmp_path, tmp_path, tmp_path / "truth.parquet")
    assert caught.value.field == "row"
