"""The link stage scored against the synthetic hospital's ground truth (never read by the pipeline).

Persons: pairwise precision and recall of "same person" over every staged row. Orphans: exactly the injected
ones, none invented. Lab results: every result whose request exists reaches the right visit, including
requests filed against the patient's other visit.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from medspace.link import link_workspace
from medspace.sources import stage_exports
from medspace.synth import HospitalConfig, generate_hospital


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("link-ws")
    generate_hospital(HospitalConfig(patients=3_000, seed=21, chunk_patients=1_000), ws / "hospital")
    stage_exports(ws / "hospital", ws)
    link_workspace(ws)
    return ws


def _truth(ws: Path, name: str) -> list[dict[str, object]]:
    return pq.read_table(ws / "hospital" / "truth" / f"{name}.parquet").to_pylist()


def _pairs(counts: Counter[object]) -> int:
    return sum(n * (n - 1) // 2 for n in counts.values())


def test_person_linkage_precision_and_recall(linked: Path) -> None:
    true_person = {(r["file"], r["row"]): r["person_id"] for r in _truth(linked, "records")}
    events = pq.read_table(linked / "link" / "events.parquet").to_pylist()
    both: Counter[tuple[object, object]] = Counter()
    predicted: Counter[object] = Counter()
    actual: Counter[object] = Counter()
    for i, e in enumerate(events):
        truth = true_person[(e["source_file"], e["source_row"])]
        # a row with no person is a cluster of its own
        mine = e["person_id"] if e["person_id"] is not None else f"unlinked-{i}"
        both[(mine, truth)] += 1
        predicted[mine] += 1
        actual[truth] += 1
    true_positive = _pairs(both)
    precision = true_positive / _pairs(predicted)
    recall = true_positive / _pairs(actual)
    assert precision >= 0.99, precision
    assert recall >= 0.99, recall


def test_every_injected_orphan_is_reported_and_none_invented(linked: Path) -> None:
    injected = {(d["file"], d["row"]) for d in _truth(linked, "defects") if d["kind"] == "orphan_record"}
    events = pq.read_table(linked / "link" / "events.parquet", filters=[("parent_missing", "=", True)])
    # results and tubes inherit their request's fate; the truth marks the request
    reported = {
        (e["source_file"], e["source_row"])
        for e in events.to_pylist()
        if e["table"] not in ("results", "specimens", "studies")
    }
    assert injected
    assert reported == injected


def test_lab_results_reach_the_right_visit(linked: Path) -> None:
    links = _truth(linked, "links")
    true_visit = {link["from_key"]: link["to_key"] for link in links if link["kind"] == "lab_request->visit"}
    stay_of_sheet = {
        link["from_key"]: link["to_key"] for link in links if link["kind"] == "front_sheet->stay"
    }
    in_export = {v["visit_serial"]: v["in_his_export"] for v in _truth(linked, "visits")}
    wrong = {d["record_key"] for d in _truth(linked, "defects") if d["kind"] == "lab_wrong_visit"}
    results = pq.read_table(
        linked / "link" / "events.parquet", filters=[("table", "=", "results")]
    ).to_pylist()
    staged = pq.read_table(
        linked / "staging" / "lis" / "results.parquet", columns=["_source_row", "request_no"]
    )
    request_of_row = dict(
        zip(staged.column("_source_row").to_pylist(), staged.column("request_no").to_pylist(), strict=True)
    )
    checked = corrected = 0
    for r in results:
        request = request_of_row[r["source_row"]]
        expected = true_visit[request]
        if r["parent_missing"] or (not in_export[expected] and not expected.startswith("ZY")):
            continue  # the request's outpatient visit is not in the HIS export: an orphan, tested above
        visit = r["visit_id"]
        mine = stay_of_sheet[visit[3:]] if visit and visit.startswith("FS:") else visit
        assert mine == expected, (request, r["status"], r["reason"])
        checked += 1
        corrected += request in wrong
    assert checked > 10_000
    assert corrected > 0  # wrong-visit requests were among them and were re-linked
