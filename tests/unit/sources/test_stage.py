"""Staging the synthetic hospital: nothing is lost, lineage points at the right rows, the injected duplicates
are exactly what is quarantined, every date format present parses, and re-running gives the same bytes.

The checks use the hospital's ground truth (truth/), which the sources stage never reads.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from medspace.sources import LINEAGE, QUARANTINE, StagingReport, load_specs, stage_exports
from readers import manifest, read_csv, truth


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


def staged_table(staged: Staged, system: str, table: str) -> list[dict[str, object]]:
    return pq.read_table(staged.staging / system / f"{table}.parquet").to_pylist()


def test_every_row_is_staged_or_quarantined(staged: Staged) -> None:
    expected = {f["path"]: f["rows"] for f in manifest(staged.hospital)["files"]}
    reported = {f.file: f for f in staged.report.files}
    assert set(reported) == set(expected)
    for path, rows in expected.items():
        f = reported[path]
        assert f.rows_read == rows, path
        assert f.staged + f.quarantined == rows, path
    # The Parquet files and the quarantine table agree with the report.
    quarantine = pq.read_table(staged.staging / "quarantine.parquet")
    assert quarantine.schema.equals(QUARANTINE)
    per_file: dict[str, int] = defaultdict(int)
    for row in quarantine.select(["file"]).to_pylist():
        per_file[row["file"]] += 1
    for t in staged.report.tables:
        table = pq.read_table(staged.workspace / t.path)
        assert table.num_rows == t.staged
        for name in LINEAGE.names:
            assert table.schema.field(name).type == LINEAGE.field(name).type
    for path, f in reported.items():
        assert per_file.get(path, 0) == f.quarantined, path


def test_manifest_matches_the_report(staged: Staged) -> None:
    data = json.loads((staged.staging / "manifest.json").read_text(encoding="utf-8"))
    assert data["totals"]["rows_read"] == staged.report.rows_read
    assert data["rules"] == staged.report.rules
    assert {f["file"]: f["staged"] for f in data["files"]} == {f.file: f.staged for f in staged.report.files}


def test_lineage_points_at_the_source_row(staged: Staged) -> None:
    keys = {(r["file"], r["row"]): r["record_key"] for r in truth(staged.hospital, "records")}
    rng = random.Random(5)
    for spec in load_specs():
        for table in spec.tables:
            rows = staged_table(staged, spec.system, table.name)
            assert rows, f"{spec.system}.{table.name} is empty"
            for row in rng.sample(rows, min(50, len(rows))):
                key = "-".join(str(row[k]) for k in table.primary_key)
                assert row["_source_system"] == spec.system
                assert keys[(row["_source_file"], row["_source_row"])] == key, (spec.system, table.name)


def test_lineage_row_is_the_csv_data_row(staged: Staged) -> None:
    rows = read_csv(staged.hospital / "his" / "outpatient_registrations.csv")
    for row in staged_table(staged, "his", "registrations")[::997]:
        assert rows[int(str(row["_source_row"])) - 1]["GHXH"] == row["visit_serial"]


def test_the_quarantined_duplicates_are_the_injected_ones(staged: Staged) -> None:
    injected = {
        (d["file"], d["row"]) for d in truth(staged.hospital, "defects") if d["kind"] == "duplicate_record"
    }
    assert injected
    quarantine = pq.read_table(staged.staging / "quarantine.parquet").to_pylist()
    duplicates = {(q["file"], q["row"]) for q in quarantine if q["rule"] == "duplicate_key"}
    assert duplicates == injected
    # The synthetic hospital has no other defect that breaks a row's form.
    assert {q["rule"] for q in quarantine} == {"duplicate_key"}
    assert staged.report.problems == []


def test_mixed_lis_date_formats_both_parse(staged: Staged) -> None:
    mixed = {d["row"] for d in truth(staged.hospital, "defects") if d["kind"] == "mixed_date_format"}
    assert mixed
    raw = read_csv(staged.hospital / "lis" / "results.csv")
    results = {r["_source_row"]: r for r in staged_table(staged, "lis", "results")}
    checked = {"dash": 0, "slash": 0}
    for number in sorted(mixed)[:50] + list(range(1, 50)):
        if number not in results:
            continue  # a duplicate copy, quarantined
        text = raw[number - 1]["ReportTime"]
        fmt = "%Y-%m-%d %H:%M:%S" if "-" in text else "%Y/%m/%d %H:%M:%S"
        checked["dash" if "-" in text else "slash"] += 1
        assert results[number]["reported_at"] == dt.datetime.strptime(text, fmt)
    assert checked["dash"] and checked["slash"]


def test_types_and_value_mappings(staged: Staged) -> None:
    patients = staged_table(staged, "his", "patients")
    assert {p["sex"] for p in patients} == {"M", "F"}
    assert all(isinstance(p["birth_date"], dt.date) for p in patients)
    assert any(p["phone"] is None for p in patients)  # "-" is a null token
    registrations = staged_table(staged, "his", "registrations")
    assert {r["visit_type"] for r in registrations} == {"outpatient", "emergency", "checkup"}
    assert {r["status"] for r in registrations} == {"done", "refunded", "cancelled"}
    assert all(isinstance(r["registered_at"], dt.datetime) for r in registrations)
    assert all((r["refunded_at"] is None) == (r["status"] != "refunded") for r in registrations)
    admissions = staged_table(staged, "his", "admissions")
    assert {a["recalled"] for a in admissions} == {True, False}
    requests = staged_table(staged, "lis", "requests")
    assert all(isinstance(r["age_years"], int) and 0 <= r["age_years"] < 120 for r in requests)
    fronts = staged_table(staged, "emr", "front_sheets")
    assert {f["day_surgery"] for f in fronts} == {True, False}
    assert all(isinstance(f["admission_count"], int) for f in fronts)
    operations = staged_table(staged, "surgery", "operations")
    assert {o["urgency"] for o in operations} <= {"elective", "emergency"}
    notes = staged_table(staged, "emr", "notes")
    assert all(n["text"] and n["written_at"] and "-" in str(n["encounter_ref"]) for n in notes)
    studies = staged_table(staged, "pacs", "studies")
    assert all(isinstance(s["instances"], int) and s["study_date"] for s in studies)
    exams = staged_table(staged, "ris", "exams")
    assert all(e["findings"] and e["performed_at"] for e in exams)
    settlements = staged_table(staged, "insurance", "settlements")
    assert len({s["_source_file"] for s in settlements}) == 12
    assert all(isinstance(s["total_cost"], float) and s["settled_at"] for s in settlements)
    # No column the spec types is left empty by a parser silently failing on the hospital's formats.
    for spec in load_specs():
        for table in spec.tables:
            rows = staged_table(staged, spec.system, table.name)
            for column in table.columns:
                if column.type in ("date", "timestamp", "int", "float") and column.name not in OPTIONAL:
                    assert any(r[column.name] is not None for r in rows), (
                        spec.system,
                        table.name,
                        column.name,
                    )


OPTIONAL = {f"procedure_{kind}_{i}" for kind in ("date", "grade") for i in (4, 5)} | {"refunded_at"}


def test_rerunning_gives_byte_identical_parquet(staged: Staged, tmp_path: Path) -> None:
    again = stage_exports(staged.hospital, tmp_path)
    assert again.model_dump(exclude={"staging"}) == staged.report.model_dump(exclude={"staging"})
    for path in sorted(staged.staging.rglob("*.parquet")):
        twin = tmp_path / "staging" / path.relative_to(staged.staging)
        assert twin.read_bytes() == path.read_bytes(), path.name
    assert (tmp_path / "staging" / "manifest.json").read_bytes() == (
        staged.staging / "manifest.json"
    ).read_bytes()
