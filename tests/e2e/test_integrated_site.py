"""The second vendor profile end to end: `medspace synth --profile integrated`, then
`medspace run --site integrated-hospital` (ingest by the site mapping -> link -> cdm -> quality -> deid).

The tests score the run against the generator's ground truth (``truth/``, never read by the pipeline) and
recount the raw exports with Python's own csv and json readers, not medspace's.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from medspace.cdm import cdm_schema
from medspace.cli import app

pytestmark = pytest.mark.slow

SITE = "integrated-hospital"
PATIENTS = 2_000
KEY_ENV = {"MEDSPACE_PRODUCT_KEY": "3c" * 32}


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(app, args, env=KEY_ENV)
    assert result.exit_code == 0, f"medspace {' '.join(args)}:\n{result.output}"
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("integrated") / "hospital"
    args = ["--profile", "integrated", "--patients", str(PATIENTS), "--seed", "9", "--out", str(out)]
    _invoke(["synth", *args, "--quiet"])
    return out


@pytest.fixture(scope="module")
def workspace(hospital: Path) -> Path:
    """One workspace built from the integrated hospital by the shipped site mapping, through every stage
    (`medspace run --site`: ingest, link, cdm, quality, deid)."""
    ws = hospital.parent / "ws"
    output = _invoke(["run", str(hospital), "--site", SITE, "--workspace", str(ws)])
    assert "k_anonymity" in output
    return ws


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _rows(path: Path, columns: list[str] | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(path, columns=columns).to_pylist()
    return rows


def _pairs(counts: Counter[Any]) -> int:
    return sum(n * (n - 1) // 2 for n in counts.values())


def _raw_rows(path: Path) -> int:
    """Data rows of one export file, counted without medspace: CSV records (quoted line breaks are one
    record), lines of the never-quoted tab-separated dump, non-blank NDJSON lines; headers not counted."""
    if path.suffix == ".ndjson":
        with path.open(encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())
    with path.open(encoding="utf-8", newline="") as f:
        if path.suffix == ".tsv":
            return sum(1 for line in f if line.strip()) - 1
        return sum(1 for _ in csv.reader(f)) - 1


def test_person_linkage_precision_and_recall_against_the_truth(hospital: Path, workspace: Path) -> None:
    """Pairwise over every staged raw row: a pair is predicted when both rows' patient records carry the
    same person_id (link/person_records.parquet, joined to the staged row by system and patient key), and
    true when the truth gives both rows the same person."""
    true_person = {(r["file"], r["row"]): r["person_id"] for r in _rows(hospital / "truth/records.parquet")}
    person_of = {
        (r["system"], r["patient_key"]): r["person_id"]
        for r in _rows(workspace / "link/person_records.parquet", ["system", "patient_key", "person_id"])
    }
    both: Counter[tuple[Any, Any]] = Counter()
    predicted: Counter[Any] = Counter()
    actual: Counter[Any] = Counter()
    seen: set[tuple[str, int]] = set()
    manifest = _json(workspace / "staging/manifest.json")
    for entry in manifest["canonical"]:
        if not entry["rows"]:
            continue
        columns = ["system", "patient_key", "_source_file", "_source_row"]
        for i, r in enumerate(_rows(workspace / entry["path"], columns)):
            row = (r["_source_file"], r["_source_row"])
            if row in seen:
                continue  # one raw row staged as several canonical rows counts once
            seen.add(row)
            mine = person_of.get((r["system"], r["patient_key"])) or f"unlinked:{entry['table']}:{i}"
            truth = true_person[row]
            both[(mine, truth)] += 1
            predicted[mine] += 1
            actual[truth] += 1
    assert len(seen) == len(true_person)  # every exported row was staged and scored
    true_positive = _pairs(both)
    precision = true_positive / _pairs(predicted)
    recall = true_positive / _pairs(actual)
    print(f"integrated site, {len(seen)} rows: person precision {precision:.6f}, recall {recall:.6f}")
    assert precision >= 0.99, precision
    assert recall >= 0.99, recall


def test_every_raw_row_is_staged_quarantined_or_excluded(hospital: Path, workspace: Path) -> None:
    manifest = _json(workspace / "staging/manifest.json")
    with duckdb.connect() as con:
        quarantined = Counter(
            {
                (system, table): n
                for system, table, n in con.execute(
                    'SELECT system, "table", count(*) FROM read_parquet(?) GROUP BY ALL',
                    [str(workspace / "staging/quarantine.parquet")],
                ).fetchall()
            }
        )
    raw: Counter[tuple[str, str]] = Counter()
    for f in manifest["files"]:
        raw[(f["system"], f["table"])] += _raw_rows(hospital / f["file"])
    exported = {p.relative_to(hospital).as_posix() for p in hospital.glob("*/*") if p.parent.name != "truth"}
    assert {f["file"] for f in manifest["files"]} == exported  # the mapping reads every export file
    tables = {(t["system"], t["table"]): t for t in manifest["tables"]}
    assert set(tables) == set(raw)
    for key, entry in tables.items():
        assert entry["rows_read"] == raw[key], key
        assert entry["staged"] + quarantined[key] == raw[key], key
        assert entry["quarantined"] == quarantined[key], key
    for m in manifest["maps"]:
        system, table = m["source"].split(".", 1)
        assert m["rows"] == tables[(system, table)]["staged"], m
        assert m["written"] + m["quarantined"] + m["excluded"] + m["empty_slots"] == m["rows"] * m["slots"], m
        if m["excluded"]:
            assert m["excluded_because"], m


def test_every_staged_row_has_exactly_one_link_event(workspace: Path) -> None:
    manifest = _json(workspace / "staging/manifest.json")
    events = Counter(
        (e["table"], e["system"], e["record_key"])
        for e in _rows(workspace / "link/events.parquet", ["table", "system", "record_key"])
    )
    staged = 0
    for entry in manifest["canonical"]:
        for r in _rows(workspace / entry["path"], ["system", "record_key"]):
            assert events[(entry["table"], r["system"], r["record_key"])] == 1, (entry["table"], r)
            staged += 1
    assert staged == sum(events.values())
    assert staged > 0


def test_cdm_accounts_for_every_staged_row_and_no_required_field_is_null(workspace: Path) -> None:
    staged = {c["table"]: c["rows"] for c in _json(workspace / "staging/manifest.json")["canonical"]}
    cdm = _json(workspace / "cdm/manifest.json")
    for table, entry in cdm["staged"].items():
        assert entry["rows"] == staged[table], table
        assert sum(entry["written"].values()) + sum(entry["excluded"].values()) == entry["rows"], table
    assert cdm["tables"]["person"] > 0
    # one laboratory in canonical units (docs/synthetic-hospital.md): every lab value's test and unit known
    units = cdm["measurement_units"]
    assert units["canonical"] == cdm["tables"]["measurement"] > 0, units
    schema = cdm_schema()
    with duckdb.connect() as con:
        for table in cdm["tables"]:
            path = str(workspace / "cdm" / f"{table}.parquet")
            for field in (f for f in schema[table].fields if f.required):
                nulls = con.execute(
                    f'SELECT count(*) FROM read_parquet(?) WHERE "{field.name}" IS NULL', [path]
                ).fetchone()
                assert nulls == (0,), f"{table}.{field.name}"


def test_the_kpis_reconcile_to_the_truth(hospital: Path, workspace: Path) -> None:
    """Every KPI quality reports equals the true KPI (by the official definition) wherever the truth defines
    it; a KPI the site cannot measure is not applicable with its reason, never failed."""
    truth = _json(hospital / "truth/kpis.json")
    reported = _json(workspace / "quality/kpis.json")["kpis"]
    compared = []
    for name, kpi in reported.items():
        if kpi["status"] != "measured":
            assert kpi["status"] == "not_applicable", (name, kpi["status"])
            assert kpi["reason"], name
            continue
        if name in truth:
            assert kpi["value"] == pytest.approx(truth[name], abs=1e-6 if truth[name] < 100 else 0.005), name
            compared.append(name)
    print(f"integrated site: {len(compared)} KPIs equal the truth: {', '.join(compared)}")
    # the tables this site has are enough for every KPI of the tertiary hospital's reconciliation
    assert set(compared) == set(reported)


def test_a_kpi_whose_table_is_absent_is_not_applicable_with_its_reason(
    workspace: Path, tmp_path: Path
) -> None:
    """The same staged site without its procedure and charge tables: the KPIs that need them are not
    applicable, naming the table, and the rest still reconcile."""
    import shutil

    from medspace.quality import reconcile_kpis

    ws = tmp_path / "ws"
    shutil.copytree(workspace / "staging", ws / "staging")
    for table in ("procedure", "charge"):
        path = ws / "staging" / f"{table}.parquet"
        empty = pq.read_table(path).schema.empty_table()
        pq.write_table(empty, path)
    result = reconcile_kpis(ws)
    for name in ("operations", "operated_discharges", "grade4_share"):
        kpi = result.kpis[name]
        assert (kpi.status, kpi.reason) == (
            "not_applicable",
            "the canonical table procedure is empty at this site",
        )
    assert result.kpis["discharges"].status == "measured"
    assert (
        result.kpis["discharges"].value
        == _json(workspace / "quality/kpis.json")["kpis"]["discharges"]["value"]
    )


def test_deid_releases_with_k_met(workspace: Path) -> None:
    (report_path,) = (workspace / "deid").glob("*/deid_report.json")
    report = _json(report_path)
    k_models = [m for m in report["models"] if m["model"] == "k_anonymity"]
    assert k_models
    assert all(m["satisfied"] for m in k_models), k_models
    assert report["rows_released"]
    person = report_path.parent / "person.parquet"
    assert 0 < pq.read_metadata(person).num_rows <= _json(workspace / "cdm/manifest.json")["tables"]["person"]
