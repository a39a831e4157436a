"""Staging the synthetic hospital by its site mapping: nothing is lost (raw rows = staged + quarantined per
raw table, staged = written + quarantined + excluded + empty slots per map, recounted from the raw files),
lineage points at the right rows, the injected duplicates are exactly what is quarantined, every date format
present parses, the mapping's value maps and derived columns hold, and re-running gives the same bytes.

The checks use the hospital's ground truth (truth/) and plain readers (tests/readers.py), which the sources
stage never reads.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from medspace.sources import (
    LINEAGE,
    QUARANTINE,
    StagingReport,
    load_model,
    load_site,
    read_site,
    stage_site,
)
from readers import output_bytes, read_csv, read_ndjson, read_xlsx, truth


@dataclass(frozen=True)
class Staged:
    hospital: Path
    workspace: Path
    report: StagingReport

    @property
    def staging(self) -> Path:
        return self.workspace / "staging"


@pytest.fixture
def staged(hospital: Path, workspace: Path, report: StagingReport) -> Staged:
    return Staged(hospital, workspace, report)


def rows(staged: Staged, table: str, system: str | None = None, source: str | None = None) -> list[dict]:  # type: ignore[type-arg]
    out = pq.read_table(staged.staging / f"{table}.parquet").to_pylist()
    return [
        r
        for r in out
        if (system is None or r["system"] == system) and (source is None or r["_source_table"] == source)
    ]


def raw_count(path: Path, kind: str, encoding: str) -> int:
    """Data rows of one export file, counted by the standard library alone."""
    if kind == "csv":
        return len(read_csv(path, encoding))
    if kind == "ndjson":
        return sum(1 for _ in read_ndjson(path))
    return len(read_xlsx(path))


def test_every_raw_row_is_staged_or_quarantined_recounted_from_the_files(staged: Staged) -> None:
    site = load_site("synthetic-hospital")
    quarantine = pq.read_table(staged.staging / "quarantine.parquet")
    assert quarantine.schema.equals(QUARANTINE)
    per_table = Counter((q["system"], q["table"]) for q in quarantine.select(["system", "table"]).to_pylist())
    for system, table in site.raw_tables():
        fmt = table.format
        encoding = getattr(fmt, "encoding", "utf-8")
        files = sorted(p for p in staged.hospital.glob(table.files) if p.is_file())
        assert files, table.files
        counted = sum(raw_count(p, fmt.kind, encoding) for p in files)
        t = staged.report.table(system, table.name)
        assert t.rows_read == counted, (system, table.name)
        assert t.staged + t.quarantined == counted, (system, table.name)
        assert per_table[(system, table.name)] == t.quarantined, (system, table.name)


def test_every_staged_row_of_a_map_is_written_quarantined_excluded_or_an_empty_slot(staged: Staged) -> None:
    site = load_site("synthetic-hospital")
    quarantine = pq.read_table(staged.staging / "quarantine.parquet").to_pylist()
    assert len(staged.report.maps) == len(site.maps)
    for m, spec in zip(staged.report.maps, site.maps, strict=True):
        system, table = spec.source.split(".")
        assert m.rows == staged.report.table(system, table).staged
        assert m.slots == len(spec.slots)
        assert m.rows * m.slots == m.written + m.quarantined + m.excluded + m.empty_slots, m
        assert (m.excluded > 0) <= (spec.where is not None)
    for c in staged.report.canonical:
        assert c.rows == sum(staged.report.maps[i].written for i in c.maps), c.table
        assert pq.read_table(staged.staging / f"{c.table}.parquet").num_rows == c.rows
    map_level = sum(1 for q in quarantine if q["table"] in load_model().tables)
    assert map_level == sum(m.quarantined for m in staged.report.maps)


def test_every_model_table_is_written_with_the_model_schema(staged: Staged) -> None:
    model = load_model()
    for name in model.tables:
        table = pq.read_table(staged.staging / f"{name}.parquet")
        assert table.schema.equals(model.arrow_schema(name)), name
        assert table.schema.names[-4:] == LINEAGE.names
    assert staged.report.empty_tables == ["medication_dispense"] + (
        ["death"] if staged.report.canonical_table("death").rows == 0 else []
    )


def test_manifest_and_site_json(staged: Staged) -> None:
    data = json.loads((staged.staging / "manifest.json").read_text(encoding="utf-8"))
    assert data["totals"]["rows_read"] == staged.report.rows_read
    assert data["rules"] == staged.report.rules
    assert data["empty_tables"] == staged.report.empty_tables
    assert [m["written"] for m in data["maps"]] == [m.written for m in staged.report.maps]
    declared = read_site(staged.workspace)
    site = load_site("synthetic-hospital")
    assert declared == site.declarations()
    assert declared.patient_index == "his" and declared.identifiers.inpatient_no == "per_patient"
    assert declared.precedence[0] == "emr" and "icd10_nhsa" in declared.code_systems
    assert declared.systems["lis"].tables == ["requests", "specimens", "results"]


def test_lineage_points_at_the_source_row(staged: Staged) -> None:
    keys = {(r["file"], r["row"]): r["record_key"] for r in truth(staged.hospital, "records")}
    rng = random.Random(5)
    for name in load_model().tables:
        table = rows(staged, name)
        for row in rng.sample(table, min(40, len(table))):
            key = keys[(row["_source_file"], row["_source_row"])]
            assert key in row["record_key"], (name, row["system"], row["_source_table"])
            assert row["_source_file"].startswith(row["system"] + "/")


def test_lineage_row_is_the_csv_data_row(staged: Staged) -> None:
    raw = read_csv(staged.hospital / "his" / "outpatient_registrations.csv")
    for row in rows(staged, "encounter", "his", "registrations")[::97]:
        assert raw[int(row["_source_row"]) - 1]["GHXH"] == row["visit_serial"] == row["record_key"]


def test_the_quarantined_duplicates_are_the_injected_ones(staged: Staged) -> None:
    injected = {
        (d["file"], d["row"]) for d in truth(staged.hospital, "defects") if d["kind"] == "duplicate_record"
    }
    assert injected
    quarantine = pq.read_table(staged.staging / "quarantine.parquet").to_pylist()
    duplicates = {(q["file"], q["row"]) for q in quarantine if q["rule"] == "duplicate_key"}
    assert duplicates == injected
    assert all(q["key"] for q in quarantine)
    # The synthetic hospital has no other defect that breaks a row's form.
    assert {q["rule"] for q in quarantine} == {"duplicate_key"}
    assert staged.report.problems == []


def test_mixed_lis_date_formats_both_parse(staged: Staged) -> None:
    mixed = {d["row"] for d in truth(staged.hospital, "defects") if d["kind"] == "mixed_date_format"}
    assert mixed
    raw = read_csv(staged.hospital / "lis" / "results.csv")
    results = {r["_source_row"]: r for r in rows(staged, "lab_result")}
    checked = {"dash": 0, "slash": 0}
    for number in sorted(mixed)[:50] + list(range(1, 50)):
        if number not in results:
            continue  # a duplicate copy, quarantined
        text = raw[number - 1]["ReportTime"]
        fmt = "%Y-%m-%d %H:%M:%S" if "-" in text else "%Y/%m/%d %H:%M:%S"
        checked["dash" if "-" in text else "slash"] += 1
        assert results[number]["resulted_at"] == dt.datetime.strptime(text, fmt)
    assert checked["dash"] and checked["slash"]


def test_recalled_admissions_keep_their_raw_serial_and_join_their_stay(staged: Staged) -> None:
    raw = read_csv(staged.hospital / "his" / "inpatient_admissions.csv")
    recalled_rows = [i + 1 for i, r in enumerate(raw) if r["JZLSH"].endswith("R")]
    assert recalled_rows
    stays = {r["_source_row"]: r for r in rows(staged, "encounter", "his", "admissions")}
    for number in recalled_rows:
        stay = stays[number]
        assert stay["recalled"] is True
        assert stay["record_key"] == raw[number - 1]["JZLSH"]
        assert stay["visit_serial"] == raw[number - 1]["JZLSH"][:-1]
    assert sum(s["recalled"] is False for s in stays.values()) == len(stays) - len(recalled_rows)


def test_value_maps_and_derived_columns(staged: Staged) -> None:
    patients = rows(staged, "patient", "his")
    assert {p["sex"] for p in patients} == {"M", "F"}
    assert all(isinstance(p["birth_date"], dt.date) for p in patients)
    assert any(p["phone"] is None for p in patients)  # "-" is a null token
    registrations = rows(staged, "encounter", "his", "registrations")
    assert {r["encounter_type"] for r in registrations} == {"outpatient", "emergency", "checkup"}
    assert {r["status"] for r in registrations} == {"done", "refunded", "cancelled"}
    assert all((r["status_changed_at"] is None) == (r["status"] != "refunded") for r in registrations)
    raw_requests = read_csv(staged.hospital / "lis" / "requests.csv")
    kinds = {"门诊": "outpatient", "急诊": "emergency", "体检": "checkup", "住院": "inpatient"}
    for order in rows(staged, "lab_order")[::37]:
        assert order["encounter_type"] == kinds[raw_requests[order["_source_row"] - 1]["PatientType"]]
    ages = [p["age_years"] for p in rows(staged, "patient", "lis")]
    assert ages and all(isinstance(a, int) and 0 <= a < 120 for a in ages)
    notes = rows(staged, "note")
    assert all(n["text"] and n["written_at"] and n["inpatient_no"] and n["admission_count"] for n in notes)
    results = rows(staged, "lab_result")
    assert all(r["specimen_type"] and r["collected_at"] and r["patient_key"] for r in results)  # lookups
    assert all(r["value_text"] for r in results) and any(isinstance(r["value"], float) for r in results)
    studies = rows(staged, "imaging_study")
    assert all(isinstance(s["instances"], int) and s["study_at"] for s in studies)
    settlements = rows(staged, "settlement")
    assert len({s["_source_file"] for s in settlements}) == 12
    assert all(isinstance(s["total_cost"], float) and s["settled_at"] for s in settlements)


def test_unpivoted_slots_and_roles(staged: Staged) -> None:
    fronts = read_csv(staged.hospital / "emr" / "front_sheets.csv")
    diagnoses = rows(staged, "diagnosis", "emr")
    expected = sum(1 for f in fronts for i in (1, 2, 3) if f[f"C06x{i:02d}C"]) + sum(
        1 for f in fronts if f["C03C"]
    )
    assert sum(d["role"] == "discharge" for d in diagnoses) == expected
    assert {d["role"] for d in diagnoses} <= {"discharge", "pathology", "external_cause"}
    procedures = rows(staged, "procedure", "emr")
    assert len(procedures) == sum(1 for f in fronts for i in range(1, 6) if f[f"C14x{i:02d}C"])
    assert {p["role"] for p in rows(staged, "procedure")} == {"front_sheet", "theatre", "billing"}
    costs = rows(staged, "charge", "emr")
    assert len(costs) == sum(1 for f in fronts for i in range(11, 18) if f[f"D{i}"])
    orders = read_csv(staged.hospital / "his" / "orders.csv")
    drug_orders = [r for r in rows(staged, "medication_order", "his", "orders")]
    assert len(drug_orders) == sum(1 for o in orders if o["YPBM"])
    [orders_map] = [m for m in staged.report.maps if m.source == "his.orders"]
    assert orders_map.excluded == sum(1 for o in orders if not o["YPBM"]) and orders_map.excluded_because


def test_rerunning_gives_byte_identical_output(staged: Staged, tmp_path: Path) -> None:
    again = stage_site("synthetic-hospital", staged.hospital, tmp_path)
    assert again.model_dump(exclude={"staging"}) == staged.report.model_dump(exclude={"staging"})
    for path in sorted(staged.staging.iterdir()):
        twin = tmp_path / "staging" / path.name
        assert output_bytes(twin) == output_bytes(path), path.name
