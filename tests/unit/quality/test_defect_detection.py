"""Every injected defect kind against the check that detects it: detection rate and false alarms, scored
against the synthetic hospital's ground truth (never read by the pipeline)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from medspace.cdm import build_cdm
from medspace.link import link_workspace
from medspace.quality import CrossSystemResults, cross_system_checks, reconcile_kpis
from medspace.sources import stage_site
from medspace.synth import DefectRates, HospitalConfig, generate_hospital


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, rare_defects_raised: DefectRates) -> Path:
    ws = tmp_path_factory.mktemp("detect-ws")
    generate_hospital(HospitalConfig(patients=2_000, seed=13, defects=rare_defects_raised), ws / "hospital")
    stage_site(None, ws / "hospital", ws)
    link_workspace(ws)
    build_cdm(ws)
    return ws


@pytest.fixture(scope="module")
def checks(workspace: Path) -> CrossSystemResults:
    return cross_system_checks(workspace)


def _defects(ws: Path, kind: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(ws / "hospital/truth/defects.parquet").to_pylist()
    return [d for d in rows if d["kind"] == kind]


def _flagged(checks: CrossSystemResults, name: str) -> set[tuple[str, int]]:
    return {(d["file"], d["row"]) for d in checks.details_of(name).to_pylist()}


def _person_of(ws: Path) -> dict[tuple[str, int], str]:
    records = pq.read_table(ws / "hospital/truth/records.parquet", columns=["file", "row", "person_id"])
    return dict(
        zip(
            zip(records.column("file").to_pylist(), records.column("row").to_pylist(), strict=True),
            records.column("person_id").to_pylist(),
            strict=True,
        )
    )


def test_invalid_resident_ids_are_exactly_the_typos(workspace: Path, checks: CrossSystemResults) -> None:
    injected = {(d["file"], d["row"]) for d in _defects(workspace, "resident_id_typo")}
    found = _flagged(checks, "resident_id_valid")
    assert injected
    # the settlement workbooks' rows are counted the same way (data row within each monthly file)
    assert found == injected


def test_missing_phones_are_exactly_the_injected_ones(workspace: Path, checks: CrossSystemResults) -> None:
    files = {"his/patients.csv", "emr/front_sheets.csv"}
    injected = {(d["file"], d["row"]) for d in _defects(workspace, "phone_missing") if d["file"] in files}
    assert injected
    assert _flagged(checks, "phone_present") == injected


def test_persons_with_two_his_numbers(workspace: Path, checks: CrossSystemResults) -> None:
    person = _person_of(workspace)
    injected = {d["person_id"] for d in _defects(workspace, "duplicate_patient_id")}
    found = {person[key] for key in _flagged(checks, "patient_number_unique")}
    assert injected
    assert found == injected


def test_address_variants_between_his_and_the_front_sheet(
    workspace: Path, checks: CrossSystemResults
) -> None:
    """A variant shows where the same person's HIS and front-sheet addresses are written differently;
    every flagged person carries an injected variant (no false alarm)."""
    person = _person_of(workspace)
    variants = {
        d["person_id"]
        for d in _defects(workspace, "address_variant")
        if d["file"] in ("his/patients.csv", "emr/front_sheets.csv")
    }
    found = {person[key] for key in _flagged(checks, "address_agreement")}
    assert found
    assert found <= variants


def test_every_defect_kind_is_detected_by_some_check(workspace: Path, checks: CrossSystemResults) -> None:
    """One table: each injected kind, the check that finds it and how many it found."""
    truth = Counter(
        d["kind"] for d in pq.read_table(workspace / "hospital/truth/defects.parquet").to_pylist()
    )
    events = pq.read_table(workspace / "link/events.parquet").to_pylist()
    quarantine = pq.read_table(workspace / "staging/quarantine.parquet").to_pylist()
    kpis = reconcile_kpis(workspace)
    found = {
        "resident_id_typo": len(_flagged(checks, "resident_id_valid")),
        "phone_missing": len(_flagged(checks, "phone_present")),
        "duplicate_record": sum(q["rule"] == "duplicate_key" for q in quarantine),
        "orphan_record": sum(
            e["parent_missing"]
            for e in events
            if e["table"] not in ("lab_result", "specimen", "imaging_study")
        ),
        "lab_wrong_visit": sum(e["status"] == "relinked" for e in events if e["table"] == "lab_order"),
        "value_set_drift": len(_flagged(checks, "discharge_mode_value_set")),
        "settlement_cost_mismatch": len(_flagged(checks, "settlement_cost")),
        "recalled_discharge": checks.result("discharge_date").explained,
        "mixed_code_edition": len(_flagged(checks, "diagnosis_code_edition")),
        # HIS counts refunded registrations; the reconciliation removes exactly those
        "registration_refund": int(
            kpis.kpis["outpatient_visits"].sources[0].breakdown["registration refunded (退号)"]
        ),
    }
    report = {kind: (truth[kind], found[kind]) for kind in sorted(found)}
    for kind, (injected, detected) in report.items():
        assert injected > 0, kind
        assert detected > 0, kind
    assert found["resident_id_typo"] == truth["resident_id_typo"]
    assert found["duplicate_record"] == truth["duplicate_record"]
    assert found["value_set_drift"] == truth["value_set_drift"]
    assert found["settlement_cost_mismatch"] == truth["settlement_cost_mismatch"]
    # wrong-visit requests whose carried visit is on another day are re-linked (same-day ones are invisible)
    assert found["lab_wrong_visit"] >= 0.8 * truth["lab_wrong_visit"]


def test_mixed_date_formats_are_counted_per_column(workspace: Path, checks: CrossSystemResults) -> None:
    """LIS writes some report times in a second format: the check counts exactly those values (a re-sent
    duplicate of such a row is parsed before staging drops it, so it counts too)."""
    injected = _defects(workspace, "mixed_date_format")
    result = checks.result("date_format_consistency")
    resent = {
        (d["file"], d["row"] - 1)
        for d in _defects(workspace, "duplicate_record")
        if d["file"] == "lis/results.csv"
    }
    injected_rows = {(d["file"], d["row"]) for d in injected}
    copies = len(resent & injected_rows)  # a copy sits right after its original
    assert injected
    assert result.disagreeing == len(injected) + copies
    assert {d["field"] for d in checks.details_of("date_format_consistency").to_pylist()} == {"reported_at"}
