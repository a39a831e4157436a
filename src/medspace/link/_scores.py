"""Linkage scored at the level of persons, against a labelled truth.

The unit is the identity record (one system's patient), not the row: a person with 300 lab rows counts once.
Over the records, pairwise precision and recall of "same person"; then the persons themselves: a **split**
true person has records in more than one linked person, a **merged** linked person holds records of more
than one true person, and a **phantom** is a linked person that is no true person's main part (the one
holding most of its records): the fragment a split leaves behind, with its history cut off from the person.

A labelled truth gives the true person of raw rows (``file``, ``row``, ``person_id``), as the synthetic
hospital's ``truth/records.parquet`` or a hand-labelled set does; a record's true person is that of most of
its rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb

from medspace.core import InputError

TRUTH_COLUMNS = ("file", "row", "person_id")


@dataclass(frozen=True)
class PersonScores:
    """Person-level linkage quality against a truth."""

    records: int
    persons: int
    true_persons: int
    precision: float
    recall: float
    f1: float
    split_persons: int
    merged_persons: int
    phantom_persons: int

    @property
    def phantom_share(self) -> float:
        """Phantom persons as a share of linked persons."""
        return self.phantom_persons / self.persons if self.persons else 0.0


def _pairs(counts: Counter[str] | Counter[tuple[str, str]]) -> int:
    return sum(n * (n - 1) // 2 for n in counts.values())


def score_persons(linked: Mapping[str, str], truth: Mapping[str, str]) -> PersonScores:
    """Score a record -> person assignment against record -> true person.

    Records of the truth that ``linked`` lacks count as persons of their own.

    Example:
        >>> s = score_persons({"a": "P1", "b": "P1", "c": "P2"}, {"a": "T1", "b": "T1", "c": "T1"})
        >>> (s.precision, round(s.recall, 3), s.split_persons, s.phantom_persons)
        (1.0, 0.333, 1, 1)
    """
    cells: Counter[tuple[str, str]] = Counter()
    for record, true in truth.items():
        cells[(linked.get(record, f"unlinked:{record}"), true)] += 1
    mine: Counter[str] = Counter()
    theirs: Counter[str] = Counter()
    true_of: dict[str, set[str]] = {}
    parts: dict[str, list[tuple[int, str]]] = {}
    for (person, true), n in cells.items():
        mine[person] += n
        theirs[true] += n
        true_of.setdefault(person, set()).add(true)
        parts.setdefault(true, []).append((n, person))
    both, predicted, actual = _pairs(cells), _pairs(mine), _pairs(theirs)
    precision = both / predicted if predicted else 1.0
    recall = both / actual if actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    # a true person's main part: most of its records, the smaller person id on a tie
    main = {min(p, key=lambda part: (-part[0], part[1]))[1] for p in parts.values()}
    return PersonScores(
        records=sum(cells.values()),
        persons=len(mine),
        true_persons=len(theirs),
        precision=precision,
        recall=recall,
        f1=f1,
        split_persons=sum(1 for p in parts.values() if len(p) > 1),
        merged_persons=sum(1 for t in true_of.values() if len(t) > 1),
        phantom_persons=sum(1 for person in mine if person not in main),
    )


def score_link(link_folder: Path, staging: Path, truth: Path) -> PersonScores:
    """Score a link output (``person_records.parquet``) against a row-level truth file.

    Args:
        link_folder: the folder holding ``person_records.parquet``.
        staging: the staging folder the link ran on (its rows' lineage ties rows to records).
        truth: a Parquet or CSV file with columns ``file``, ``row`` (as the rows' lineage names them) and
            ``person_id`` (the true person).

    Raises:
        InputError: the truth file is missing, unreadable or lacks a column.
    """
    if not truth.exists():
        raise InputError("the truth file does not exist", file=str(truth))
    con = duckdb.connect()
    reader = "read_parquet" if truth.suffix == ".parquet" else "read_csv"
    try:
        columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {reader}(?)", [str(truth)]).fetchall()]
    except duckdb.Error as exc:
        raise InputError(f"the truth file cannot be read ({exc})", file=str(truth)) from None
    missing = [c for c in TRUTH_COLUMNS if c not in columns]
    if missing:
        raise InputError(
            f"the truth file lacks column(s) {', '.join(missing)} (it needs file, row, person_id)",
            file=str(truth),
            field=missing[0],
        )
    rows = [
        f"SELECT system, patient_key, _source_file AS file, _source_row AS row FROM read_parquet('{p}')"
        for p in sorted(staging.glob("*.parquet"))
        if {"patient_key", "_source_file", "_source_row", "system"}
        <= {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{p}')").fetchall()}
    ]
    if not rows:
        raise InputError("no staged table carries patient_key and lineage", file=str(staging))
    votes = con.execute(
        f"""
        WITH staged AS ({" UNION ALL ".join(rows)}),
        labelled AS (
            SELECT s.system || ':' || s.patient_key AS record_id, CAST(t.person_id AS VARCHAR) AS true_person
            FROM staged s JOIN {reader}(?) t ON t.file = s.file AND CAST(t.row AS BIGINT) = s.row
            WHERE s.patient_key IS NOT NULL
        ),
        counted AS (SELECT record_id, true_person, COUNT(*) AS n FROM labelled GROUP BY ALL)
        SELECT record_id, first(true_person ORDER BY n DESC, true_person) FROM counted GROUP BY record_id
        """,
        [str(truth)],
    ).fetchall()
    linked = dict(
        con.execute(
            "SELECT record_id, person_id FROM read_parquet(?)", [str(link_folder / "person_records.parquet")]
        ).fetchall()
    )
    return score_persons(linked, {str(r): str(t) for r, t in votes})
