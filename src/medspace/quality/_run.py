"""The quality stage over a workspace: every check, the KPI reconciliation, the label and the report.

Writes ``<workspace>/quality/``: ``dqd_results.json`` (DataQualityDashboard's format), ``cross_system.json``
and ``cross_system_details.parquet``, ``kpis.json``, ``label.json`` and ``report.html``. Tests re-check each
figure in them through an independent route.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import medspace
from medspace.core import EngineName, InputError, Workspace, refresh_catalog, replace_folder

from ._kpis import KpiReconciliation, reconcile_kpis
from ._label import Dimension, EhdsQuality, QualityCheck, QualityLabel, Status, quality_label
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


def staging_checks(workspace: Path) -> tuple[list[QualityCheck], list[SystemRow]]:
    """Quarantine and duplicate rates per staged table, and each table's link outcome."""
    manifest = json.loads((workspace / "staging" / "manifest.json").read_text(encoding="utf-8"))
    link_manifest = workspace / "link" / "manifest.json"
    linked: dict[str, dict[str, int]] = (
        json.loads(link_manifest.read_text(encoding="utf-8"))["events"] if link_manifest.exists() else {}
    )
    duplicates: dict[str, int] = {}
    for f in manifest["files"]:
        key = f"{f['system']}/{f['table']}"
        duplicates[key] = duplicates.get(key, 0) + int(f["rules"].get("duplicate_key", 0))
    checks: list[QualityCheck] = []
    rows: list[SystemRow] = []
    for t in manifest["tables"]:
        key = f"{t['system']}/{t['table']}"
        read, bad = int(t["rows_read"]), int(t["quarantined"])
        other = bad - duplicates.get(key, 0)
        pct = 100.0 * other / read if read else 0.0
        dup_pct = 100.0 * duplicates.get(key, 0) / read if read else 0.0
        status: Any = "not_applicable" if read == 0 else "passed" if pct <= QUARANTINE_THRESHOLD else "failed"
        checks.append(
            QualityCheck(
                "staging",
                f"rows breaking the mapping spec: {key}",
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
                f"{duplicates.get(key, 0):,} exact re-sent rows",
            )
        )
        events = linked.get(key, {})
        total = sum(events.values())
        row = SystemRow(
            key,
            read,
            bad,
            events.get("linked", 0),
            events.get("relinked", 0),
            events.get("recovered", 0),
            events.get("orphan", 0),
        )
        rows.append(row)
        if total:
            orphan_pct = 100.0 * (row.orphan + row.recovered) / total
            checks.append(
                QualityCheck(
                    "link",
                    f"records whose parent is missing: {key}",
                    "completeness",
                    "completeness",
                    "passed" if orphan_pct <= ORPHAN_THRESHOLD else "failed",
                    round(orphan_pct, 4),
                    ORPHAN_THRESHOLD,
                    f"{row.orphan:,} orphans, {row.recovered:,} recovered by another path",
                )
            )
            relinked_pct = 100.0 * row.relinked / total
            checks.append(
                QualityCheck(
                    "link",
                    f"records filed against another visit: {key}",
                    "consistency",
                    "consistency",
                    "passed" if relinked_pct <= RELINKED_THRESHOLD else "failed",
                    round(relinked_pct, 4),
                    RELINKED_THRESHOLD,
                    f"{row.relinked:,} re-linked by event time",
                )
            )
    return checks, rows


def kpi_checks(kpis: KpiReconciliation) -> list[QualityCheck]:
    """Every KPI source whose difference from the reconciled value is fully explained passes."""
    checks = []
    for k in kpis.kpis.values():
        for s in k.sources:
            checks.append(
                QualityCheck(
                    "kpi_reconciliation",
                    f"{k.name}: {s.source} reconciles",
                    "consistency",
                    "consistency",
                    "passed" if s.explained else "failed",
                    s.difference,
                    None,
                    "; ".join(f"{reason} {n:+,.2f}" for reason, n in s.breakdown.items() if n)
                    or "no difference",
                )
            )
    return checks


def timeliness(workspace: Path, kpis: KpiReconciliation) -> tuple[list[QualityCheck], dict[str, object]]:
    """Sync lag (how far other systems run ahead of HIS's last batch) and lab review turnaround."""
    staging = workspace / "staging"
    requests = pq.read_table(staging / "lis" / "requests.parquet", columns=["ordered_at"]).column(
        "ordered_at"
    )
    results = pq.read_table(staging / "lis" / "results.parquet", columns=["reported_at", "reviewed_at"])
    latest = pc.max(requests).as_py()
    his_end = kpis.period_end
    lag_days = max(0.0, (latest.date() - his_end).days + 1.0)
    # turnaround in Arrow, not Python: LIS results run to millions of rows
    elapsed = pc.cast(pc.subtract(results.column("reviewed_at"), results.column("reported_at")), pa.int64())
    reviewed = int(pc.count(elapsed).as_py())
    # the difference counts in the timestamps' own unit (staging writes microseconds)
    per_second = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[results.schema.field("reported_at").type.unit]
    median = round(float(pc.quantile(elapsed, q=0.5)[0].as_py()) / per_second / 3600, 2) if reviewed else None
    checks = [
        QualityCheck(
            "timeliness",
            "HIS export behind the other systems (sync lag, days)",
            "timeliness",
            "timeliness",
            "passed" if lag_days <= SYNC_LAG_DAYS_THRESHOLD else "failed",
            lag_days,
            SYNC_LAG_DAYS_THRESHOLD,
            f"LIS runs to {latest:%Y-%m-%d}; HIS's last batch closes {his_end}",
        ),
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
            f"{reviewed:,} reviewed results",
        ),
    ]
    facts = {
        "sync lag (days)": lag_days,
        "latest record in LIS": f"{latest:%Y-%m-%d}",
        "HIS period closes": str(his_end),
        "median lab review turnaround (hours)": median,
    }
    return checks, facts


def accessibility(workspace: Path) -> tuple[list[QualityCheck], dict[str, object]]:
    """The harmonised data is there, in the standard model, and queryable."""
    cdm = workspace / "cdm"
    manifest = (
        json.loads((cdm / "manifest.json").read_text(encoding="utf-8"))
        if (cdm / "manifest.json").exists()
        else {}
    )
    tables = (
        {k: int(v) for k, v in manifest.get("tables", {}).items()}
        if isinstance(manifest.get("tables"), dict)
        else {}
    )
    empty = sorted(k for k, v in tables.items() if v == 0)
    checks = [
        QualityCheck(
            "accessibility",
            "OMOP CDM tables present",
            "accessibility",
            "validity",
            "passed" if tables else "failed",
            float(len(tables)),
            None,
            f"{len(tables)} tables in cdm/",
        ),
        QualityCheck(
            "accessibility",
            "workspace catalogue (DuckDB) present",
            "accessibility",
            "validity",
            "passed" if (workspace / "medspace.duckdb").exists() else "failed",
        ),
    ]
    facts = {"data model": "OMOP CDM v5.4", "tables": len(tables), "empty tables": ", ".join(empty) or "none"}
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
                round(100.0 * r.rate, 4),
                round(100.0 * r.threshold, 4),
                f"{r.fact}: {r.disagreeing:,} of {r.compared:,} disagree ({', '.join(r.systems)})",
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
    year = kpis.period_end.year
    ages = [year - p["year_of_birth"] for p in person if p["year_of_birth"] is not None]
    bands = {"0-17": 0, "18-44": 0, "45-64": 0, "65-79": 0, "80+": 0}
    for a in ages:
        band = (
            "0-17" if a < 18 else "18-44" if a < 45 else "45-64" if a < 65 else "65-79" if a < 80 else "80+"
        )
        bands[band] += 1
    link = json.loads((workspace / "link" / "manifest.json").read_text(encoding="utf-8"))
    staging = json.loads((workspace / "staging" / "manifest.json").read_text(encoding="utf-8"))
    systems = sorted({t["system"] for t in staging["tables"]})
    return {
        "documentation": {
            "data model": "OMOP CDM v5.4 (schema generated from the official specification)",
            "source mapping specs": ", ".join(systems),
            "provenance": "each staged row keeps its system, file and row; each CDM row its source value",
            "standards": "ICD-10 (clinical 2.0, insurance 2.0), ICD-9-CM-3, LOINC, UCUM, GB/T 2261.1",
        },
        "coverage_and_representativeness": {
            "persons": len(person),
            "female share": round(
                sum(p["gender_concept_id"] == 8532 for p in person) / max(1, len(person)), 3
            ),
            "age bands": ", ".join(f"{k} {v}" for k, v in bands.items()),
            "period": f"{kpis.period_start} to {kpis.period_end} (exclusive)",
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


def run_quality(
    workspace: Path, *, overrides: Path | None = None, engine: EngineName = "duckdb"
) -> QualityRun:
    """Check a workspace's data, reconcile its KPIs, write its label and report to ``<workspace>/quality/``.

    Args:
        workspace: a workspace with ``staging/``, ``link/`` and ``cdm/`` (``medspace run``).
        overrides: a YAML file adding or overriding DQD checks and thresholds.
        engine: the engine the checks run on.

    Returns:
        The label, the reconciled KPIs and every check, with the output folder.
    """
    from ._cross_system import cross_system_checks, write_cross_system
    from ._dqd_results import write_dqd_json
    from ._dqd_run import run_checks

    began = time.perf_counter()
    ws = Workspace(Path(workspace))
    for stage in ("staging", "link", "cdm"):
        if not (ws.stage(stage) / "manifest.json").exists():
            raise InputError(
                f"the workspace has no {stage} output; run `medspace run` first", file=str(ws.stage(stage))
            )
    dqd = run_checks(ws.root, overrides=overrides, engine=engine)
    cross = cross_system_checks(ws.root)
    kpis = reconcile_kpis(ws.root, engine=engine)
    with replace_folder(ws.stage("quality")) as out:
        write_dqd_json(dqd, out / "dqd_results.json")
        write_cross_system(cross, out)
        (out / "kpis.json").write_text(kpis.to_json(), encoding="utf-8")
        dqd_json = json.loads((out / "dqd_results.json").read_text(encoding="utf-8"))
        staged, rows = staging_checks(ws.root)
        late, late_facts = timeliness(ws.root, kpis)
        reachable, reach_facts = accessibility(ws.root)
        checks = [
            *dqd_quality_checks(dqd_json),
            *cross_system_quality_checks(cross),
            *staged,
            *kpi_checks(kpis),
            *late,
            *reachable,
        ]
        facts = dataset_facts(
            ws.root, kpis, {"time_from_collection_to_availability": late_facts, "accessibility": reach_facts}
        )
        label = quality_label(str(ws.root.name), checks, facts)
        (out / "label.json").write_text(
            json.dumps(asdict(label), indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
        )
        (out / "report.html").write_text(
            render_report(label, kpis, checks, rows, medspace.__version__), encoding="utf-8"
        )
    refresh_catalog(ws.root)
    return QualityRun(ws.stage("quality"), label, kpis, checks, time.perf_counter() - began)
