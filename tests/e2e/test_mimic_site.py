"""The MIMIC-III demo, a real hospital's export nobody here wrote, onboarded by its site mapping alone.

The pipeline (ingest -> link -> cdm -> quality -> deid) runs once on ``../shared/data/mimic-iii-demo``; the
tests then recount the CDM against the raw gzipped CSV files with plain SQL (DuckDB's own ``read_csv``, not
medspace's reader), and check that every raw row is staged, quarantined or excluded with a reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from medspace.cli import app

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
MIMIC = SHARED / "data" / "mimic-iii-demo"
SITE_FILE = Path(__file__).resolve().parents[2] / "src/medspace/sources/data/sites/mimic-iii.yaml"
KEY_ENV = {"MEDSPACE_PRODUCT_KEY": "5a" * 32}
SYSTEM = "mimic"

#: The raw tables the mapping must account for, row by row (file stem -> the mapping's table name).
RAW_TABLES = {
    "PATIENTS": "patients",
    "ADMISSIONS": "admissions",
    "ICUSTAYS": "icustays",
    "TRANSFERS": "transfers",
    "DIAGNOSES_ICD": "diagnoses_icd",
    "PROCEDURES_ICD": "procedures_icd",
    "PRESCRIPTIONS": "prescriptions",
    "LABEVENTS": "labevents",
    "MICROBIOLOGYEVENTS": "microbiologyevents",
}


@pytest.fixture(scope="module")
def mimic() -> Path:
    """The demo's folder; missing data fails in CI (it must be there) and skips on a developer's machine."""
    if not (MIMIC / "PATIENTS.csv.gz").exists():
        message = f"the MIMIC-III demo is not at {MIMIC} (see ../shared/data/mimic-iii-demo/README.md)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return MIMIC


@pytest.fixture(scope="module")
def raw(mimic: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """DuckDB views over the raw files, every field read as text (ICD-9 codes keep their leading zeros)."""
    con = duckdb.connect()
    for stem in [*RAW_TABLES, "D_LABITEMS"]:
        path = str(mimic / f"{stem}.csv.gz")
        con.read_csv(path, all_varchar=True, header=True).create_view(stem.lower())
    yield con
    con.close()


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(app, args, env=KEY_ENV)
    assert result.exit_code == 0, f"medspace {' '.join(args)}:\n{result.output}"
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture(scope="module")
def workspace(mimic: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One workspace built from the demo by the shipped site mapping, through every stage."""
    ws = tmp_path_factory.mktemp("mimic") / "ws"
    _invoke(["ingest", "--site", "mimic-iii", str(mimic), "--workspace", str(ws)])
    for stage in ("link", "cdm", "quality"):
        _invoke([stage, "--workspace", str(ws)])
    _invoke(["deid", "--workspace", str(ws)])
    return ws


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> Any:
    row = con.execute(sql, list(params)).fetchone()
    assert row is not None
    return row[0]


def _cdm_rows(ws: Path, table: str) -> int:
    return int(
        _scalar(
            duckdb.connect(), "select count(*) from read_parquet(?)", str(ws / "cdm" / f"{table}.parquet")
        )
    )


def _manifest(ws: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ws / "staging" / "manifest.json").read_text(encoding="utf-8"))
    return data


def test_the_site_file_is_under_300_lines() -> None:
    assert len(SITE_FILE.read_text(encoding="utf-8").splitlines()) < 300


def test_site_check_reads_the_real_files_and_reports_what_maps(mimic: Path) -> None:
    result = CliRunner().invoke(app, ["site", "check", "mimic-iii", str(mimic)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    for table in ("labevents", "diagnoses_icd", "lab_result", "diagnosis"):
        assert table in result.output
    assert "imaging_exam" in result.output  # a canonical table this site leaves empty is named


def test_every_raw_row_is_staged_quarantined_or_excluded(
    workspace: Path, raw: duckdb.DuckDBPyConnection
) -> None:
    """Per raw table: raw rows = staged + quarantined (quarantine.parquet holds each quarantined row), and
    per map: the staged rows it reads = written + quarantined + excluded (with the documented reason)."""
    manifest = _manifest(workspace)
    quarantine = str(workspace / "staging" / "quarantine.parquet")
    tables = {f"{t['system']}.{t['table']}": t for t in manifest["tables"]}
    for stem, name in RAW_TABLES.items():
        rows = _scalar(raw, f"select count(*) from {stem.lower()}")
        entry = tables[f"{SYSTEM}.{name}"]
        quarantined = _scalar(
            raw,
            'select count(*) from read_parquet(?) where system = ? and "table" = ?',
            quarantine,
            SYSTEM,
            name,
        )
        assert entry["rows_read"] == rows, stem
        assert entry["quarantined"] == quarantined, stem
        assert entry["staged"] + entry["quarantined"] == rows, stem
    mapped = {m["source"] for m in manifest["maps"]}
    assert {f"{SYSTEM}.{name}" for name in RAW_TABLES.values()} <= mapped
    for entry in manifest["maps"]:
        assert entry["rows"] == tables[entry["source"]]["staged"], entry
        accounted = entry["written"] + entry["quarantined"] + entry["excluded"] + entry["empty_slots"]
        assert accounted == entry["rows"] * entry["slots"], entry
        if entry["excluded"]:
            assert entry["excluded_because"], entry


def test_every_staged_row_reaches_the_cdm(workspace: Path) -> None:
    """cdm accounts for every staged row it reads; on this site none is excluded."""
    cdm = json.loads((workspace / "cdm" / "manifest.json").read_text(encoding="utf-8"))
    staged = {c["table"]: c["rows"] for c in _manifest(workspace)["canonical"]}
    for table, entry in cdm["staged"].items():
        assert entry["rows"] == staged[table], table
        assert entry["excluded"] == {}, table
        if entry["rows"]:
            assert sum(entry["written"].values()) == entry["rows"], table


def test_transfers_keep_the_moves_and_exclude_the_stays_start_and_end(
    workspace: Path, raw: duckdb.DuckDBPyConnection
) -> None:
    (transfer_map,) = [m for m in _manifest(workspace)["maps"] if m["source"] == f"{SYSTEM}.transfers"]
    moves = _scalar(raw, "select count(*) from transfers where eventtype = 'transfer'")
    others = _scalar(raw, "select count(*) from transfers where eventtype <> 'transfer'")
    assert transfer_map["written"] == moves
    assert transfer_map["excluded"] == others


def test_diagnoses_without_a_code_are_quarantined_by_the_required_rule(
    workspace: Path, raw: duckdb.DuckDBPyConnection
) -> None:
    uncoded = _scalar(
        raw, "select count(*) from diagnoses_icd where icd9_code is null or trim(icd9_code) = ''"
    )
    quarantined = _scalar(
        raw,
        "select count(*) from read_parquet(?) where \"table\" = 'diagnosis' and rule = 'required' "
        "and field = 'code'",
        str(workspace / "staging" / "quarantine.parquet"),
    )
    assert quarantined == uncoded


def test_a_diagnosis_row_without_a_code_is_quarantined_with_file_row_and_reason(
    mimic: Path, tmp_path: Path
) -> None:
    """The demo's DIAGNOSES_ICD has a code on every row; blank two (as the full MIMIC-III has) and they are
    quarantined by the model's required rule, naming the file and row, while every other row is written."""
    import gzip
    import shutil

    from medspace.sources import stage_site

    exports = tmp_path / "exports"
    shutil.copytree(mimic, exports)
    diagnoses = exports / "DIAGNOSES_ICD.csv.gz"
    lines = gzip.decompress(diagnoses.read_bytes()).decode("utf-8").splitlines(keepends=True)
    for row in (3, 7):  # data rows 3 and 7: ROW_ID,SUBJECT_ID,HADM_ID,SEQ_NUM,"ICD9_CODE"
        lines[row] = lines[row].rsplit(",", 1)[0] + ",\n"
    diagnoses.write_bytes(gzip.compress("".join(lines).encode("utf-8")))

    report = stage_site("mimic-iii", exports, tmp_path / "ws")

    (entry,) = [m for m in report.maps if m.source == "mimic.diagnoses_icd"]
    assert (entry.written, entry.quarantined) == (len(lines) - 1 - 2, 2)
    with duckdb.connect() as con:
        rows = con.execute(
            'select file, "row", field, rule, reason from read_parquet(?) where "table" = ? order by 2',
            [str(tmp_path / "ws" / "staging" / "quarantine.parquet"), "diagnosis"],
        ).fetchall()
    assert [(file, row, field, rule) for file, row, field, rule, _ in rows] == [
        ("DIAGNOSES_ICD.csv.gz", 3, "code", "required"),
        ("DIAGNOSES_ICD.csv.gz", 7, "code", "required"),
    ]
    assert all(reason for *_, reason in rows)


def test_cdm_counts_equal_a_recount_of_the_raw_files(workspace: Path, raw: duckdb.DuckDBPyConnection) -> None:
    def count(sql: str) -> int:
        return int(_scalar(raw, sql))

    assert _cdm_rows(workspace, "person") == count("select count(distinct subject_id) from patients") == 100
    assert _cdm_rows(workspace, "visit_occurrence") == count("select count(*) from admissions")
    assert _cdm_rows(workspace, "visit_detail") >= count("select count(*) from icustays")
    assert _cdm_rows(workspace, "condition_occurrence") == count(
        "select count(*) from diagnoses_icd where nullif(trim(icd9_code), '') is not null"
    )
    assert _cdm_rows(workspace, "procedure_occurrence") == count("select count(*) from procedures_icd")
    assert _cdm_rows(workspace, "drug_exposure") == count("select count(*) from prescriptions")
    assert _cdm_rows(workspace, "death") == count("select count(*) from patients where dod is not null")
    # Lab events and microbiology results both become measurements.
    assert _cdm_rows(workspace, "measurement") == count("select count(*) from labevents") + count(
        "select count(*) from microbiologyevents"
    )


@pytest.mark.parametrize(
    "table",
    [
        "visit_occurrence",
        "visit_detail",
        "condition_occurrence",
        "procedure_occurrence",
        "drug_exposure",
        "measurement",
        "death",
    ],
)
def test_no_cdm_row_lacks_its_person(workspace: Path, table: str) -> None:
    path = str(workspace / "cdm" / f"{table}.parquet")
    assert (
        _scalar(duckdb.connect(), "select count(*) from read_parquet(?) where person_id is null", path) == 0
    )


def test_lab_values_reach_the_cdm_unchanged(workspace: Path, raw: duckdb.DuckDBPyConnection) -> None:
    """Per lab item: as many results and numeric values as LABEVENTS has, with the same sum, both as the
    number (value_as_number, rounded to 4 decimals by cdm) and as the text written (value_source_value).
    MIMIC's item codes have no unit conversion, so the value must stay the value as measured."""
    expected = {
        item: (n, numeric, total)
        for item, n, numeric, total in raw.execute(
            "select itemid, count(*), count(valuenum), sum(cast(valuenum as double)) "
            "from labevents group by itemid"
        ).fetchall()
    }
    found = {
        item: rest
        for item, *rest in duckdb.connect()
        .execute(
            "select measurement_source_value, count(*), count(value_as_number), sum(value_as_number), "
            "sum(try_cast(value_source_value as double)) from read_parquet(?) "
            "where measurement_source_value in (select unnest(?)) group by 1",
            [str(workspace / "cdm" / "measurement.parquet"), list(expected)],
        )
        .fetchall()
    }
    assert set(found) == set(expected)
    for item, (n, numeric, total) in expected.items():
        rows, numbers, as_number, as_text = found[item]
        assert (rows, numbers) == (n, numeric), item
        if total is not None:
            assert as_text == pytest.approx(total, rel=1e-9), item
            assert as_number == pytest.approx(total, rel=1e-9, abs=5e-5 * numeric), item


def test_the_release_is_written(workspace: Path) -> None:
    assert list((workspace / "deid").glob("*/deid_report.html"))


def test_kpis_are_measured_or_not_applicable_with_the_reason(workspace: Path) -> None:
    """A real hospital's export: each KPI is reconciled with a ledger per source, or not applicable with
    the reason; every source's reasons and unexplained records add up to its difference."""
    kpis = json.loads((workspace / "quality" / "kpis.json").read_text(encoding="utf-8"))["kpis"]
    assert kpis["discharges"]["status"] == "measured"
    for name, kpi in kpis.items():
        if kpi["status"] != "measured":
            assert kpi["status"] == "not_applicable" and kpi["reason"], name
            continue
        for s in kpi["sources"]:
            total = sum(r["amount"] for r in s["reasons"]) + s["unexplained"]["amount"]
            assert total == pytest.approx(s["difference"], abs=0.05), (name, s["source"])
            assert s["status"] == ("failed" if s["unexplained_pct"] > s["tolerance_pct"] else "passed")
    records = pq.read_table(workspace / "quality" / "kpi_records.parquet")
    assert set(records.column_names) >= {"kpi", "source", "record_key", "reference_key", "outcome", "rule"}
