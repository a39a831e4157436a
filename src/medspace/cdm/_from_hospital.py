"""Builds OMOP CDM v5.4 tables from a hospital's staged canonical tables and the link stage's output.

Each builder (``_people.py``, ``_clinical.py``) is an Ibis expression over the canonical hospital model
(``staging/<table>.parquet``) and ``link/``; `conform` gives it exactly the columns and types of the official
spec, so the same code runs on DuckDB and on Spark and every table is checked against the schema it claims.
Source codes are kept in ``*_source_value``; concepts come from `medspace.cdm._concepts` (0 where none is
known). The manifest accounts for every staged row: the CDM table it was written to, or the rule that
excluded it (`RULES`), per canonical table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis

from medspace.core import (
    EngineName,
    InputError,
    Workspace,
    connect,
    materialise,
    refresh_catalog,
    replace_folder,
    stage_lineage,
    write_parquet,
)

from ._clinical import Clinical, route_context_tables
from ._hospital import RULES, HospitalData, model_schemas
from ._people import (
    care_sites,
    deaths,
    died_in_hospital,
    locations,
    observation_periods,
    person_attributes,
    persons,
    providers,
    route_encounters,
    route_patients,
    route_transfers,
    visit_details,
    visit_index,
    visits,
)
from ._schema import cdm_schema
from ._units import UNIT_STATUSES

_IBIS_TYPES = {
    "integer": "int64",
    "float": "float64",
    "date": "date",
    "datetime": "timestamp",
    "varchar": "string",
}


def conform(expr: Any, table: str) -> Any:
    """Exactly the spec's columns of ``table``, in its order and types (missing columns as nulls)."""
    columns = {}
    for f in cdm_schema()[table].fields:
        dtype = _IBIS_TYPES[f.datatype]
        columns[f.name] = expr[f.name].cast(dtype) if f.name in expr.columns else ibis.null(dtype)
    return expr.select(**columns)


@dataclass(frozen=True)
class BuiltTables:
    """The CDM tables of one build as expressions, and the measurements whose unit status is counted."""

    tables: dict[str, Any]
    measurements: Any


def build_tables(h: HospitalData) -> BuiltTables:
    """Every CDM table the hospital's data fills, as Ibis expressions conforming to the spec.

    Routes every staged row of every canonical table on ``h`` (`HospitalData.routes`) as a side effect.
    """
    sites = care_sites(h)
    location = locations(h)
    provider = materialise(h.con, providers(h), "cdm_providers")
    attributes = materialise(h.con, person_attributes(h), "cdm_person_attributes")
    kept = attributes.filter(attributes.year_of_birth.notnull()).select("person_id")
    index = materialise(h.con, visit_index(h, kept), "cdm_visit_index")
    visit = materialise(h.con, visits(h, index, sites), "cdm_visits")
    route_patients(h, kept)
    route_encounters(h, index, died_in_hospital(index))
    route_transfers(h, index)
    route_context_tables(h)
    clinical = Clinical(h, kept, index, provider)
    diagnoses = clinical.diagnoses()
    exams = clinical.exams()
    plans = materialise(h.con, clinical.payer_plan_periods(), "cdm_payer_plan_periods")
    measured = clinical.measurement_rows()
    tables = {
        "location": location,
        "care_site": sites,
        "provider": provider,
        "person": persons(h, attributes, location),
        "visit_occurrence": visit,
        "visit_detail": visit_details(h, index, sites),
        "observation_period": observation_periods(visit),
        "death": deaths(h, index, kept),
        "condition_occurrence": clinical.conditions(diagnoses),
        "drug_exposure": clinical.drugs(),
        "procedure_occurrence": clinical.procedures(exams),
        "measurement": clinical.measurements(measured),
        "observation": clinical.observations(diagnoses),
        "note": clinical.notes(exams),
        "payer_plan_period": plans,
        "cost": clinical.costs(plans),
    }
    return BuiltTables({name: conform(expr, name) for name, expr in tables.items()}, measured)


def _counts(con: Any, expr: Any) -> dict[str, int]:
    """Rows per ``outcome`` value."""
    frame = con.execute(expr.group_by("outcome").aggregate(n=expr.count()))
    return {str(o): int(n) for o, n in zip(frame["outcome"], frame["n"], strict=True)}


def account(h: HospitalData, staged_rows: dict[str, int]) -> dict[str, Any]:
    """Per canonical table: rows staged, written per CDM table, excluded per rule (the three add up), the
    CDM tables some rows were written to as well, and the rows dated by their visit."""
    out: dict[str, Any] = {}
    for table in model_schemas():
        route = h.routes[table]
        outcomes = _counts(h.con, route.rows)
        written = {k: v for k, v in sorted(outcomes.items()) if not k.startswith("excluded:")}
        excluded = {
            k.removeprefix("excluded:"): v for k, v in sorted(outcomes.items()) if k.startswith("excluded:")
        }
        entry: dict[str, Any] = {"rows": staged_rows[table], "written": written, "excluded": excluded}
        also = {name: sum(_counts(h.con, expr).values()) for name, expr in route.also.items()}
        if also:
            entry["also_written"] = also
        if table in h.dated_by_visit:
            entry["dated_by_visit"] = sum(_counts(h.con, h.dated_by_visit[table]).values())
        out[table] = entry
    return out


@dataclass(frozen=True)
class CdmBuildReport:
    """Rows written per CDM table, and what became of every staged row per canonical table."""

    tables: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: canonical table -> {"rows", "written": {cdm table: n}, "excluded": {rule: n}, ...}
    staged: dict[str, Any] = field(default_factory=dict)
    #: measurements by unit status (`UNIT_STATUSES`)
    measurement_units: dict[str, int] = field(default_factory=dict)


def build_cdm(
    workspace: Path, engine: EngineName = "duckdb", *, progress: Callable[[int, int], None] | None = None
) -> CdmBuildReport:
    """Build the OMOP CDM tables of a staged and linked workspace into ``<workspace>/cdm/``.

    Args:
        workspace: the workspace folder, with ``staging/`` and ``link/`` (from ``ingest`` and ``link``).
        engine: ``"duckdb"`` or ``"spark"``; both write the same tables.
        progress: called as ``progress(tables_done, tables_total)`` after each table is written.

    Returns:
        Row counts per table, and the account of every staged row (also in ``cdm/manifest.json``).

    Raises:
        InputError: a stage's output the build needs is missing.
    """
    began = time.perf_counter()
    ws = Workspace(Path(workspace))
    for stage in ("staging", "link"):
        if not (ws.stage(stage) / "manifest.json").exists():
            raise InputError(
                f"the workspace has no {stage} output; run `medspace run` (or the stage) first",
                file=str(ws.stage(stage)),
            )
    # the vocabulary, when loaded, maps staged codes (`_concepts`): a CDM depends on it too
    lineage = stage_lineage(ws.root, "cdm", inputs=("staging", "link"), optional=("vocab",))
    con = connect(engine)
    h = HospitalData(con, ws.root)
    built = build_tables(h)
    staged_rows = {t: int(con.execute(h.staged(t).count())) for t in model_schemas()}
    counts: dict[str, int] = {}
    with replace_folder(ws.stage("cdm"), lineage=lineage) as out:
        for name, expr in built.tables.items():
            key = cdm_schema()[name].fields[0].name
            counts[name] = write_parquet(con, expr.order_by(key), out / f"{name}.parquet")
            if progress is not None:
                progress(len(counts), len(built.tables))
        staged = account(h, staged_rows)
        m = built.measurements
        by_status = _counts(con, m.select(outcome=m.unit_status))
        units = {s: by_status.get(s, 0) for s in UNIT_STATUSES}
        manifest = {
            "cdm_version": "5.4",
            "engine": engine,
            "source": "medspace hospital",
            "site": h.site.site,
            "tables": counts,
            "staged": staged,
            "measurement_units": units,
            "rules": RULES,
        }
        (out / "manifest.json").write_text(
            json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    refresh_catalog(ws.root)
    return CdmBuildReport(counts, time.perf_counter() - began, staged, units)
