"""The KPI ledger: every record behind a KPI's difference between one source system and the reconciled value.

For each KPI and source (a system's rows of one canonical table, counted one way), every record on either
side is one line of the ledger (temp table ``kpi_records``):

- **matched**: the source counts it and so does the KPI (amount 0);
- **explained** by a named record-level rule: the source counts a record the KPI does not (a refunded
  registration, a recalled discharge's continuation row, a procedure coded more than once per stay, a
  further theatre session of a stay), or lacks one the KPI counts for a reason its own record shows (an
  interventional procedure done outside the theatre, a stay paid by a payment method the payer settles none
  of, a record after the system's last exported one);
- **unexplained**: no rule says why. A stay, visit or procedure a system lacks is unexplained unless a rule
  names its reason: absence alone explains nothing.

Each line carries its signed contribution to the source's difference (``amount``: +1 for a record the
source counts and the KPI does not, -1 for one the KPI counts and the source lacks, a cost or bed-day
difference in the KPI's unit), so the ledger of a source adds up to its difference by construction, and a
summary that does not add up is reported as unexplained, never absorbed. A source's "reconciles" check fails
when its unexplained records account for more of the reconciled value than the configured tolerance
(``kpi_tolerance``).

The ledger reads the temp tables ``_kpis`` builds from the canonical model (``registration_rows``,
``outpatient_reference``, ``stay_rows``, ``stay_facts``, ``period_stays``, ``period_procedures``,
``operated``, ``reference_procedures``). Systems are data: nothing here names one. Raw SQL stays in this
module and ``_kpis`` (DuckDB only; the KPI reconciliation is refused on Spark by its caller).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ._cross_system_duckdb import DuckDBChecks

EXAMPLES = 20  # record keys listed per reason in kpis.json; kpi_records.parquet has all of them
CUT_OFF = "after this system's last exported record (its export ends earlier)"
NOT_ADDING_UP = "difference not accounted for by any record (a ledger fault)"

RECORDS_SCHEMA = pa.schema(
    [
        ("kpi", pa.string()),
        ("source", pa.string()),
        ("counts", pa.string()),
        ("record_key", pa.string()),  # the source row's record_key (null for a record the source lacks)
        ("reference_key", pa.string()),  # the visit, stay or stay's n-th procedure the line is about
        ("outcome", pa.string()),  # explained | unexplained (matched lines are counted, not written)
        ("rule", pa.string()),
        ("amount", pa.float64()),
    ]
)


@dataclass(frozen=True)
class Reason:
    """A record-level rule and the records it explains (or, for ``unexplained``, that no rule explains)."""

    rule: str
    records: int
    amount: float  # signed contribution to the source's difference, in the KPI's unit
    examples: list[str] = field(default_factory=list)  # the first record keys, by key


@dataclass(frozen=True)
class SourceCount:
    """One system's count of a KPI and its ledger against the reconciled value."""

    source: str
    counts: str  # what the system counts, in words
    value: float
    reference: float  # the reconciled value it is compared with
    difference: float  # value - reference
    matched: int
    reasons: list[Reason] = field(default_factory=list)
    unexplained: Reason = field(default_factory=lambda: Reason("unexplained", 0, 0.0))
    unexplained_pct: float = 0.0  # unexplained records' absolute amounts, percent of the reference
    tolerance_pct: float = 0.0
    status: str = "passed"  # "passed" or "failed"

    @property
    def explained(self) -> bool:
        return self.status == "passed"

    @property
    def breakdown(self) -> dict[str, float]:
        """Rule -> signed amount, with ``unexplained`` when any record is."""
        out = {r.rule: r.amount for r in self.reasons}
        if self.unexplained.records or self.unexplained.amount:
            out["unexplained"] = self.unexplained.amount
        return out


def create_ledger(q: DuckDBChecks) -> None:
    q.execute(
        "CREATE OR REPLACE TEMP TABLE kpi_records (kpi VARCHAR, source VARCHAR, counts VARCHAR, "
        "record_key VARCHAR, reference_key VARCHAR, outcome VARCHAR, rule VARCHAR, amount DOUBLE)"
    )


def ledger_table(q: DuckDBChecks) -> pa.Table:
    """Every explained and unexplained line (matched ones are only counted), for kpi_records.parquet."""
    return q.table(
        "SELECT kpi, source, counts, record_key, reference_key, outcome, rule, amount FROM kpi_records "
        "WHERE outcome <> 'matched' ORDER BY kpi, source, counts, outcome, rule, reference_key, record_key"
    ).cast(RECORDS_SCHEMA)


def _insert(q: DuckDBChecks, select: str, params: dict[str, Any]) -> None:
    """Insert ledger lines: ``select`` yields record_key, reference_key, rule (null when unexplained),
    matched (bool) and amount."""
    sql = f"""INSERT INTO kpi_records
        SELECT $kpi, $source, $counts, record_key, reference_key,
               CASE WHEN matched THEN 'matched' WHEN rule IS NULL THEN 'unexplained' ELSE 'explained' END,
               CASE WHEN matched THEN NULL ELSE coalesce(rule, unexplained_as) END, amount
        FROM ({select})"""
    # DuckDB refuses a parameter the statement does not use: bind only the ones it names
    q.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql})


def summarise(
    q: DuckDBChecks,
    kpi: str,
    source: str,
    counts: str,
    value: float,
    reference: float,
    tolerance_pct: float,
    *,
    digits: int = 6,
) -> SourceCount:
    """A source's ledger summed by rule, its unexplained records, and the check against the tolerance."""
    key = {"kpi": kpi, "source": source, "counts": counts}
    where = "kpi = $kpi AND source = $source AND counts = $counts"
    matched, drift = q.con.execute(
        f"SELECT count(*), coalesce(sum(amount), 0) FROM kpi_records WHERE {where} AND outcome = 'matched'",
        key,
    ).fetchall()[0]
    groups = q.rows(
        f"""SELECT outcome, rule, count(*) AS records, sum(amount) AS amount, sum(abs(amount)) AS magnitude,
                   list(coalesce(record_key, reference_key) ORDER BY coalesce(record_key, reference_key))
                       [1:{EXAMPLES}] AS examples
            FROM kpi_records WHERE {where} AND outcome <> 'matched' GROUP BY ALL ORDER BY outcome, rule""",
        key,
    )
    difference = round(value - reference, digits)
    reasons = [
        Reason(g["rule"], int(g["records"]), round(float(g["amount"]), digits), list(g["examples"]))
        for g in groups
        if g["outcome"] == "explained"
    ]
    lost = [g for g in groups if g["outcome"] == "unexplained"]
    records = sum(int(g["records"]) for g in lost)
    amount = sum(float(g["amount"]) for g in lost)
    magnitude = sum(float(g["magnitude"]) for g in lost)
    examples = sorted(e for g in lost for e in g["examples"])[:EXAMPLES]
    # The ledger adds up by construction; if it ever does not, the gap is unexplained, never absorbed.
    # (matched costs may differ by less than a fen each: their drift is part of the sum, not a reason)
    gap = round(difference - float(drift) - sum(r.amount for r in reasons) - amount, digits)
    if abs(gap) > 10 ** (-min(digits, 4)):
        amount += gap
        magnitude += abs(gap)
        examples = [NOT_ADDING_UP, *examples][:EXAMPLES]
    rules = sorted({str(g["rule"]) for g in lost})
    unexplained = Reason(
        "unexplained: " + "; ".join(rules) if rules else "unexplained",
        records,
        round(amount, digits),
        examples,
    )
    pct = round(100.0 * magnitude / abs(reference), 4) if reference else (100.0 if magnitude else 0.0)
    status = "passed" if pct <= tolerance_pct else "failed"
    return SourceCount(
        source,
        counts,
        value,
        reference,
        difference,
        int(matched),
        reasons,
        unexplained,
        pct,
        tolerance_pct,
        status,
    )


# -- outpatient visits ------------------------------------------------------------------------------------


def outpatient_ledger(q: DuckDBChecks, system: str, source: str, counts: str) -> None:
    """Registrations of one system against the reconciled outpatient visits."""
    params = {"kpi": "outpatient_visits", "source": source, "counts": counts, "system": system}
    _insert(
        q,
        """SELECT record_key, visit AS reference_key, coalesce(nth = 1, false) AS matched,
                  CASE WHEN nth = 1 THEN 0 ELSE 1 END AS amount,
                  CASE WHEN status = 'refunded' THEN 'registration refunded (退号)'
                       WHEN status = 'cancelled' THEN 'registration cancelled'
                       WHEN encounter_type = 'emergency' THEN 'emergency visit (the KPI excludes emergencies)'
                       WHEN encounter_type = 'checkup' THEN 'health check-up (the KPI excludes check-ups)'
                       WHEN nth > 1 THEN 'a further registration of a visit already counted' END AS rule,
                  NULL AS unexplained_as
           FROM (SELECT *, CASE WHEN counted THEN row_number() OVER (PARTITION BY visit, counted
                                                                    ORDER BY start_at, record_key) END AS nth
                 FROM (SELECT *, status = 'done' AND encounter_type = 'outpatient' AS counted
                       FROM registration_rows WHERE system = $system))""",
        params,
    )
    _insert(
        q,
        f"""SELECT NULL AS record_key, v.visit AS reference_key, false AS matched, -1.0 AS amount,
                  CASE WHEN {_after_last("v.first_at")} THEN $cut_off END AS rule,
                  'outpatient visit this system has no registration of' AS unexplained_as
           FROM outpatient_reference v
           WHERE v.visit NOT IN (SELECT visit FROM registration_rows WHERE system = $system
                                 AND status = 'done' AND encounter_type = 'outpatient')""",
        {**params, "cut_off": CUT_OFF},
    )


# -- discharges and bed-days --------------------------------------------------------------------------------


def _after_last(at: str) -> str:
    """True when ``at`` falls on a later day than the system's last exported record (temp table
    ``system_last``). Days, not times: a system keeping dates only writes its last discharge at midnight."""
    return f"CAST({at} AS DATE) > (SELECT CAST(last_at AS DATE) FROM system_last WHERE system = $system)"


def _stay_cut_off(alias: str) -> str:
    return _after_last(f"{alias}.end_at")


def discharge_ledger(q: DuckDBChecks, system: str, source: str, counts: str) -> None:
    """Stay rows of one system against the reconciled discharges (one per stay)."""
    params = {"kpi": "discharges", "source": source, "counts": counts, "system": system, "cut_off": CUT_OFF}
    _insert(
        q,
        """SELECT record_key, stay AS reference_key, nth = 1 AS matched, 1 - (nth = 1)::INT AS amount,
                  CASE WHEN coalesce(recalled, false)
                           THEN 'recalled discharge (出院召回): a continuation row of the same stay'
                       WHEN nth > 1 THEN 'a further row of a stay already counted' END AS rule,
                  NULL AS unexplained_as
           FROM (SELECT r.*,
                        row_number() OVER (
                            PARTITION BY r.stay ORDER BY coalesce(r.recalled, false), r.start_at, r.record_key
                        ) AS nth
                 FROM stay_rows r JOIN period_stays s USING (stay) WHERE r.system = $system)""",
        params,
    )
    _insert(
        q,
        f"""SELECT NULL AS record_key, s.stay AS reference_key, false AS matched, -1.0 AS amount,
                   CASE WHEN {_stay_cut_off("s")} THEN $cut_off END AS rule,
                   'discharged stay this system has no row of' AS unexplained_as
            FROM period_stays s
            WHERE s.stay NOT IN (SELECT stay FROM stay_rows WHERE system = $system)""",
        params,
    )


def bed_day_ledger(q: DuckDBChecks, system: str, source: str, counts: str) -> None:
    """One system's bed-days per stay against each stay's reconciled length of stay."""
    params = {"kpi": "bed_days", "source": source, "counts": counts, "system": system, "cut_off": CUT_OFF}
    _insert(
        q,
        """WITH per AS (
               SELECT r.stay, min(r.record_key) AS record_key, count(*) AS n,
                      sum(coalesce(r.bed_days, r.length_of_stay_days)) AS days
               FROM stay_rows r JOIN period_stays s USING (stay)
               WHERE r.system = $system AND coalesce(r.bed_days, r.length_of_stay_days) IS NOT NULL
               GROUP BY r.stay)
           SELECT per.record_key, per.stay AS reference_key,
                  coalesce(per.days = coalesce(s.los, s.bed_days), false) AS matched,
                  per.days - coalesce(s.los, s.bed_days, 0) AS amount,
                  CASE WHEN per.n > 1
                       THEN 'stay in several rows (recalled discharge): each row''s bed-days counted'
                  END AS rule,
                  'bed-days differ from the stay''s reconciled length of stay' AS unexplained_as
           FROM per JOIN period_stays s USING (stay)""",
        params,
    )
    _insert(
        q,
        f"""SELECT NULL AS record_key, s.stay AS reference_key, false AS matched,
                   -coalesce(s.los, s.bed_days) AS amount,
                   CASE WHEN {_stay_cut_off("s")} THEN $cut_off END AS rule,
                   'stay whose bed-days this system does not state' AS unexplained_as
            FROM period_stays s
            WHERE coalesce(s.los, s.bed_days) IS NOT NULL AND s.stay NOT IN (
                SELECT stay FROM stay_rows WHERE system = $system
                AND coalesce(bed_days, length_of_stay_days) IS NOT NULL)""",
        params,
    )


# -- operated stays and operations ------------------------------------------------------------------------

INTERVENTIONAL = "interventional procedure (done outside the theatre)"


def coded_stay_ledger(q: DuckDBChecks, system: str, coded_filter: str, source: str, counts: str) -> None:
    """Coded procedures of one system against the reconciled operated stays (a stay counts once)."""
    params = {"kpi": "operated_discharges", "source": source, "counts": counts, "system": system}
    _insert(
        q,
        f"""SELECT record_key, stay AS reference_key, nth = 1 AS matched, 1 - (nth = 1)::INT AS amount,
                   CASE WHEN nth > 1
                        THEN 'procedure coded more than once per stay (the KPI counts the stay once)'
                   END AS rule,
                   NULL AS unexplained_as
            FROM (SELECT *, row_number() OVER (PARTITION BY stay ORDER BY "rank", record_key) AS nth
                  FROM period_procedures WHERE system = $system AND {coded_filter})""",
        params,
    )
    _insert(
        q,
        f"""SELECT NULL AS record_key, stay AS reference_key, false AS matched, -1.0 AS amount,
                   NULL AS rule, 'operated stay this system codes no procedure for' AS unexplained_as
            FROM operated WHERE stay NOT IN (SELECT stay FROM period_procedures
                                             WHERE system = $system AND {coded_filter})""",
        params,
    )


def theatre_stay_ledger(q: DuckDBChecks, system: str, source: str, counts: str) -> None:
    """Theatre sessions of one system against the reconciled operated stays."""
    params = {
        "kpi": "operated_discharges",
        "source": source,
        "counts": counts,
        "system": system,
        "interventional": INTERVENTIONAL,
    }
    _insert(
        q,
        """SELECT record_key, stay AS reference_key, nth = 1 AND operated AS matched,
                  CASE WHEN nth = 1 AND operated THEN 0 ELSE 1 END AS amount,
                  CASE WHEN nth > 1 AND operated
                       THEN 'a further theatre session in a stay already counted' END AS rule,
                  'theatre session of a stay with no coded procedure' AS unexplained_as
           FROM (SELECT stay, session_no, min(record_key) AS record_key,
                        stay IN (SELECT stay FROM operated) AS operated,
                        row_number() OVER (PARTITION BY stay
                                           ORDER BY min(performed_at), min(record_key)) AS nth
                 FROM period_procedures WHERE role = 'theatre' AND system = $system
                 GROUP BY stay, session_no)""",
        params,
    )
    _insert(
        q,
        """SELECT NULL AS record_key, o.stay AS reference_key, false AS matched, -1.0 AS amount,
                  CASE WHEN coalesce(c.all_interventional, false) THEN $interventional END AS rule,
                  'operated stay without a theatre record' AS unexplained_as
           FROM operated o
           LEFT JOIN (SELECT stay, bool_and(coalesce(interventional, false)) AS all_interventional
                      FROM reference_procedures GROUP BY stay) c USING (stay)
           WHERE o.stay NOT IN (SELECT stay FROM period_procedures
                                WHERE role = 'theatre' AND system = $system)""",
        params,
    )


def theatre_operation_ledger(q: DuckDBChecks, system: str, source: str, counts: str) -> None:
    """Theatre procedure rows of one system paired, stay by stay, with the reconciled coded procedures."""
    params = {
        "kpi": "operations",
        "source": source,
        "counts": counts,
        "system": system,
        "interventional": INTERVENTIONAL,
    }
    _insert(
        q,
        """WITH theatre AS (
               SELECT stay, record_key,
                      row_number() OVER (PARTITION BY stay ORDER BY performed_at, "rank", record_key) AS n
               FROM period_procedures WHERE role = 'theatre' AND system = $system)
           SELECT t.record_key, coalesce(t.stay, c.stay) || '#' || CAST(coalesce(t.n, c.n) AS VARCHAR)
                      AS reference_key,
                  t.stay IS NOT NULL AND c.stay IS NOT NULL AS matched,
                  CASE WHEN t.stay IS NULL THEN -1 WHEN c.stay IS NULL THEN 1 ELSE 0 END AS amount,
                  CASE WHEN t.stay IS NULL AND coalesce(c.interventional, false) THEN $interventional END
                      AS rule,
                  CASE WHEN t.stay IS NULL THEN 'coded procedure without a theatre record'
                       WHEN t.stay NOT IN (SELECT stay FROM reference_procedures)
                           THEN 'theatre record of a stay with no coded procedure'
                       ELSE 'theatre procedure beyond the stay''s coded ones' END AS unexplained_as
           FROM theatre t FULL OUTER JOIN reference_procedures c ON c.stay = t.stay AND c.n = t.n""",
        params,
    )


# -- inpatient cost -----------------------------------------------------------------------------------------


def cost_ledger(
    q: DuckDBChecks, system: str, table: str, label: str, source: str, counts: str, tolerance: float
) -> None:
    """One system's amounts per stay (temp table ``stay_amounts``) against each stay's stated total."""
    params = {
        "kpi": "inpatient_cost",
        "source": source,
        "counts": counts,
        "system": system,
        "cut_off": CUT_OFF,
        "tolerance": tolerance,
        "differs": f"{label} differ from the stay's stated total",
    }
    _insert(
        q,
        """SELECT NULL AS record_key, a.stay AS reference_key,
                  abs(a.amount - s.total_cost) <= $tolerance AS matched,
                  a.amount - s.total_cost AS amount,
                  NULL AS rule, $differs AS unexplained_as
           FROM stay_amounts a JOIN period_stays s USING (stay)
           WHERE a.system = $system AND s.total_cost IS NOT NULL""",
        params,
    )
    # A payer settles only the stays it insures: a stay whose payment method is one the payer settles no
    # stay of is explained by that method (shown in the rule); any other stay it lacks is unexplained. A
    # payer none of whose rows reaches a stay explains nothing: that would excuse every method at once.
    settles = table == "settlement"
    _insert(
        q,
        f"""WITH methods AS (
               SELECT DISTINCT f.payment_method FROM stay_amounts a JOIN stay_facts f USING (stay)
               WHERE a.system = $system AND f.payment_method IS NOT NULL)
            SELECT NULL AS record_key, s.stay AS reference_key, false AS matched,
                   -round(s.total_cost, 2) AS amount,
                   CASE WHEN {settles} AND s.payment_method IS NOT NULL AND EXISTS (SELECT 1 FROM methods)
                             AND s.payment_method NOT IN (SELECT payment_method FROM methods)
                        THEN 'payment method ' || s.payment_method || ', of which this system settles no stay'
                        WHEN {_stay_cut_off("s")} THEN $cut_off END AS rule,
                   'stay without {table} rows in this system' AS unexplained_as
            FROM period_stays s
            WHERE s.total_cost IS NOT NULL
              AND s.stay NOT IN (SELECT stay FROM stay_amounts
                                 WHERE system = $system AND stay IS NOT NULL)""",
        params,
    )
