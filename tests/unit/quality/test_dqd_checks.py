"""The DataQualityDashboard checks on three real CDMs (Synthea27Nj, Eunomia GiBleed, the synthetic hospital),
with every sampled figure recounted by brute force in Python over the Parquet rows (pyarrow + plain loops),
never through DuckDB."""

from __future__ import annotations

import csv
import functools
import json
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import reference_data
from medspace.cdm import build_cdm, import_omop
from medspace.core import ConfigError, InputError
from medspace.link import link_workspace
from medspace.quality import CheckResult, QualityResults, run_checks, write_dqd_json
from medspace.sources import stage_site
from medspace.synth import HospitalConfig, generate_hospital

CONTROL = Path(__file__).resolve().parents[3] / "src/medspace/quality/data/dqd-5.4"


@pytest.fixture(scope="module")
def synthea(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, QualityResults]:
    ws = tmp_path_factory.mktemp("dqd-synthea")
    import_omop(reference_data.synthea_zip(), ws)
    return ws, run_checks(ws)


@pytest.fixture(scope="module")
def gibleed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, QualityResults]:
    path = reference_data.gibleed()
    ws = tmp_path_factory.mktemp("dqd-gibleed")
    import_omop(path, ws)
    return ws, run_checks(ws)


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, QualityResults]:
    ws = tmp_path_factory.mktemp("dqd-hospital")
    generate_hospital(HospitalConfig(patients=400, seed=3, chunk_patients=400), ws / "hospital")
    stage_site(None, ws / "hospital", ws)
    link_workspace(ws)
    build_cdm(ws)
    return ws, run_checks(ws)


# -- brute force over the Parquet rows -----------------------------------------------------------------


@functools.cache
def _rows(ws: Path, table: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(ws / "cdm" / f"{table.lower()}.parquet").to_pylist()
    return rows


@functools.cache
def _keys(ws: Path, table: str, column: str) -> frozenset[Any]:
    return frozenset(x[column] for x in _rows(ws, table))


@functools.cache
def _unit_rows() -> dict[str, dict[str, str]]:
    with (CONTROL / "OMOP_CDMv5.4_Concept_Level.csv").open(encoding="utf-8") as fh:
        return {c["conceptId"]: c for c in csv.DictReader(fh) if c["plausibleUnitConceptIdsThreshold"]}


def _field_params() -> dict[tuple[str, str], dict[str, str]]:
    with (CONTROL / "OMOP_CDMv5.4_Field_Level.csv").open(encoding="utf-8") as fh:
        return {(r["cdmTableName"].upper(), r["cdmFieldName"].upper()): r for r in csv.DictReader(fh)}


def _as_date(value: Any) -> date | None:
    if value is None:
        return None
    return value.date() if isinstance(value, datetime) else value  # type: ignore[no-any-return]


def _bound(text: str, is_date: bool) -> Any:
    text = text.strip()
    if text.startswith("'"):
        return date(int(text[1:5]), int(text[5:7]), int(text[7:9]))
    if text.startswith("DATEADD"):
        return date.today() + timedelta(days=1)
    if text.startswith("YEAR"):
        return date.today().year + 1
    return float(text)


def _recount(
    ws: Path, r: CheckResult, params: dict[tuple[str, str], dict[str, str]]
) -> tuple[int, int] | None:
    """(violated, denominator) recomputed in Python for the check types sampled, else None."""
    table, fld = r.cdm_table_name, (r.cdm_field_name or "").lower()
    name = r.check_name
    if name in ("isRequired", "measureValueCompleteness"):
        rows = _rows(ws, table)
        return sum(1 for x in rows if x[fld] is None), len(rows)
    if name == "isPrimaryKey":
        rows = _rows(ws, table)
        counts = Counter(x[fld] for x in rows)
        return sum(1 for x in rows if x[fld] is not None and counts[x[fld]] > 1), len(rows)
    if name == "isForeignKey":
        p = params[(table, r.cdm_field_name or "")]
        keys = _keys(ws, p["fkTableName"], p["fkFieldName"].lower())
        rows = _rows(ws, table)
        return sum(1 for x in rows if x[fld] is not None and x[fld] not in keys), len(rows)
    if name in ("plausibleValueLow", "plausibleValueHigh") and r.check_level == "FIELD":
        p = params[(table, r.cdm_field_name or "")]
        is_date = p["cdmDatatype"] in ("date", "datetime")
        bound = _bound(p[name], is_date)
        values = [_as_date(x[fld]) if is_date else x[fld] for x in _rows(ws, table) if x[fld] is not None]
        bad = [v for v in values if (v < bound if name == "plausibleValueLow" else v > bound)]
        return len(bad), len(values)
    if name == "plausibleStartBeforeEnd":
        end = params[(table, r.cdm_field_name or "")]["plausibleStartBeforeEndFieldName"].lower()
        both = [x for x in _rows(ws, table) if x[fld] is not None and x[end] is not None]
        return sum(1 for x in both if _as_date(x[fld]) > _as_date(x[end])), len(both)  # type: ignore[operator]
    if name == "plausibleAfterBirth":
        births: dict[int, date | None] = {}
        for p in _rows(ws, "person"):
            births[p["person_id"]] = _as_date(p["birth_datetime"]) or date(
                p["year_of_birth"], p["month_of_birth"] or 1, p["day_of_birth"] or 1
            )
        dated = [x for x in _rows(ws, table) if x[fld] is not None]
        bad = [x for x in dated if births.get(x["person_id"]) and _as_date(x[fld]) < births[x["person_id"]]]  # type: ignore[operator]
        return len(bad), len(dated)
    if name == "withinVisitDates":
        visits = {v["visit_occurrence_id"]: v for v in _rows(ws, "visit_occurrence")}
        joined = [
            (x, visits[x["visit_occurrence_id"]])
            for x in _rows(ws, table)
            if x["visit_occurrence_id"] in visits
        ]
        bad = [
            1
            for x, v in joined
            if x[fld] is not None
            and (
                _as_date(x[fld]) < v["visit_start_date"] - timedelta(days=7)  # type: ignore[operator]
                or _as_date(x[fld]) > v["visit_end_date"] + timedelta(days=7)  # type: ignore[operator]
            )
        ]
        return len(bad), len(joined)
    if name == "measurePersonCompleteness":
        present = {x["person_id"] for x in _rows(ws, table)}
        persons = _rows(ws, "person")
        return sum(1 for p in persons if p["person_id"] not in present), len(persons)
    if name == "standardConceptRecordCompleteness":
        rows = _rows(ws, table)
        if fld == "unit_concept_id" and table in ("MEASUREMENT", "OBSERVATION"):
            rows = [x for x in rows if x["value_as_number"] is not None]
        return sum(1 for x in rows if x[fld] == 0), len(rows)
    if name == "plausibleUnitConceptIds":
        row = _unit_rows()[r.concept_id or ""]
        allowed = {int(u) for u in row["plausibleUnitConceptIds"].split(",") if u.strip()}
        base = [
            x
            for x in _rows(ws, table)
            if x[fld] == int(r.concept_id or 0)
            and x["value_as_number"] is not None
            and x["unit_source_value"] is not None
        ]
        return sum(
            1 for x in base if x["unit_concept_id"] is not None and x["unit_concept_id"] not in allowed
        ), len(base)
    if name == "isStandardValidConcept":
        concepts = {c["concept_id"]: c for c in _rows(ws, "concept")}
        rows = _rows(ws, table)
        bad = [
            x
            for x in rows
            if x[fld] in concepts
            and x[fld] != 0
            and (
                concepts[x[fld]]["standard_concept"] != "S" or concepts[x[fld]]["invalid_reason"] is not None
            )
        ]
        return len(bad), len(rows)
    return None


def _assert_recounted(ws: Path, results: QualityResults, minimum: int) -> None:
    params = _field_params()
    checked = Counter[str]()
    for r in results.results:
        if r.num_violated_rows is None:
            continue
        expected = _recount(ws, r, params)
        if expected is None:
            continue
        assert (r.num_violated_rows, r.num_denominator_rows) == expected, r.check_id
        pct = expected[0] / expected[1] if expected[1] else 0.0
        assert r.pct_violated_rows == pytest.approx(pct), r.check_id
        checked[r.check_name] += 1
    assert sum(checked.values()) >= minimum, checked


def _assert_status_consistent(results: QualityResults) -> None:
    for r in results.results:
        if r.status == "error":
            assert r.error
        elif r.status == "not_applicable":
            assert r.not_applicable_reason
        else:
            assert r.num_violated_rows is not None and r.num_denominator_rows is not None
            limit = r.threshold_value or 0
            over = r.num_violated_rows > 0 if not limit else (r.pct_violated_rows or 0) * 100 > limit
            assert r.failed == over, r.check_id


# -- Synthea27Nj ----------------------------------------------------------------------------------------


def test_synthea_runs_every_check_type_of_the_control_tables(synthea: tuple[Path, QualityResults]) -> None:
    _, results = synthea
    with (CONTROL / "OMOP_CDMv5.4_Check_Descriptions.csv").open(encoding="utf-8") as fh:
        types = {r["checkName"] for r in csv.DictReader(fh)}
    assert len(types) == 27
    assert {r.check_name for r in results.results} == types
    counts = results.status_counts()
    assert counts["error"] == 0
    assert counts["passed"] > 1000 and counts["failed"] > 0
    assert all(r.passed for r in results.results if r.check_name == "cdmTable")
    _assert_status_consistent(results)
    # CONCEPT_ANCESTOR ships empty in Synthea27Nj: the descendant-based checks cannot run.
    descendants = [r for r in results.results if r.check_name == "plausibleGenderUseDescendants"]
    assert descendants and all(r.status == "not_applicable" for r in descendants)
    assert all("CONCEPT_ANCESTOR" in (r.not_applicable_reason or "") for r in descendants)


def test_synthea_figures_match_a_brute_force_recount(synthea: tuple[Path, QualityResults]) -> None:
    ws, results = synthea
    _assert_recounted(ws, results, minimum=600)


def test_synthea_keeps_kahn_context_threshold_and_concept(synthea: tuple[Path, QualityResults]) -> None:
    _, results = synthea
    r = results.by_id("field_plausiblevaluelow_drug_exposure_quantity")
    assert (r.context, r.category, r.subcategory, r.severity) == (
        "Verification",
        "Plausibility",
        "Atemporal",
        "characterization",
    )
    assert r.threshold_value == 1 and r.status == "failed"
    unit = results.by_id("concept_plausibleunitconceptids_measurement_measurement_concept_id_3013721")
    assert unit.concept_id == "3013721" and unit.check_level == "CONCEPT"


# -- GiBleed --------------------------------------------------------------------------------------------


def test_gibleed_quirks_show_as_failures_or_not_applicable(gibleed: tuple[Path, QualityResults]) -> None:
    ws, results = gibleed
    assert results.status_counts()["error"] == 0
    _assert_status_consistent(results)
    manifest = json.loads((ws / "cdm" / "manifest.json").read_text())
    # v5.3 lacks fields of v5.4: cdmField fails, the checks on those fields are not applicable.
    missing = [(t.upper(), f.upper()) for t, e in manifest["tables"].items() for f in e["missing_fields"]]
    assert missing
    for table, fld in missing:
        assert results.by_id(f"field_cdmfield_{table}_{fld}".lower()).status == "failed"
        others = [r for r in results.results if (r.cdm_table_name, r.cdm_field_name) == (table, fld)]
        assert all(r.status == "not_applicable" for r in others if r.check_name != "cdmField")
    # Tables stored as one row of header text were quarantined by the importer: they are empty here.
    headers = [t.upper() for t, e in manifest["tables"].items() if e["header_in_first_row"]]
    assert "CARE_SITE" in headers
    for table in headers:
        assert results.by_id(f"table_cdmtable_{table}".lower()).passed
        for r in results.results:
            if r.cdm_table_name == table and r.check_name not in ("cdmTable", "cdmField"):
                assert r.status == "not_applicable"
    # v5.3 has no EPISODE table.
    assert results.by_id("table_cdmtable_episode").failed
    _assert_recounted(ws, results, minimum=400)


# -- the synthetic hospital -----------------------------------------------------------------------------


def test_hospital_cdm_has_no_errors_and_explains_the_missing_vocabulary(
    hospital: tuple[Path, QualityResults],
) -> None:
    ws, results = hospital
    counts = results.status_counts()
    assert counts["error"] == 0 and counts["passed"] > 500
    _assert_status_consistent(results)
    vocab = [r for r in results.results if r.check_name in ("fkDomain", "fkClass", "isStandardValidConcept")]
    assert vocab and all(r.status == "not_applicable" for r in vocab)
    assert any("Vocabulary table CONCEPT" in (r.not_applicable_reason or "") for r in vocab)
    _assert_recounted(ws, results, minimum=200)


def test_results_json_round_trips_with_dqd_keys(
    hospital: tuple[Path, QualityResults], tmp_path: Path
) -> None:
    _, results = hospital
    data = json.loads(write_dqd_json(results, tmp_path / "out" / "dqd.json").read_text(encoding="utf-8"))
    assert {"startTimestamp", "endTimestamp", "executionTime", "CheckResults", "Metadata", "Overview"} <= set(
        data
    )
    keys = {
        "checkId", "checkName", "checkLevel", "checkDescription", "cdmTableName", "cdmFieldName", "conceptId",
        "unitConceptId", "numViolatedRows", "pctViolatedRows", "numDenominatorRows", "thresholdValue",
        "notesValue", "failed", "passed", "isError", "notApplicable", "notApplicableReason", "error",
        "context", "category", "subcategory", "severity",
    }  # fmt: skip
    assert len(data["CheckResults"]) == len(results.results)
    for item in data["CheckResults"]:
        assert keys <= set(item)
        assert item["failed"] + item["passed"] + item["isError"] + item["notApplicable"] == 1
    overview = data["Overview"]
    assert overview["countTotal"] == len(results.results)
    assert overview["countOverallFailed"] == results.status_counts()["failed"]
    assert "@" not in "".join(
        i["checkDescription"] for i in data["CheckResults"] if i["checkLevel"] != "CONCEPT"
    )


def test_spark_and_a_workspace_without_cdm_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no CDM"):
        run_checks(tmp_path)
    with pytest.raises(ConfigError, match="DuckDB only"):
        run_checks(tmp_path, engine="spark")
