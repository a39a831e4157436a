"""KPI reconciliation: the national performance KPIs (domain.md §2) counted from every system that holds the
facts they need, one reconciled value by the official definition, and each source's difference accounted for
record by record (``_kpi_ledger``).

The same fact comes out different from different systems: a registration system counts refunds,
cancellations, emergencies and check-ups (``encounter.status``, ``encounter_type``); a system that
records a recalled discharge as a second admission counts the stay twice (``encounter.recalled``); a
theatre system counts sessions and procedures (``procedure.session_no``, role ``theatre``), the KPI counts
operated stays (role ``front_sheet``); a stay one export lost is still in another. Systems are data:
every system with encounter, procedure, charge or settlement rows is a source, and nothing here names one.

Every record behind a source's difference is either explained by a named record-level rule or listed as
**unexplained**; a source whose unexplained records exceed the configured tolerance (``kpi_tolerance``, 0.5 %
of the reconciled value by default) fails its consistency check. The KPIs read the canonical hospital model
as staging wrote it and the link stage's visits, the same tables the CDM is built from.

The reporting period runs from the first registration day of the site's patient index to the day after the
last one: exports come in batches, and the period closes where the patient index's last batch does.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from medspace.core import ConfigError, EngineName, InputError, ProgressCallback, StageProgress

from . import _kpi_ledger as ledger
from ._cross_system_duckdb import COST_TOLERANCE, DuckDBChecks
from ._kpi_definitions import KPI_NAMES, KpiTolerance
from ._kpi_ledger import RECORDS_SCHEMA, Reason, SourceCount

__all__ = ["KPI_NAMES", "Kpi", "KpiReconciliation", "Reason", "SourceCount", "reconcile_kpis"]

REGISTRATION_TYPES = ("outpatient", "emergency", "checkup")
STAY_TYPES = ("inpatient", "day_surgery")

#: The units `reconcile_kpis` reports progress in: the period and the stays; outpatient visits; discharges;
#: operations; costs and length of stay; the ledger of every record.
KPI_STEPS = 6


@dataclass(frozen=True)
class Kpi:
    name: str
    definition: str
    value: float | None
    numerator: float | None
    denominator: float | None
    explanation: str
    sources: list[SourceCount] = field(default_factory=list)
    status: str = "measured"  # or "not_applicable" (reason says which canonical table is empty)
    reason: str = ""


@dataclass(frozen=True)
class KpiReconciliation:
    period_start: dt.date | None
    period_end: dt.date | None  # exclusive
    kpis: dict[str, Kpi]
    reason: str = ""  # why nothing could be reconciled (a workspace without staged data)
    # every explained and unexplained record of every source's ledger (kpi_records.parquet)
    records: pa.Table = field(default_factory=RECORDS_SCHEMA.empty_table, repr=False, compare=False)

    def to_json(self) -> str:
        data = {
            "period": {
                "start": None if self.period_start is None else self.period_start.isoformat(),
                "end_exclusive": None if self.period_end is None else self.period_end.isoformat(),
            },
            "reason": self.reason,
            "kpis": {name: asdict(k) for name, k in self.kpis.items()},
        }
        return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"


def not_applicable_kpis(reason: str) -> KpiReconciliation:
    """Every KPI as not applicable, with one reason (a workspace with no staged hospital data)."""
    kpis = {
        name: Kpi(name, definition, None, None, None, "", [], "not_applicable", reason)
        for name, definition in KPI_NAMES.items()
    }
    return KpiReconciliation(None, None, kpis, reason)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return round(a / b, 6) if b else 0.0


def reconcile_kpis(
    workspace: Path,
    *,
    engine: EngineName = "duckdb",
    period: tuple[dt.date, dt.date] | None = None,
    tolerance: KpiTolerance | None = None,
    progress: ProgressCallback | None = None,
) -> KpiReconciliation:
    """Reconcile the hospital KPIs of a staged workspace.

    Args:
        workspace: a workspace with ``staging/`` (``medspace ingest``); ``link/`` is used when present.
        engine: the engine the counts run on (DuckDB only).
        period: (start, end exclusive); by default the span of the patient index's registrations.
        tolerance: how much of each KPI a source's unexplained records may account for (percent of the
            reconciled value); by default 0.5 %.
        progress: called as ``progress(done, KPI_STEPS)`` after each group of KPIs is reconciled.

    Returns:
        Every KPI with its reconciled value and, per source, its ledger: matched records, each rule with the
        records it explains, the unexplained records, and whether they stay within the tolerance. A KPI whose
        canonical tables are empty at this site is not applicable, with the reason.

    Raises:
        InputError: if the workspace has no staging output.
        ConfigError: for an engine other than DuckDB.
    """
    if engine != "duckdb":
        raise ConfigError(f"the KPI reconciliation runs on DuckDB only, not {engine!r}; use engine='duckdb'")
    staging = Path(workspace) / "staging"
    if not (staging / "site.json").exists():
        raise InputError(
            "the workspace has no staging output; run `medspace ingest` first", file=str(staging)
        )
    q = DuckDBChecks(Path(workspace), link=False)
    steps = StageProgress(KPI_STEPS, progress)
    if period is None:
        period = _period(q)
        if period is None:
            steps.advance(KPI_STEPS)  # nothing to reconcile: every step is done
            return not_applicable_kpis("the canonical table encounter is empty at this site")
    start, end = period
    params = {"start": dt.datetime.combine(start, dt.time()), "end": dt.datetime.combine(end, dt.time())}
    tol = tolerance or KpiTolerance()
    ledger.create_ledger(q)
    _system_last(q)
    _stays(q, params)
    steps.advance()
    kpis: dict[str, Kpi] = {}
    outpatient, revenue = _outpatient(q, params, tol)
    steps.advance()
    discharges = _discharges(q, tol)
    steps.advance()
    kpis["outpatient_visits"] = outpatient
    kpis["discharges"] = discharges
    kpis["outpatient_visits_per_discharge"] = _derived(
        "outpatient_visits_per_discharge",
        outpatient.value,
        discharges.value,
        "reconciled outpatient visits over reconciled discharges",
        outpatient,
        discharges,
    )
    kpis.update(_operations(q, discharges, tol))
    steps.advance()
    kpis.update(_costs_and_stay(q, discharges, tol))
    steps.advance()
    kpis["cost_per_outpatient_visit"] = _derived(
        "cost_per_outpatient_visit",
        revenue,
        outpatient.value,
        "net outpatient charges of the period's outpatient visits (refunds net to zero), lost registrations "
        "included through their charges",
        outpatient,
        Kpi(
            "",
            "",
            revenue,
            None,
            None,
            "",
            [],
            "measured" if revenue is not None else "not_applicable",
            "the canonical table charge is empty at this site",
        ),
    )
    records = ledger.ledger_table(q)
    q.con.close()
    steps.advance()
    return KpiReconciliation(start, end, kpis, records=records)


def _derived(name: str, a: float | None, b: float | None, explanation: str, *parts: Kpi) -> Kpi:
    missing = [p for p in parts if p.status != "measured"]
    if missing:
        return Kpi(name, KPI_NAMES[name], None, a, b, explanation, [], "not_applicable", missing[0].reason)
    return Kpi(name, KPI_NAMES[name], _ratio(a, b), a, b, explanation)


def _not_applicable(name: str, reason: str) -> Kpi:
    return Kpi(name, KPI_NAMES[name], None, None, None, "", [], "not_applicable", reason)


def _period(q: DuckDBChecks) -> tuple[dt.date, dt.date] | None:
    if not q.rows_in.get("encounter"):
        return None
    index = q.patient_index
    row = q.rows(
        """
        SELECT min(start_at) FILTER (WHERE system = $index) AS first_index,
               max(start_at) FILTER (WHERE system = $index) AS last_index,
               min(start_at) AS first_any, max(start_at) AS last_any
        FROM encounter WHERE list_contains($types, encounter_type)
        """,
        {"index": index or "", "types": list(REGISTRATION_TYPES)},
    )[0]
    first, last = row["first_index"] or row["first_any"], row["last_index"] or row["last_any"]
    if first is None:
        row = q.rows("SELECT min(start_at) AS first, max(start_at) AS last FROM encounter")[0]
        first, last = row["first"], row["last"]
    if first is None:
        return None
    return first.date(), last.date() + dt.timedelta(days=1)


# A stay: its inpatient number and admission count when the row carries both (a recalled discharge's second
# row keeps them), else the stay of its visit serial, else the stay of the visit the link stage placed it in.
def _stay_of(alias: str, table: str) -> tuple[str, str]:
    """(expression, joins) giving a row of ``table`` its stay key."""
    expr = (
        f"coalesce({alias}.inpatient_no || '-' || CAST({alias}.admission_count AS VARCHAR), "
        "by_serial.stay, by_visit.stay)"
    )
    joins = (
        f"LEFT JOIN stay_by_serial by_serial ON by_serial.visit_serial = {alias}.visit_serial "
        f"LEFT JOIN ev ON ev.\"table\" = '{table}' AND ev.system = {alias}.system "
        f"AND ev.record_key = {alias}.record_key "
        "LEFT JOIN stay_by_visit by_visit ON by_visit.visit_id = ev.visit_id"
    )
    return expr, joins


# The event times that date a system's records: its export ends at the latest of them.
_EVENT_TIMES = {
    "encounter": ("start_at", "end_at"),
    "procedure": ("performed_at",),
    "charge": ("charged_at",),
    "settlement": ("settled_at", "discharged_at"),
}


def _system_last(q: DuckDBChecks) -> None:
    """Temp table ``system_last``: each system's last exported record (a record of the KPI after it is one
    the system's export cannot hold yet)."""
    parts = [
        f'SELECT system, max({column}) AS last_at FROM "{table}" GROUP BY system'
        for table, columns in _EVENT_TIMES.items()
        if q.rows_in.get(table)
        for column in columns
    ]
    q.execute(
        "CREATE OR REPLACE TEMP TABLE system_last AS SELECT system, max(last_at) AS last_at FROM ("
        + (" UNION ALL ".join(parts) or "SELECT NULL::VARCHAR AS system, NULL::TIMESTAMP AS last_at")
        + ") GROUP BY system"
    )


def _stays(q: DuckDBChecks, params: dict[str, Any]) -> None:
    """Temp tables: every stay row with its key, each stay's reconciled facts, and the period's stays."""
    types = {"types": list(STAY_TYPES)}
    q.execute(
        """CREATE OR REPLACE TEMP TABLE stay_rows AS
        SELECT e.*, coalesce(e.inpatient_no || '-' || CAST(e.admission_count AS VARCHAR), ev.visit_id,
                             e.visit_serial, e.system || ':' || e.record_key) AS stay,
               ev.visit_id AS linked_visit, p.rank
        FROM encounter e
        LEFT JOIN ev ON ev."table" = 'encounter' AND ev.system = e.system AND ev.record_key = e.record_key
        JOIN precedence p ON p.system = e.system
        WHERE list_contains($types, e.encounter_type) AND e.parent_visit_serial IS NULL""",
        types,
    )
    q.execute(
        "CREATE OR REPLACE TEMP TABLE stay_by_serial AS SELECT visit_serial, min(stay) AS stay "
        "FROM stay_rows WHERE visit_serial IS NOT NULL GROUP BY visit_serial"
    )
    q.execute(
        "CREATE OR REPLACE TEMP TABLE stay_by_visit AS SELECT linked_visit AS visit_id, min(stay) AS stay "
        "FROM stay_rows WHERE linked_visit IS NOT NULL GROUP BY linked_visit"
    )
    # The stay's facts from the first system in the site's precedence that states them.
    q.execute(
        """CREATE OR REPLACE TEMP TABLE stay_facts AS
        SELECT stay,
               first(end_at ORDER BY rank, end_at DESC) FILTER (WHERE end_at IS NOT NULL) AS end_at,
               first(total_cost ORDER BY rank) FILTER (WHERE total_cost IS NOT NULL) AS total_cost,
               first(length_of_stay_days ORDER BY rank) FILTER (WHERE length_of_stay_days IS NOT NULL) AS los,
               first(bed_days ORDER BY rank) FILTER (WHERE bed_days IS NOT NULL) AS bed_days,
               first(payment_method ORDER BY rank) FILTER (WHERE payment_method IS NOT NULL) AS payment_method
        FROM stay_rows GROUP BY stay"""
    )
    q.execute(
        "CREATE OR REPLACE TEMP TABLE period_stays AS SELECT * FROM stay_facts "
        "WHERE end_at >= $start AND end_at < $end",
        params,
    )


def _outpatient(q: DuckDBChecks, params: dict[str, Any], tol: KpiTolerance) -> tuple[Kpi, float | None]:
    if not q.rows_in.get("encounter"):
        return _not_applicable(
            "outpatient_visits", "the canonical table encounter is empty at this site"
        ), None
    p = {**params, "types": list(REGISTRATION_TYPES)}
    q.execute(
        """CREATE OR REPLACE TEMP TABLE registration_rows AS
        SELECT e.system, e.record_key, e.start_at, e.encounter_type, coalesce(e.status, 'done') AS status,
               coalesce(e.visit_serial, ev.visit_id, e.system || ':' || e.record_key) AS visit
        FROM encounter e
        LEFT JOIN ev ON ev."table" = 'encounter' AND ev.system = e.system AND ev.record_key = e.record_key
        WHERE list_contains($types, e.encounter_type) AND e.start_at >= $start AND e.start_at < $end""",
        p,
    )
    if not q.scalar("SELECT count(*) FROM registration_rows"):
        return _not_applicable(
            "outpatient_visits", "no outpatient, emergency or check-up encounter in the period"
        ), None
    # A registration an export lost still has its outpatient charges. Its visit type is told by a charge
    # category that, among the visits we know, only one visit type has (a registration fee of outpatient
    # visits, another of emergency ones); a lost visit no category tells is counted as a reason, not a visit.
    q.execute(
        """CREATE OR REPLACE TEMP TABLE lost_visits AS
        WITH known AS (SELECT DISTINCT visit_serial FROM encounter WHERE visit_serial IS NOT NULL),
        outpatient_charges AS (
            SELECT visit_serial, category, amount, charged_at FROM charge
            WHERE setting = 'outpatient' AND visit_serial IS NOT NULL
        ), category_types AS (
            SELECT c.category, min(e.encounter_type) AS encounter_type
            FROM outpatient_charges c JOIN encounter e ON e.visit_serial = c.visit_serial
            WHERE c.category IS NOT NULL GROUP BY c.category HAVING count(DISTINCT e.encounter_type) = 1
        ), lost AS (
            SELECT c.visit_serial, sum(c.amount) AS net, min(c.charged_at) AS first_at,
                   list(DISTINCT t.encounter_type) FILTER (WHERE t.encounter_type IS NOT NULL) AS types
            FROM outpatient_charges c LEFT JOIN known k ON k.visit_serial = c.visit_serial
            LEFT JOIN category_types t ON t.category = c.category
            WHERE k.visit_serial IS NULL GROUP BY c.visit_serial
        )
        SELECT visit_serial, CASE WHEN len(types) = 1 THEN types[1] END AS encounter_type, first_at FROM lost
        WHERE net > 0 AND first_at >= $start AND first_at < $end"""
        if q.rows_in.get("charge")
        else "CREATE OR REPLACE TEMP TABLE lost_visits (visit_serial VARCHAR, encounter_type VARCHAR, "
        "first_at TIMESTAMP)",
        params if q.rows_in.get("charge") else None,
    )
    recovered = q.scalar("SELECT count(*) FROM lost_visits WHERE encounter_type = 'outpatient'")
    untold = q.scalar("SELECT count(*) FROM lost_visits WHERE encounter_type IS NULL")
    # The reference: every completed outpatient registration's visit and every lost one its charges tell,
    # each with when it happened (the registration, else its first charge).
    q.execute(
        """CREATE OR REPLACE TEMP TABLE outpatient_reference AS
        SELECT visit, min(start_at) AS first_at FROM registration_rows
        WHERE encounter_type = 'outpatient' AND status = 'done' GROUP BY visit
        UNION ALL SELECT visit_serial, first_at FROM lost_visits
        WHERE encounter_type = 'outpatient' AND visit_serial NOT IN (SELECT visit FROM registration_rows)"""
    )
    reconciled = q.scalar("SELECT count(*) FROM outpatient_reference")
    sources = []
    counts = "registrations (outpatient, emergency, check-up) in the period"
    for system, rows in q.con.execute(
        "SELECT system, count(*) FROM registration_rows GROUP BY system ORDER BY system"
    ).fetchall():
        source = f"{system}/encounter"
        ledger.outpatient_ledger(q, system, source, counts)
        sources.append(
            ledger.summarise(
                q,
                "outpatient_visits",
                source,
                counts,
                float(rows),
                reconciled,
                tol.for_kpi("outpatient_visits"),
            )
        )
    revenue: float | None = None
    if q.rows_in.get("charge"):
        # every outpatient-type registration's visit (refunded ones net to zero) and the lost ones
        revenue = round(
            float(
                q.rows(
                    """WITH serials AS (
                        SELECT DISTINCT visit FROM registration_rows WHERE encounter_type = 'outpatient'
                        UNION SELECT visit FROM outpatient_reference)
                    SELECT coalesce(sum(c.amount), 0) AS revenue FROM charge c JOIN serials s
                    ON s.visit = c.visit_serial WHERE c.setting = 'outpatient'"""
                )[0]["revenue"]
            ),
            2,
        )
    completed = q.scalar(
        "SELECT count(DISTINCT visit) FROM registration_rows "
        "WHERE encounter_type = 'outpatient' AND status = 'done'"
    )
    explanation = (
        f"{completed} completed outpatient registrations plus {recovered} lost registrations evidenced by "
        f"their outpatient charges"
        + (f"; {untold} more lost visits whose type no charge tells are not counted" if untold else "")
    )
    kpi = Kpi(
        "outpatient_visits",
        KPI_NAMES["outpatient_visits"],
        reconciled,
        reconciled,
        None,
        explanation,
        sources,
    )
    return kpi, revenue


def _discharges(q: DuckDBChecks, tol: KpiTolerance) -> Kpi:
    reconciled = q.scalar("SELECT count(*) FROM period_stays")
    if not q.scalar("SELECT count(*) FROM stay_rows"):
        return _not_applicable("discharges", "no inpatient or day-surgery encounter at this site")
    sources = []
    counts = "stay rows of the period's stays"
    for system, rows in q.con.execute(
        "SELECT r.system, count(*) FROM stay_rows r JOIN period_stays s USING (stay) GROUP BY ALL ORDER BY 1"
    ).fetchall():
        source = f"{system}/encounter"
        ledger.discharge_ledger(q, system, source, counts)
        sources.append(
            ledger.summarise(
                q, "discharges", source, counts, float(rows), reconciled, tol.for_kpi("discharges")
            )
        )
    return Kpi(
        "discharges",
        KPI_NAMES["discharges"],
        reconciled,
        reconciled,
        None,
        "one stay per inpatient number and admission count (or visit), discharged in the period by the first "
        "system in the site's precedence that records its discharge; a recalled discharge is one stay",
        sources,
    )


def _operations(q: DuckDBChecks, discharges: Kpi, tol: KpiTolerance) -> dict[str, Kpi]:
    names = (
        "operated_discharges",
        "operated_discharge_share",
        "operations",
        "minimally_invasive_share",
        "grade4_share",
        "day_surgery_share",
    )
    if not q.rows_in.get("procedure"):
        return {n: _not_applicable(n, "the canonical table procedure is empty at this site") for n in names}
    if discharges.status != "measured":
        return {n: _not_applicable(n, discharges.reason) for n in names}
    expr, joins = _stay_of("x", "procedure")
    q.execute(
        f"""CREATE OR REPLACE TEMP TABLE period_procedures AS
        SELECT x.*, {expr} AS stay, p.rank AS system_rank FROM "procedure" x {joins}
        JOIN precedence p ON p.system = x.system
        WHERE {expr} IN (SELECT stay FROM period_stays)"""
    )
    roles = {r["role"] for r in q.rows("SELECT DISTINCT role FROM period_procedures")}
    # The KPI counts stays with a coded procedure on the front sheet; a site without front-sheet rows
    # counts stays with any procedure record.
    coded_role = "front_sheet" if "front_sheet" in roles else None
    coded_filter = "role = 'front_sheet'" if coded_role else "true"
    q.execute(
        "CREATE OR REPLACE TEMP TABLE operated AS SELECT DISTINCT stay FROM period_procedures "
        f"WHERE {coded_filter}"
    )
    operated = q.scalar("SELECT count(*) FROM operated")
    # Several systems may record the same procedures (a platform copies the hospital's): each stay's count
    # comes from the first system in the site's precedence that codes it, as a stay's facts do.
    q.execute(
        f"""CREATE OR REPLACE TEMP TABLE reference_procedures AS
        SELECT stay, record_key, interventional,
               row_number() OVER (PARTITION BY stay ORDER BY "rank", record_key) AS n
        FROM (SELECT *, min(system_rank) OVER (PARTITION BY stay) AS first_rank FROM period_procedures
              WHERE {coded_filter}) WHERE system_rank = first_rank"""
    )
    coded_count = q.scalar("SELECT count(*) FROM reference_procedures")
    n_discharges = float(discharges.value or 0)
    operated_tol, operations_tol = tol.for_kpi("operated_discharges"), tol.for_kpi("operations")
    coded_sources: list[SourceCount] = []
    coded_counts = "coded procedures of the period's stays"
    for system, rows in q.con.execute(
        f"SELECT system, count(*) FROM period_procedures WHERE {coded_filter} GROUP BY ALL ORDER BY 1"
    ).fetchall():
        source = f"{system}/procedure ({coded_role or 'any role'})"
        ledger.coded_stay_ledger(q, system, coded_filter, source, coded_counts)
        coded_sources.append(
            ledger.summarise(
                q, "operated_discharges", source, coded_counts, float(rows), operated, operated_tol
            )
        )
    theatre_sources: list[SourceCount] = []
    operation_sources: list[SourceCount] = []
    for system, rows, sessions in q.con.execute(
        "SELECT system, count(*), count(DISTINCT (stay, session_no)) FROM period_procedures "
        "WHERE role = 'theatre' GROUP BY system ORDER BY system"
    ).fetchall():
        source = f"{system}/procedure (theatre)"
        ledger.theatre_stay_ledger(q, system, source, "theatre sessions")
        theatre_sources.append(
            ledger.summarise(
                q, "operated_discharges", source, "theatre sessions", float(sessions), operated, operated_tol
            )
        )
        ledger.theatre_operation_ledger(q, system, source, "procedure rows")
        operation_sources.append(
            ledger.summarise(
                q, "operations", source, "procedure rows", float(rows), coded_count, operations_tol
            )
        )
    theatre = q.rows(
        """SELECT count(*) AS n, count(*) FILTER (WHERE minimally_invasive) AS mi,
                  count(*) FILTER (WHERE grade = 4) AS grade4,
                  count(*) FILTER (WHERE urgency = 'elective') AS elective,
                  count(*) FILTER (WHERE day_surgery AND urgency = 'elective') AS day
           FROM period_procedures WHERE role = 'theatre'"""
    )[0]
    n_ops = int(theatre["n"])
    no_theatre = "no theatre procedure (procedure.role = theatre) of the period's stays at this site"
    out = {
        "operated_discharges": Kpi(
            "operated_discharges",
            KPI_NAMES["operated_discharges"],
            operated,
            operated,
            None,
            "stays with at least one coded procedure" + ("" if coded_role else " (any procedure record)"),
            [*coded_sources, *theatre_sources],
        ),
        "operated_discharge_share": Kpi(
            "operated_discharge_share",
            KPI_NAMES["operated_discharge_share"],
            _ratio(operated, n_discharges),
            operated,
            n_discharges,
            "operated stays over all discharges (the sources of operated_discharges and discharges)",
        ),
        "operations": Kpi(
            "operations",
            KPI_NAMES["operations"],
            coded_count,
            coded_count,
            None,
            "procedures coded for the period's stays, each stay's from the first system in the site's "
            "precedence that codes it",
            operation_sources,
        ),
    }
    if n_ops == 0:
        for n in ("minimally_invasive_share", "grade4_share", "day_surgery_share"):
            out[n] = _not_applicable(n, no_theatre)
        return out
    out["minimally_invasive_share"] = Kpi(
        "minimally_invasive_share",
        KPI_NAMES["minimally_invasive_share"],
        _ratio(theatre["mi"], n_ops),
        theatre["mi"],
        n_ops,
        "theatre records' minimally-invasive flag per procedure",
    )
    out["grade4_share"] = Kpi(
        "grade4_share",
        KPI_NAMES["grade4_share"],
        _ratio(theatre["grade4"], n_ops),
        theatre["grade4"],
        n_ops,
        "operation grade per theatre procedure",
    )
    out["day_surgery_share"] = Kpi(
        "day_surgery_share",
        KPI_NAMES["day_surgery_share"],
        _ratio(theatre["day"], theatre["elective"]),
        theatre["day"],
        theatre["elective"],
        "day-surgery procedures among elective theatre procedures",
    )
    return out


def _costs_and_stay(q: DuckDBChecks, discharges: Kpi, tol: KpiTolerance) -> dict[str, Kpi]:
    out: dict[str, Kpi] = {}
    n_discharges = discharges.value
    if discharges.status != "measured":
        return {
            n: _not_applicable(n, discharges.reason)
            for n in ("inpatient_cost", "cost_per_discharge", "bed_days", "average_length_of_stay")
        }
    totals = q.rows(
        "SELECT count(total_cost) AS stated, sum(total_cost) AS cost, "
        "count(coalesce(los, bed_days)) AS days_n, "
        "sum(coalesce(los, bed_days)) AS days FROM period_stays"
    )[0]
    if not totals["stated"]:
        reason = "no encounter of the period's stays states its total cost (encounter.total_cost)"
        out["inpatient_cost"] = _not_applicable("inpatient_cost", reason)
        out["cost_per_discharge"] = _not_applicable("cost_per_discharge", reason)
    else:
        cost = round(float(totals["cost"]), 2)
        sources: list[SourceCount] = []
        for table, label in (("settlement", "settled totals"), ("charge", "charges summed")):
            if not q.rows_in.get(table):
                continue
            expr, joins = _stay_of("x", table)
            amount = "x.total_cost" if table == "settlement" else "x.amount"
            where = "" if table == "settlement" else "WHERE x.setting IS DISTINCT FROM 'outpatient'"
            q.execute(
                f"""CREATE OR REPLACE TEMP TABLE stay_amounts AS
                SELECT x.system, {expr} AS stay, sum({amount}) AS amount
                FROM "{table}" x {joins} {where} GROUP BY x.system, {expr}"""
            )
            counts = f"{label} of the period's stays"
            for system, value in q.con.execute(
                """SELECT a.system, sum(a.amount) FILTER (WHERE s.total_cost IS NOT NULL)
                   FROM stay_amounts a LEFT JOIN period_stays s USING (stay) GROUP BY ALL ORDER BY 1"""
            ).fetchall():
                source = f"{system}/{table}"
                ledger.cost_ledger(q, system, table, label, source, counts, COST_TOLERANCE)
                sources.append(
                    ledger.summarise(
                        q,
                        "inpatient_cost",
                        source,
                        counts,
                        round(float(value or 0), 2),
                        cost,
                        tol.for_kpi("inpatient_cost"),
                        digits=2,
                    )
                )
        out["inpatient_cost"] = Kpi(
            "inpatient_cost",
            KPI_NAMES["inpatient_cost"],
            cost,
            cost,
            None,
            "each stay's stated total (encounter.total_cost) from the first system in the site's precedence "
            "that states it, summed over the period's stays",
            sources,
        )
        out["cost_per_discharge"] = Kpi(
            "cost_per_discharge",
            KPI_NAMES["cost_per_discharge"],
            _ratio(cost, n_discharges),
            cost,
            n_discharges,
            "stated stay totals over reconciled discharges",
        )
    if not totals["days_n"]:
        reason = "no encounter of the period's stays states its length of stay or bed-days"
        out["bed_days"] = _not_applicable("bed_days", reason)
        out["average_length_of_stay"] = _not_applicable("average_length_of_stay", reason)
        return out
    bed_days = float(totals["days"])
    day_sources: list[SourceCount] = []
    counts = "bed-days of the period's stays"
    for system, value in q.con.execute(
        """SELECT r.system, sum(coalesce(r.bed_days, r.length_of_stay_days))
           FROM stay_rows r JOIN period_stays s USING (stay)
           WHERE coalesce(r.bed_days, r.length_of_stay_days) IS NOT NULL GROUP BY ALL ORDER BY 1"""
    ).fetchall():
        source = f"{system}/encounter"
        ledger.bed_day_ledger(q, system, source, counts)
        day_sources.append(
            ledger.summarise(q, "bed_days", source, counts, float(value), bed_days, tol.for_kpi("bed_days"))
        )
    out["bed_days"] = Kpi(
        "bed_days",
        KPI_NAMES["bed_days"],
        bed_days,
        bed_days,
        None,
        "each stay's length of stay from the first system in the site's precedence that states it; a stay "
        "ending before midnight counts one day",
        day_sources,
    )
    out["average_length_of_stay"] = Kpi(
        "average_length_of_stay",
        KPI_NAMES["average_length_of_stay"],
        _ratio(bed_days, n_discharges),
        bed_days,
        n_discharges,
        "stated lengths of stay over reconciled discharges",
    )
    return out
