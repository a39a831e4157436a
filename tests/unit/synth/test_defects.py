"""Injected defects: observed rates match the configured ones, and each defect is where the ground truth
says it is (checked against the raw export files)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from readers import manifest, read_csv, truth

# Identity variants are drawn once per person and system, so they are counted per (system, person).
PER_PERSON_AND_SYSTEM = {
    "name_typo",
    "birth_date_typo",
    "resident_id_typo",
    "phone_missing",
    "address_variant",
}
PER_RECORD = {
    "duplicate_patient_id": "duplicate_patient_id",
    "duplicate_record": "duplicate_record",
    "lost_parent": "orphan_record",
    "lab_wrong_visit": "lab_wrong_visit",
    "mixed_code_edition": "mixed_code_edition",
    "value_set_drift": "value_set_drift",
    "mixed_date_format": "mixed_date_format",
    "department_prefix_stripped": "department_prefix_stripped",
    "mixed_unit": "branch_lab_share",
    "registration_refund": "registration_refund",
    "registration_cancelled": "registration_cancelled",
    "recalled_discharge": "recalled_discharge",
    "settlement_cost_mismatch": "settlement_cost_mismatch",
}


def _within_binomial(observed: int, n: int, p: float) -> bool:
    # four standard deviations, plus slack for the small counts of rare defects
    return abs(observed - n * p) <= 4 * math.sqrt(n * p * (1 - p)) + 3


def test_every_configured_defect_kind_is_injected(hospital: Path) -> None:
    counts = manifest(hospital)["defects"]
    expected = PER_PERSON_AND_SYSTEM | set(PER_RECORD) | {"orphan_record"}
    assert expected <= {k for k, v in counts.items() if v > 0}


@pytest.mark.parametrize("kind", sorted(PER_RECORD))
def test_record_level_rate_matches_configuration(hospital: Path, kind: str) -> None:
    rate = manifest(hospital)["config"]["defects"][PER_RECORD[kind]]
    eligible = manifest(hospital)["eligible"][kind]
    observed = sum(1 for d in truth(hospital, "defects") if d["kind"] == kind)
    assert eligible > 0
    assert _within_binomial(observed, eligible, rate), (kind, observed, eligible, rate)


@pytest.mark.parametrize("kind", sorted(PER_PERSON_AND_SYSTEM))
def test_identity_variant_rate_matches_configuration(hospital: Path, kind: str) -> None:
    rate = manifest(hospital)["config"]["defects"][kind]
    eligible = manifest(hospital)["eligible"][kind]
    observed = len({(d["system"], d["person_id"]) for d in truth(hospital, "defects") if d["kind"] == kind})
    # a name typo that happens to redraw the same character is not a typo; allow that rare shortfall
    assert _within_binomial(observed, eligible, rate), (kind, observed, eligible, rate)


def test_duplicate_rows_repeat_the_row_before(hospital: Path) -> None:
    by_file = Counter(d["file"] for d in truth(hospital, "defects") if d["kind"] == "duplicate_record")
    assert by_file
    for file in by_file:
        rows = read_csv(hospital / file)
        for d in truth(hospital, "defects"):
            if d["kind"] == "duplicate_record" and d["file"] == file:
                assert rows[d["row"] - 1] == rows[d["row"] - 2]


def test_unit_defects_are_in_the_branch_labs_conventional_units(hospital: Path) -> None:
    results = read_csv(hospital / "lis/results.csv")
    defects = truth(hospital, "defects")
    rows = {d["row"] for d in defects if d["kind"] == "mixed_unit"}
    copies = {d["row"] for d in defects if d["kind"] == "duplicate_record" and d["file"] == "lis/results.csv"}
    alt_units = {"mg/dL", "mmol/mol"}
    for i, r in enumerate(results, 1):
        if i not in copies:  # a re-sent copy carries its original's defects, recorded on the original
            assert (r["Unit"] in alt_units) == (i in rows), i
        if r["Unit"] in alt_units:
            assert r["LabSite"] == "分院"


def test_value_set_drift_writes_6_and_only_there(hospital: Path) -> None:
    rows = {d["row"] for d in truth(hospital, "defects") if d["kind"] == "value_set_drift"}
    sheets = read_csv(hospital / "emr/front_sheets.csv")
    assert {i for i, r in enumerate(sheets, 1) if r["B34C"] == "6"} == rows


def test_orphans_are_exactly_the_children_of_missing_his_visits(hospital: Path) -> None:
    his_visits = {r["GHXH"] for r in read_csv(hospital / "his/outpatient_registrations.csv")}
    his_visits |= {r["JZLSH"] for r in read_csv(hospital / "his/inpatient_admissions.csv")}
    orphans = {(d["file"], d["row"]) for d in truth(hospital, "defects") if d["kind"] == "orphan_record"}
    requests = read_csv(hospital / "lis/requests.csv")
    lis_orphans = {
        ("lis/requests.csv", i) for i, r in enumerate(requests, 1) if r["VisitSerial"] not in his_visits
    }
    assert lis_orphans
    assert lis_orphans == {o for o in orphans if o[0] == "lis/requests.csv"}
    exams = read_csv(hospital / "ris/exams.csv", encoding="gb18030")
    ris_orphans = {("ris/exams.csv", i) for i, r in enumerate(exams, 1) if r["就诊流水号"] not in his_visits}
    assert ris_orphans == {o for o in orphans if o[0] == "ris/exams.csv"}


def test_wrong_visit_requests_differ_from_the_true_link(hospital: Path) -> None:
    true_visit = {
        link["from_key"]: link["to_key"]
        for link in truth(hospital, "links")
        if link["kind"] == "lab_request->visit"
    }
    wrong = {d["row"] for d in truth(hospital, "defects") if d["kind"] == "lab_wrong_visit"}
    for i, r in enumerate(read_csv(hospital / "lis/requests.csv"), 1):
        assert (r["VisitSerial"] != true_visit[r["RequestNo"]]) == (i in wrong), i


def test_recalled_discharges_add_a_his_row(hospital: Path) -> None:
    admissions = read_csv(hospital / "his/inpatient_admissions.csv")
    withheld = hospital / "truth/withheld/his/inpatient_admissions.csv"
    if withheld.exists():
        admissions += read_csv(withheld)
    front = read_csv(hospital / "emr/front_sheets.csv")
    distinct_front = {(r["A48"], r["A49"]) for r in front}
    recalled = sum(r["ZHBZ"] == "1" for r in admissions)
    assert recalled == manifest(hospital)["defects"]["recalled_discharge"]
    assert len(admissions) == len(distinct_front) + recalled
