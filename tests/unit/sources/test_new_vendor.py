"""A new vendor is one YAML file: a toy clinic and lab that medspace has never seen, given only as a site
file and a folder of exports (tests/unit/sources/data/toy-clinic/), stages into the canonical model with
every row accounted for."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from medspace.sources import StagingReport, check_site, load_site, read_site, stage_site
from readers import output_bytes

TOY = Path(__file__).parent / "data" / "toy-clinic"


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[StagingReport, Path]:
    workspace = tmp_path_factory.mktemp("toy")
    return stage_site(TOY / "site.yaml", TOY / "exports", workspace), workspace / "staging"


def table(staging: Path, name: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = pq.read_table(staging / f"{name}.parquet").to_pylist()
    return rows


def test_the_toy_vendor_stages_its_rows(toy: tuple[StagingReport, Path]) -> None:
    report, staging = toy
    patients = table(staging, "patient")
    assert [(p["patient_key"], p["sex"], p["birth_date"]) for p in patients] == [
        ("1", "F", dt.date(1980, 2, 1)),
        ("3", "M", dt.date(1990, 7, 15)),
    ]
    encounters = table(staging, "encounter")
    assert [(e["record_key"], e["encounter_type"], e["end_at"]) for e in encounters] == [
        ("V1", "outpatient", None),
        ("V2", "inpatient", dt.datetime(2024, 3, 5, 12, 0)),
    ]
    diagnoses = table(staging, "diagnosis")
    assert [(d["record_key"], d["code"], d["rank"], d["code_system"]) for d in diagnoses] == [
        ("V2/1", "4280", 1, "icd9cm"),
        ("V2/2", "25000", 2, "icd9cm"),
        ("V1/1", "4019", 1, "icd9cm"),
    ]
    results = table(staging, "lab_result")
    assert [
        (r["record_key"], r["item_name"], r["standard_code"], r["value"], r["value_text"]) for r in results
    ] == [
        ("E1", "Creatinine", "2160-0", 1.1, "1.1"),
        ("E2", "Hematocrit", None, None, "neg"),
        ("E3", None, None, 7.0, "7"),
    ]
    assert {r["system"] for r in results} == {"lab"} and results[0]["_source_file"] == "lab/events.ndjson"
    assert "procedure" in report.empty_tables and "patient" not in report.empty_tables


def test_every_toy_row_is_accounted_for(toy: tuple[StagingReport, Path]) -> None:
    report, staging = toy
    quarantine = pq.read_table(staging / "quarantine.parquet").to_pylist()
    found = sorted((q["system"], q["table"], q["row"], q["rule"], q["field"], q["key"]) for q in quarantine)
    assert found == [
        ("clinic", "diagnoses", 4, "duplicate_key", "vid, seq", "V2-1"),
        ("clinic", "encounter", 4, "bad_value", "encounter_type", "V4"),
        ("clinic", "patients", 2, "bad_date", "DOB", "2"),
        ("lab", "events", 4, "bad_date", "time", "E4"),
    ]
    raw = {"clinic.patients": 3, "clinic.visits": 4, "clinic.diagnoses": 4, "lab.items": 2, "lab.events": 4}
    for reference, rows in raw.items():
        system, name = reference.split(".")
        t = report.table(system, name)
        assert t.rows_read == rows and t.staged + t.quarantined == rows, reference
    [mapped] = [json.loads(q["raw"]) for q in quarantine if q["table"] == "encounter"]
    assert mapped["encounter_type"] == "Q" and mapped["record_key"] == "V4"  # the mapped row, for the team
    [visits] = [m for m in report.maps if m.source == "clinic.visits"]
    assert (visits.rows, visits.written, visits.quarantined, visits.excluded) == (4, 2, 1, 1)
    assert visits.excluded_because and "test visits" in visits.excluded_because


def test_the_toy_site_declarations_reach_site_json(toy: tuple[StagingReport, Path]) -> None:
    _, staging = toy
    declared = read_site(staging.parent)
    assert declared.site == "toy-clinic" and declared.identifiers.inpatient_no == "per_admission"
    assert set(declared.code_systems) == {"icd9cm", "loinc", "toy_lab_item"}


def test_the_toy_site_checks_against_its_files() -> None:
    check = check_site(load_site(TOY / "site.yaml"), TOY / "exports")
    assert check.ok, check.errors
    assert {t.table for t in check.model_tables if not t.empty} == {
        "patient",
        "encounter",
        "diagnosis",
        "lab_result",
    }


def test_a_record_key_two_maps_give_keeps_the_first(tmp_path: Path) -> None:
    text = (TOY / "site.yaml").read_text(encoding="utf-8")
    twice = "  - to: patient\n    from: clinic.patients\n    columns: {record_key: pid, patient_key: name}\n"
    site = tmp_path / "twice.yaml"
    site.write_text(text + twice, encoding="utf-8")
    report = stage_site(site, TOY / "exports", tmp_path / "ws")
    first, second = (m for m in report.maps if m.to == "patient")
    assert (first.written, second.written, second.quarantined) == (2, 0, 2)
    assert second.rules == {"duplicate_record_key": 2}
    assert second.rows == second.written + second.quarantined + second.excluded + second.empty_slots
    quarantine = pq.read_table(tmp_path / "ws" / "staging" / "quarantine.parquet").to_pylist()
    repeats = [q for q in quarantine if q["rule"] == "duplicate_record_key"]
    assert [(q["table"], q["row"], q["key"], q["field"]) for q in repeats] == [
        ("patient", 1, "1", "record_key"),
        ("patient", 3, "3", "record_key"),
    ]
    assert "row 1 of clinic/patients.csv (map 0)" in repeats[0]["reason"]
    assert [p["patient_key"] for p in table(tmp_path / "ws" / "staging", "patient")] == ["1", "3"]


def test_maps_spilled_to_disk_give_the_same_bytes(
    toy: tuple[StagingReport, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medspace.sources._maps as maps

    monkeypatch.setattr(maps, "_SPILL_BYTES", 0)  # every map's rows go through a Parquet part file
    ws = tmp_path / "spilled 'quoted\" workspace"  # a path no SQL text may hold
    spilled = stage_site(TOY / "site.yaml", TOY / "exports", ws)
    _, staging = toy
    assert spilled.model_dump(exclude={"staging"}) == toy[0].model_dump(exclude={"staging"})
    for path in sorted(staging.iterdir()):
        assert output_bytes(ws / "staging" / path.name) == output_bytes(path), path.name
    assert not (ws / "staging" / "_phase1").exists()
