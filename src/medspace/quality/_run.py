"""The quality stage over a workspace: every check, the KPI reconciliation, the label and the report.

Writes ``<workspace>/quality/``: ``dqd_results.json`` (DataQualityDashboard's format), ``cross_system.json``
and ``cross_system_details.parquet``, ``kpis.json`` and ``kpi_records.parquet`` (every record explained or
left unexplained in a KPI source's ledger), ``mapping_coverage.json`` (mapped share per CDM
domain), ``label.json`` and ``report.html``. Tests re-check each
figure in them through an independent route.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

import medspace
from medspace.core import (
    CATALOG,
    ConfigError,
    EngineName,
    InputError,
    ProgressCallback,
    StageProgress,
    Workspace,
    refresh_catalog,
    replace_folder,
    stage_lineage,
)

from ._dqd_overrides import load_overrides
from ._kpi_definitions import KpiTolerance
from ._kpis import KPI_STEPS, KpiReconciliation, not_applicable_kpis, reconcile_kpis
from ._label import Dimension, EhdsQuality, QualityCheck, QualityLabel, Status, quality_label
from ._mapping_coverage import DomainCoverage, mapping_coverage
from ._report import SystemRow, render_report

# Thresholds of the workspace-level checks (percent of rows), in the spirit of DQD's defaults.
QUARANTINE_THRESHOLD = 1.0
ORPHAN_THRESHOLD = 1.0
RELINKED_THRESHOLD = 2.0
SYNC_LAG_DAYS_THRESHOLD = 3.0
REVIEW_HOURS_THRESHOLD = 24.0


@dataclass(frozen=True)
class QualityRun:
    """What `run_quality` wrote and found."""

    folder: Path
    label: QualityLabel
    kpis: KpiReconciliation
    checks: list[QualityCheck]
    seconds: float
    coverage: tuple[DomainCoverage, ...] = ()


def _staged_tables(workspace: Path) -> list[Path]:
    staging = workspace / "staging"
    return sorted(p for p in staging.glob("*.parquet") if p.name != "quarantine.parquet")


def staging_checks(workspace: Path) -> tuple[list[QualityCheck], list[SystemRow]]:
    """Quarantine and duplicate rates per raw table, and each canonical table's link outcome per system.

    Counted from the staged rows and ``quarantine.parquet`` themselves (distinct file and row, so a raw row
    unpivoted into several canonical rows counts once), and from ``link/events.parquet``.
    """
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    tables = _staged_tables(workspace)
    lineage = "system, _source_table AS raw_table, _source_file AS file, _source_row AS row"
    if tables:
        con.read_parquet([str(t) for t in tables], union_by_name=True).select(lineage).create_view("staged")
    else:
        con.execute(
            "CREATE VIEW staged AS SELECT NULL::VARCHAR AS system, NULL::VARCHAR AS raw_table, "
            "NULL::VARCHAR AS file, NULL::BIGINT AS row WHERE false"
        )
    quarantine = workspace / "staging" / "quarantine.parquet"
    if quarantine.exists():
        con.read_parquet(str(quarantine)).select(
            'system, "table" AS raw_table, file, CAST("row" AS BIGINT) AS row, rule'
        ).create_view("quarantined")
    else:
        con.execute(
            "CREATE VIEW quarantined AS SELECT NULL::VARCHAR AS system, NULL::VARCHAR AS raw_table, "
            "NULL::VARCHAR AS file, NULL::BIGINT AS row, NULL::VARCHAR AS rule WHERE false"
        )
    per_raw = (
        con.sql(
            """
        WITH s AS (SELECT DISTINCT system, raw_table, file, row FROM staged),
        q AS (SELECT system, raw_table, file, row, bool_or(rule = 'duplicate_key') AS duplicate,
                     bool_or(rule <> 'duplicate_key') AS broken
              FROM quarantined GROUP BY ALL),
        rows AS (SELECT system, raw_table, file, row FROM s UNION SELECT system, raw_table, file, row FROM q)
        SELECT r.system, r.raw_table, count(*) AS rows_read,
               count(*) FILTER (WHERE q.broken OR q.duplicate) AS quarantined,
               count(*) FILTER (WHERE q.duplicate AND NOT q.broken) AS duplicates
        FROM rows r LEFT JOIN q USING (system, raw_table, file, row)
        GROUP BY ALL ORDER BY r.system, r.raw_table
        """
        )
        .to_arrow_table()
        .to_pylist()
    )
    checks: list[QualityCheck] = []
    for t in per_raw:
        key = f"{t['system']}/{t['raw_table']}"
        read, bad, dup = int(t["rows_read"]), int(t["quarantined"]), int(t["duplicates"])
        other = bad - dup
        pct = 100.0 * other / read if read else 0.0
        dup_pct = 100.0 * dup / read if read else 0.0
        status: Status = (
            "not_applicable" if read == 0 else "passed" if pct <= QUARANTINE_THRESHOLD else "failed"
        )
        checks.append(
            QualityCheck(
                "staging",
                f"rows breaking the site mapping: {key}",
                "normativity",
                "validity",
                status,
                round(pct, 4),
                QUARANTINE_THRESHOLD,
                f"{other:,} of {read:,} rows quarantined",
            )
        )
        status = "not_applicable" if read == 0 else "passed" if dup_pct <= QUARANTINE_THRESHOLD else "failed"
        checks.append(
            QualityCheck(
                "staging",
                f"duplicate records: {key}",
                "accuracy",
                "uniqueness",
                status,
                round(dup_pct, 4),
                QUARANTINE_THRESHOLD,
                f"{dup:,} exact re-sent rows",
            )
        )
    rows: list[SystemRow] = []
    events = workspace / "link" / "events.parquet"
    if events.exists():
        con.read_parquet(str(events)).create_view("events")
        outcome = (
            con.sql(
                """SELECT "table" || '/' || system AS key, count(*) AS n,
                      count(*) FILTER (WHERE status = 'linked') AS linked,
                      count(*) FILTER (WHERE status = 'relinked') AS relinked,
                      count(*) FILTER (WHERE status = 'recovered') AS recovered,
                      count(*) FILTER (WHERE status = 'orphan') AS orphan
               FROM events GROUP BY ALL ORDER BY key"""
            )
            .to_arrow_table()
            .to_pylist()
        )
        for e in outcome:
            row = SystemRow(
                e["key"],
                int(e["n"]),
                0,
                int(e["linked"]),
                int(e["relinked"]),
                int(e["recovered"]),
                int(e["orphan"]),
            )
            rows.append(row)
            total = row.rows_read
            orphan_pct = 100.0 * (row.orphan + row.recovered) / total if total else 0.0
            checks.append(
                QualityCheck(
                    "link",
                    f"records whose parent is missing: {row.table}",
                    "completeness",
                    "completeness",
                    "passed" if orphan_pct <= ORPHAN_THRESHOLD else "failed",
                    round(orphan_pct, 4),
                    ORPHAN_THRESHOLD,
                    f"{row.orphan:,} orphans, {row.recovered:,} recovered by another path",
                )
            )
            relinked_pct = 100.0 * row.relinked / total if total else 0.0
            checks.append(
                QualityCheck(
                    "link",
                    f"records filed against another visit: {row.table}",
                    "consistency",
                    "consistency",
                    "passed" if relinked_pct <= RELINKED_THRESHOLD else "failed",
                    round(relinked_pct, 4),
                    RELINKED_THRESHOLD,
                    f"{row.relinked:,} re-linked by event time",
                )
            )
    con.close()
    return checks, rows


def kpi_checks(kpis: KpiReconciliation) -> list[QualityCheck]:
    """One consistency check per KPI source: it fails when the records no rule explains account for more of
    the reconciled value than the KPI's tolerance (percent). A KPI that cannot be computed at this site is one
    not-applicable entry with the reason."""
    checks = []
    for k in kpis.kpis.values():
        if k.status != "measured":
            checks.append(
                QualityCheck(
                    "kpi_reconciliation",
                    f"{k.name}: reconciles",
                    "consistency",
                    "consistency",
                    "not_applicable",
                    None,
                    None,
                    k.reason,
                )
            )
            continue
        for s in k.sources:
            lost = s.unexplained
            detail = (
                f"{s.value:,.2f} against {s.reference:,.2f}: {s.matched:,} records matched, "
                + "".join(f"{r.records:,} {r.rule} ({r.amount:+,.2f}); " for r in s.reasons)
                + f"{lost.records:,} unexplained ({lost.amount:+,.2f})"
                + (f": {lost.rule.removeprefix('unexplained: ')}" if lost.records else "")
            )
            checks.append(
                QualityCheck(
                    "kpi_reconciliation",
                    f"{k.name}: {s.source} ({s.counts}) reconciles",
                    "consistency",
                    "consistency",
                    "passed" if s.status == "passed" else "failed",
                    s.unexplained_pct,
                    s.tolerance_pct,
                    detail[:600],
                )
            )
    return checks


# The canonical tables whose event time marks when a record was made at the visit (hospital.yaml
# event_time): how far a system runs ahead of the patient index's last batch shows in these.
_VISIT_TIME: dict[str, str] = {
    "encounter": "start_at",
    "lab_order": "ordered_at",
    "imaging_exam": "requested_at",
}


def timeliness(workspace: Path, kpis: KpiReconciliation) -> tuple[list[QualityCheck], dict[str, object]]:
    """Sync lag (how far other systems run ahead of the period's close) and lab review turnaround."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    staging = workspace / "staging"
    latest: dict[str, dt.date] = {}
    for table, column in _VISIT_TIME.items():
        path = staging / f"{table}.parquet"
        if not path.exists():
            continue
        con.read_parquet(str(path)).create_view(f"visit_times_{table}")
        query = f'SELECT system, max("{column}") FROM visit_times_{table} GROUP BY system'
        for system, at in con.execute(query).fetchall():
            if at is not None:
                day = at.date() if isinstance(at, dt.datetime) else at
                latest[system] = max(latest.get(system, day), day)
    checks: list[QualityCheck] = []
    facts: dict[str, object] = {}
    end = kpis.period_end
    if end is None or not latest:
        checks.append(
            QualityCheck(
                "timeliness",
                "export behind the other systems (sync lag, days)",
                "timeliness",
                "timeliness",
                "not_applicable",
                None,
                SYNC_LAG_DAYS_THRESHOLD,
                kpis.reason or "no encounter, lab order or imaging exam at this site",
            )
        )
    else:
        system, last = max(latest.items(), key=lambda kv: kv[1])
        lag_days = max(0.0, (last - end).days + 1.0)
        checks.append(
            QualityCheck(
                "timeliness",
                "export behind the other systems (sync lag, days)",
                "timeliness",
                "timeliness",
                "passed" if lag_days <= SYNC_LAG_DAYS_THRESHOLD else "failed",
                lag_days,
                SYNC_LAG_DAYS_THRESHOLD,
                f"{system} runs to {last:%Y-%m-%d}; the patient index's last batch closes {end}",
            )
        )
        facts["sync lag (days)"] = lag_days
        facts["latest record per system"] = ", ".join(f"{s} {d:%Y-%m-%d}" for s, d in sorted(latest.items()))
        facts["period closes"] = str(end)
    median: float | None = None
    reviewed = 0
    results = staging / "lab_result.parquet"
    if results.exists():
        con.read_parquet(str(results)).create_view("lab_result")
        row = con.execute(
            "SELECT count(reviewed_at - resulted_at) AS n, "
            "median(epoch(reviewed_at) - epoch(resulted_at)) AS seconds FROM lab_result"
        ).fetchone()
        if row is not None and row[0]:
            reviewed, median = int(row[0]), round(float(row[1]) / 3600, 2)
    checks.append(
        QualityCheck(
            "timeliness",
            "lab report to review, median hours",
            "timeliness",
            "timeliness",
            "not_applicable"
            if median is None
            else "passed"
            if median <= REVIEW_HOURS_THRESHOLD
            else "failed",
            median,
            REVIEW_HOURS_THRESHOLD,
            f"{reviewed:,} reviewed results"
            if median is not None
            else "no lab result at this site records both its report and review time",
        )
    )
    facts["median lab review turnaround (hours)"] = median
    con.close()
    return checks, facts


def _manifest_rows(cdm: Path) -> dict[str, int]:
    """Rows per CDM table as the CDM manifest states them (a built CDM's counts, an imported one's)."""
    path = cdm / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    listed = manifest.get("tables")
    raw: dict[str, Any] = listed if isinstance(listed, dict) else {}
    return {
        k: int(v["rows_imported"] if isinstance(v, dict) else v)
        for k, v in raw.items()
        if not isinstance(v, dict) or "rows_imported" in v
    }


def accessibility(workspace: Path) -> tuple[list[QualityCheck], dict[str, object]]:
    """Each documented access path answers: the CDM's Parquet tables hold the rows its manifest states, and
    the workspace catalogue's DuckDB views (``medspace.duckdb``) can be queried and give the same counts.

    The quality stage's own views are left out: the catalogue is rebuilt after this stage writes.
    """
    cdm = workspace / "cdm"
    stated = _manifest_rows(cdm)
    files: dict[str, int | None] = {}
    for table in stated:
        path = cdm / f"{table}.parquet"
        try:
            files[table] = pq.ParquetFile(path).metadata.num_rows
        except (OSError, pq.lib.ArrowException):
            files[table] = None
    wrong_files = sorted(t for t, n in files.items() if n != stated[t])
    checks = [
        QualityCheck(
            "accessibility",
            "OMOP CDM Parquet tables answer with their manifest's row counts",
            "accessibility",
            "validity",
            "passed" if stated and not wrong_files else "failed",
            float(len(stated) - len(wrong_files)),
            float(len(stated)),
            (
                f"{len(stated) - len(wrong_files)} of {len(stated)} tables read back with the stated rows"
                + (f"; differing or unreadable: {', '.join(wrong_files[:10])}" if wrong_files else "")
            )
            if stated
            else "the CDM manifest lists no tables",
        )
    ]
    catalogue = workspace / CATALOG
    answered, broken, cdm_wrong = 0, [], []
    if catalogue.exists():
        with duckdb.connect(str(catalogue), read_only=True) as con:
            views = con.execute(
                "SELECT schema_name, view_name FROM duckdb_views() "
                "WHERE NOT internal AND schema_name <> 'quality' ORDER BY 1, 2"
            ).fetchall()
            for schema, view in views:
                name = f'"{schema}"."{view}"'
                try:
                    row = con.execute(f"SELECT count(*) FROM {name}").fetchone()
                except duckdb.Error:
                    broken.append(f"{schema}.{view}")
                    continue
                answered += 1
                if schema == "cdm" and view in stated and (row is None or row[0] != stated[view]):
                    cdm_wrong.append(f"{schema}.{view}")
            missing = sorted(t for t in stated if ("cdm", t) not in set(views))
    else:
        views, missing = [], sorted(stated)
    failing = broken + cdm_wrong + [f"cdm.{t} (no view)" for t in missing]
    checks.append(
        QualityCheck(
            "accessibility",
            "workspace catalogue (DuckDB) views answer",
            "accessibility",
            "validity",
            "passed" if catalogue.exists() and views and not failing else "failed",
            float(answered),
            float(len(views)),
            (
                f"{answered} of {len(views)} views queried"
                + (f"; failing: {', '.join(failing[:10])}" if failing else "")
            )
            if catalogue.exists()
            else f"no catalogue ({CATALOG}); re-run the last stage to rebuild it",
        )
    )
    empty = sorted(k for k, v in stated.items() if v == 0)
    facts = {
        "data model": "OMOP CDM v5.4",
        "tables": len(stated),
        "empty tables": ", ".join(empty) or "none",
        "access paths": f"cdm/*.parquet, {CATALOG} (DuckDB views)",
        "catalogue views answering": f"{answered} of {len(views)}",
    }
    return checks, facts


_EHDS_BY_KAHN: dict[str, EhdsQuality] = {
    "Conformance": "validity",
    "Completeness": "completeness",
    "Plausibility": "accuracy",
}
_GBT_BY_KAHN: dict[str, Dimension] = {
    "Conformance": "normativity",
    "Completeness": "completeness",
    "Plausibility": "accuracy",
}


def cross_system_quality_checks(results: Any) -> list[QualityCheck]:
    """The cross-system checks as label entries (their GB/T dimension is their own)."""
    checks = []
    for r in results.results:
        ehds: EhdsQuality = (
            "consistency" if r.dimension == "consistency" else _EHDS_BY_KAHN.get(r.category, "accuracy")
        )
        status: Status = "not_applicable" if r.status == "not applicable" else r.status
        checks.append(
            QualityCheck(
                "cross_system",
                r.name,
                r.dimension,
                ehds,
                status,
                None if status == "not_applicable" else round(100.0 * r.rate, 4),
                round(100.0 * r.threshold, 4),
                r.reason
                if r.status == "not applicable"
                else f"{r.fact}: {r.disagreeing:,} of {r.compared:,} disagree ({', '.join(r.systems)})",
            )
        )
    return checks


def dqd_quality_checks(dqd: dict[str, Any]) -> list[QualityCheck]:
    """DataQualityDashboard results (its JSON) as label entries, by their Kahn category."""
    checks = []
    for r in dqd.get("CheckResults", []):
        category = str(r.get("category") or "")
        status: Status = (
            "error"
            if r.get("isError")
            else "not_applicable"
            if r.get("notApplicable")
            else "failed"
            if r.get("failed")
            else "passed"
        )
        ehds: EhdsQuality = (
            "uniqueness" if r.get("checkName") == "isPrimaryKey" else _EHDS_BY_KAHN.get(category, "accuracy")
        )
        where = ".".join(str(x) for x in (r.get("cdmTableName"), r.get("cdmFieldName")) if x)
        pct = r.get("pctViolatedRows")
        threshold = r.get("thresholdValue")
        checks.append(
            QualityCheck(
                "dqd",
                f"{r.get('checkName')} {where}".strip(),
                _GBT_BY_KAHN.get(category, "accuracy"),
                ehds,
                status,
                None if pct is None else round(100.0 * float(pct), 4),
                None if threshold is None else float(threshold),
                str(r.get("notApplicableReason") or r.get("error") or r.get("checkDescription") or "")[:300],
            )
        )
    return checks


def dataset_facts(
    workspace: Path, kpis: KpiReconciliation, extra: dict[str, dict[str, object]]
) -> dict[str, dict[str, object]]:
    """The EHDS Article 78 elements that are facts: documentation, coverage, links, maturity, availability."""
    cdm = workspace / "cdm"
    person = pq.read_table(cdm / "person.parquet", columns=["gender_concept_id", "year_of_birth"]).to_pylist()
    year = kpis.period_end.year if kpis.period_end is not None else dt.date.today().year
    ages = [year - p["year_of_birth"] for p in person if p["year_of_birth"] is not None]
    bands = {"0-17": 0, "18-44": 0, "45-64": 0, "65-79": 0, "80+": 0}
    for a in ages:
        band = (
            "0-17" if a < 18 else "18-44" if a < 45 else "45-64" if a < 65 else "65-79" if a < 80 else "80+"
        )
        bands[band] += 1
    link_path = workspace / "link" / "manifest.json"
    link = json.loads(link_path.read_text(encoding="utf-8")) if link_path.exists() else {}
    site_path = workspace / "staging" / "site.json"
    site = json.loads(site_path.read_text(encoding="utf-8")) if site_path.exists() else {}
    systems = sorted(site.get("systems") or [])
    cdm_manifest = cdm / "manifest.json"
    imported = json.loads(cdm_manifest.read_text(encoding="utf-8")) if cdm_manifest.exists() else {}
    code_systems = site.get("code_systems") or {}
    return {
        "documentation": {
            "data model": "OMOP CDM v5.4 (schema generated from the official specification)",
            "site": site.get("site") or f"imported OMOP CDM ({imported.get('source', 'unknown source')})",
            "source systems": ", ".join(systems) or "none staged",
            "provenance": "each staged row keeps its system, file and row; each CDM row its source value",
            "code systems": ", ".join(sorted(code_systems)) or "as the imported CDM's vocabulary tables",
        },
        "coverage_and_representativeness": {
            "persons": len(person),
            "female share": round(
                sum(p["gender_concept_id"] == 8532 for p in person) / max(1, len(person)), 3
            ),
            "age bands": ", ".join(f"{k} {v}" for k, v in bands.items()),
            "period": f"{kpis.period_start} to {kpis.period_end} (exclusive)"
            if kpis.period_start is not None
            else "not stated: no staged encounters",
        },
        "links_to_other_datasets": {
            "systems linked": len(systems),
            "persons": link.get("persons"),
            "identity records": link.get("records"),
            "records reported as orphans": link.get("orphans"),
        },
        "maturity_of_quality_management": {
            "checks": "DQD v5.4 checks and thresholds, cross-system checks, KPI reconciliation",
            "quarantine": "rows breaking a mapping spec are kept apart with their reason, never dropped",
        },
        **extra,
    }


def coverage_facts(coverage: tuple[DomainCoverage, ...]) -> dict[str, object]:
    """The mapped share per domain, as the label states it."""
    out: dict[str, object] = {}
    for c in coverage:
        if c.status != "measured":
            out[c.domain] = f"not applicable: {c.reason}"
            continue
        top = ", ".join(f"{u.source_value} ({u.rows:,})" for u in c.top_unmapped[:5])
        out[c.domain] = (
            f"{100 * (c.row_share or 0):.1f}% of {c.rows:,} rows and {100 * (c.code_share or 0):.1f}% of "
            f"{c.codes:,} source codes mapped (concept_id != 0)"
            + (f"; most frequent unmapped: {top}" if top else "")
        )
    return out


def unit_checks(workspace: Path) -> tuple[list[QualityCheck], dict[str, object]]:
    """Lab values whose unit has no known conversion (the CDM keeps their value and source unit and flags
    them, issue 9 item 5), counted from the CDM manifest's ``measurement_units``."""
    path = workspace / "cdm" / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    units = manifest.get("measurement_units")
    if not isinstance(units, dict):
        return [
            QualityCheck(
                "cdm",
                "lab values with a unit of no known conversion",
                "normativity",
                "validity",
                "not_applicable",
                None,
                0.0,
                "the CDM manifest counts no measurement units (an imported CDM)",
            )
        ], {}
    unknown = int(units.get("unknown_unit", 0))
    total = sum(int(v) for v in units.values() if isinstance(v, int))
    check = QualityCheck(
        "cdm",
        "lab values with a unit of no known conversion",
        "normativity",
        "validity",
        "passed" if unknown == 0 else "failed",
        round(100.0 * unknown / total, 4) if total else 0.0,
        0.0,
        f"{unknown:,} of {total:,} measurement values kept in their source unit, flagged",
    )
    return [check], {f"measurement values {k.replace('_', ' ')}": v for k, v in units.items()}


def _hospital_inputs(ws: Workspace) -> tuple[str, str]:
    """Why the cross-system checks and the KPIs cannot run on this workspace ('' when they can)."""
    if not (ws.stage("staging") / "site.json").exists():
        reason = (
            "the workspace holds no staged hospital data (staging/site.json), as after `cdm --from-omop`: "
            "there are no source systems to compare"
        )
        return reason, reason
    if not (ws.stage("link") / "events.parquet").exists():
        return "the workspace has no link output (link/events.parquet); run `medspace link`", ""
    return "", ""


#: The units of `run_quality` after the checks and KPIs: the mapped share; writing the DQD, cross-system and
#: KPI results; the workspace-level checks (staging, timeliness, accessibility, units); the label and report.
_CLOSING_STEPS = 4


def run_quality(
    workspace: Path,
    *,
    overrides: Path | None = None,
    engine: EngineName = "duckdb",
    progress: ProgressCallback | None = None,
) -> QualityRun:
    """Check a workspace's data, reconcile its KPIs, write its label and report to ``<workspace>/quality/``.

    A workspace built by ``cdm --from-omop`` (a CDM and no staged hospital data) gets the DQD checks and the
    mapped share; its cross-system checks and KPIs are reported as not applicable with the reason.

    Args:
        workspace: a workspace with ``cdm/`` and, for a hospital, ``staging/`` and ``link/``.
        overrides: a YAML file adding or overriding DQD checks and thresholds, and the KPI tolerance.
        engine: the engine the checks run on.
        progress: called as ``progress(done, total)``: one unit per DQD check (as its table's scan
            returns), per cross-system check and per group of KPIs reconciled, then one per closing step
            (mapped share, results written, workspace checks, label and report). The total is fixed before
            the first call; a part that does not apply (no staged data) counts as done at once.

    Returns:
        The label, the reconciled KPIs and every check, with the output folder.

    Raises:
        InputError: if the workspace has no CDM.
        ConfigError: for an engine the checks do not run on (DuckDB only).
    """
    from ._cross_system import (
        CROSS_SYSTEM_STEPS,
        cross_system_checks,
        not_applicable_results,
        write_cross_system,
    )
    from ._dqd_results import write_dqd_json
    from ._dqd_run import dqd_checks, run_checks

    began = time.perf_counter()
    ws = Workspace(Path(workspace))
    if not (ws.stage("cdm") / "manifest.json").exists():
        raise InputError(
            "the workspace has no cdm output; run `medspace run` or `medspace cdm --from-omop` first",
            file=str(ws.stage("cdm")),
        )
    if engine != "duckdb":
        raise ConfigError(f"the quality checks run on DuckDB only, not {engine!r}; use engine='duckdb'")
    lineage = stage_lineage(
        ws.root, "quality", inputs=("cdm",), optional=("link", "staging"), specs={"dqd_overrides": overrides}
    )
    n_dqd = len(dqd_checks(overrides))
    steps = StageProgress(n_dqd + CROSS_SYSTEM_STEPS + KPI_STEPS + _CLOSING_STEPS, progress)
    with steps.part(n_dqd) as report:
        dqd = run_checks(ws.root, overrides=overrides, engine=engine, progress=report)
    no_cross, no_kpis = _hospital_inputs(ws)
    with steps.part(CROSS_SYSTEM_STEPS) as report:
        cross = (
            not_applicable_results(no_cross) if no_cross else cross_system_checks(ws.root, progress=report)
        )
    tolerance = load_overrides(overrides).kpi_tolerance if overrides is not None else KpiTolerance()
    with steps.part(KPI_STEPS) as report:
        kpis = (
            not_applicable_kpis(no_kpis)
            if no_kpis
            else reconcile_kpis(ws.root, engine=engine, tolerance=tolerance, progress=report)
        )
    coverage = mapping_coverage(ws.stage("cdm"))
    steps.advance()
    with replace_folder(ws.stage("quality"), lineage=lineage) as out:
        write_dqd_json(dqd, out / "dqd_results.json")
        write_cross_system(cross, out)
        (out / "kpis.json").write_text(kpis.to_json(), encoding="utf-8")
        pq.write_table(kpis.records, out / "kpi_records.parquet")
        (out / "mapping_coverage.json").write_text(
            json.dumps({"domains": [asdict(c) for c in coverage]}, indent=2, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
        steps.advance()
        dqd_json = json.loads((out / "dqd_results.json").read_text(encoding="utf-8"))
        staged, rows = staging_checks(ws.root) if not no_kpis else ([], [])
        late, late_facts = timeliness(ws.root, kpis)
        reachable, reach_facts = accessibility(ws.root)
        unit_entries, unit_facts = unit_checks(ws.root)
        steps.advance()
        checks = [
            *unit_entries,
            *dqd_quality_checks(dqd_json),
            *cross_system_quality_checks(cross),
            *staged,
            *kpi_checks(kpis),
            *late,
            *reachable,
        ]
        facts = dataset_facts(
            ws.root,
            kpis,
            {
                "time_from_collection_to_availability": late_facts,
                "accessibility": reach_facts,
                "vocabulary_mapping": {**coverage_facts(coverage), **unit_facts},
            },
        )
        label = quality_label(str(ws.root.name), checks, facts)
        (out / "label.json").write_text(
            json.dumps(asdict(label), indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
        )
        (out / "report.html").write_text(
            render_report(label, kpis, checks, rows, medspace.__version__, coverage), encoding="utf-8"
        )
    refresh_catalog(ws.root)
    steps.advance()
    return QualityRun(ws.stage("quality"), label, kpis, checks, time.perf_counter() - began, coverage)
