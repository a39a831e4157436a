"""The cross-system checks' queries on DuckDB: each one compares a fact that several systems of a site hold.

Every query reads the canonical hospital model as staging wrote it (``staging/<table>.parquet``: model
columns plus ``system``, ``_source_file`` and ``_source_row``), the site's declarations
(``staging/site.json``) and the link stage's output (``link/events``, which gives every staged row its
person and visit, joined on ``(table, system, record_key)``). Systems are data: a check comparing one fact
compares every pair of systems that hold it, and nothing here names a site's system, raw table or
numbering convention.

Each query returns *detail* rows in one shape (``DETAIL_COLUMNS``): the record that disagrees (system, file,
row, key, field, value), what it was compared with (other system and value) and a reason. Counts come from a
second query per check so that a check with no disagreement still says how much it compared.

Paths and values reach DuckDB as bound parameters or Python values, never spliced into SQL text. Raw SQL is
kept in this module and ``_identity_quality`` only (STYLE.md section 1): the checks are refused on Spark with
a named error by the orchestrator until a Spark twin is written and compared with this one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from medspace.core import InputError

DETAIL_COLUMNS = (
    "check",
    "system",
    "file",
    "row",
    "key",
    "field",
    "value",
    "other_system",
    "other_value",
    "reason",
)

DETAIL_SCHEMA = pa.schema(
    [
        ("check", pa.string()),
        ("system", pa.string()),
        ("file", pa.string()),
        ("row", pa.int64()),
        ("key", pa.string()),
        ("field", pa.string()),
        ("value", pa.string()),
        ("other_system", pa.string()),
        ("other_value", pa.string()),
        ("reason", pa.string()),
    ]
)

# A cost is the same when it differs by less than one fen (0.01 yuan); float sums of charges drift below it.
COST_TOLERANCE = 0.005

# The canonical tables every check may read (hospital model version 1); staging writes each, empty or not.
MODEL_TABLES = (
    "patient",
    "encounter",
    "transfer",
    "diagnosis",
    "procedure",
    "lab_order",
    "specimen",
    "lab_result",
    "imaging_exam",
    "imaging_study",
    "medication_order",
    "medication_dispense",
    "charge",
    "settlement",
    "note",
    "death",
)


@dataclass(frozen=True)
class Counts:
    """What one check compared: records (or stays, persons, items) and how they came out."""

    compared: int
    agreeing: int
    disagreeing: int
    explained: int
    not_comparable: int


class NotApplicable(Exception):
    """A check cannot run at this site: a canonical table it needs is empty (``reason`` says which)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DuckDBChecks:
    """The cross-system queries over one workspace, on one in-memory DuckDB connection.

    Args:
        workspace: The workspace holding ``staging/`` (canonical tables, ``site.json``) and ``link/``.
        threads: DuckDB threads (default: all cores).

    Raises:
        InputError: if the staging or link output is missing.
    """

    def __init__(self, workspace: Path, *, threads: int | None = None, link: bool = True) -> None:
        self.workspace = Path(workspace)
        staging = self.workspace / "staging"
        events = self.workspace / "link" / "events.parquet"
        for needed in (staging / "site.json", events) if link else (staging / "site.json",):
            if not needed.exists():
                raise InputError(
                    f"this needs {needed.relative_to(self.workspace)}, which is missing; run `medspace run` "
                    "(ingest and link) on this workspace first",
                    file=str(needed),
                )
        self.site: dict[str, Any] = json.loads((staging / "site.json").read_text(encoding="utf-8"))
        # DuckDB itself rather than Ibis's backend: these are DuckDB SQL statements, and Arrow results come
        # straight from a relation without the extra copy a DB-API cursor makes.
        self.con = duckdb.connect()
        self.con.execute("SET enable_progress_bar = false")
        if threads:
            self.con.execute("SET threads = $n", {"n": int(threads)})
        self.rows_in: dict[str, int] = {}
        for table in MODEL_TABLES:
            path = staging / f"{table}.parquet"
            if not path.exists():
                self.rows_in[table] = 0
                continue
            # the path is a Python value handed to DuckDB, never SQL text (it may hold ' and ")
            self.con.read_parquet(str(path)).create_view(table)
            self.rows_in[table] = self.scalar(f'SELECT count(*) FROM "{table}"')
        if events.exists():
            self.con.read_parquet(str(events)).create_view("link_events")
        else:  # the KPIs read staging alone; without link output no row has a person or visit
            self.execute(
                'CREATE VIEW link_events AS SELECT NULL::VARCHAR AS "table", NULL::VARCHAR AS system, '
                "NULL::VARCHAR AS record_key, NULL::VARCHAR AS source_file, NULL::BIGINT AS source_row, "
                "NULL::VARCHAR AS person_id, NULL::VARCHAR AS visit_id, NULL::VARCHAR AS status, "
                "NULL::BOOLEAN AS parent_missing, NULL::VARCHAR AS reason WHERE false"
            )
        visits = self.workspace / "link" / "visits.parquet"
        if visits.exists():
            self.con.read_parquet(str(visits)).create_view("link_visits")
        else:  # an older link output: a visit is named by its serial alone
            self.execute(
                "CREATE VIEW link_visits AS SELECT NULL::VARCHAR AS visit_id, NULL::VARCHAR AS visit_serial "
                "WHERE false"
            )
        # Every staged row's person and visit, keyed as the contract joins them.
        self.execute(
            'CREATE OR REPLACE TEMP TABLE ev AS SELECT "table", system, record_key, source_file, source_row, '
            "person_id, visit_id, status, parent_missing, reason FROM link_events"
        )
        # Whose value wins when systems disagree: the site's precedence, then any other system by name.
        precedence = [str(s) for s in self.site.get("precedence") or []]
        systems = sorted({s for t in self.rows_in if self.rows_in[t] for s in self.systems_of(t)})
        ranked = precedence + [s for s in systems if s not in precedence]
        self.con.register(
            "precedence",
            pa.table(
                {"system": pa.array(ranked, pa.string()), "rank": pa.array(range(len(ranked)), pa.int64())}
            ),
        )

    # -- plumbing ------------------------------------------------------------------------------------------

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.con.execute(sql, dict(params) if params else None)

    def table(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        return self.con.sql(sql, params=dict(params) if params else None).to_arrow_table()

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return list(self.table(sql, params).to_pylist())

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        rows = self.con.sql(sql, params=dict(params) if params else None).fetchall()
        return int(rows[0][0] or 0) if rows else 0

    def counts(self, sql: str, params: Mapping[str, Any] | None = None) -> Counts:
        """Run a query returning one row with the five count columns."""
        row = self.rows(sql, params)[0]
        return Counts(
            compared=int(row["compared"] or 0),
            agreeing=int(row["agreeing"] or 0),
            disagreeing=int(row["disagreeing"] or 0),
            explained=int(row["explained"] or 0),
            not_comparable=int(row["not_comparable"] or 0),
        )

    def details(self, check: str, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run a detail query (columns as ``DETAIL_COLUMNS`` minus ``check``) and label it with the check."""
        table = self.table(sql, params)
        table = table.append_column("check", pa.array([check] * table.num_rows, pa.string()))
        return table.select(list(DETAIL_COLUMNS)).cast(DETAIL_SCHEMA)

    # -- what the site holds -------------------------------------------------------------------------------

    def require(self, *tables: str) -> None:
        """Raise `NotApplicable` naming the first of ``tables`` that holds no rows at this site."""
        for table in tables:
            if not self.rows_in.get(table):
                raise NotApplicable(f"the canonical table {table} is empty at this site")

    def require_values(self, table: str, column: str) -> None:
        """Raise `NotApplicable` when no row of ``table`` has a value in ``column``."""
        self.require(table)
        if not self.scalar(f'SELECT count("{column}") FROM "{table}"'):
            raise NotApplicable(f"no {table} row at this site has a {column}")

    def systems_of(self, table: str) -> list[str]:
        if not self.rows_in.get(table):
            return []
        return [r["system"] for r in self.rows(f'SELECT DISTINCT system FROM "{table}" ORDER BY system')]

    def systems_with(self, table: str, column: str) -> list[str]:
        """The systems some of whose rows of ``table`` hold a ``column`` value."""
        if not self.rows_in.get(table):
            return []
        return [
            r["system"]
            for r in self.rows(
                f'SELECT system FROM "{table}" GROUP BY system HAVING count("{column}") > 0 ORDER BY system'
            )
        ]

    @property
    def patient_index(self) -> str | None:
        value = self.site.get("patient_index")
        return None if value is None else str(value)


def _ev(alias: str, table: str) -> str:
    """The join of a staged row (``alias``) to its link event."""
    return f"ev.\"table\" = '{table}' AND ev.system = {alias}.system AND ev.record_key = {alias}.record_key"


_COUNT_OUTCOMES = """
SELECT count(*) FILTER (WHERE outcome <> 'not_comparable') AS compared,
       count(*) FILTER (WHERE outcome = 'agreeing') AS agreeing,
       count(*) FILTER (WHERE outcome = 'disagreeing') AS disagreeing,
       count(*) FILTER (WHERE outcome = 'explained') AS explained,
       count(*) FILTER (WHERE outcome = 'not_comparable') AS not_comparable
FROM {table}
"""

# ---------------------------------------------------------------------------------------------------------
# 1. The same fact in several systems
# ---------------------------------------------------------------------------------------------------------

# A stay: its inpatient number and admission count when the rows carry them (a recalled discharge's
# continuation row keeps both, domain.md §1 item 7), else the visit the link stage placed the row in.
_STAY_KEY = (
    "coalesce(e.inpatient_no || '-' || CAST(e.admission_count AS VARCHAR), ev.visit_id, e.visit_serial)"
)

# Per stay and system: the last discharge date (as a date: some systems keep dates only), whether the system
# recorded a recalled discharge for it, and the row that speaks for it (the recalled row when there is one).
DISCHARGE_STAYS = f"""
WITH rows AS (
    SELECT e.system, {_STAY_KEY} AS stay, e._source_file AS file, e._source_row AS row, e.record_key AS key,
           CAST(e.end_at AS DATE) AS end_date, coalesce(e.recalled, false) AS recalled
    FROM encounter e LEFT JOIN ev ON {_ev("e", "encounter")}
    WHERE e.end_at IS NOT NULL AND e.parent_visit_serial IS NULL
), per AS (
    SELECT stay, system, max(end_date) AS last_end, bool_or(recalled) AS has_recall,
           string_agg(strftime(end_date, '%Y-%m-%d'), ' -> ' ORDER BY end_date) AS dates,
           arg_max(file, recalled::INT * 1000000000000 + row) AS file,
           arg_max(row, recalled::INT * 1000000000000 + row) AS row,
           arg_max(key, recalled::INT * 1000000000000 + row) AS key
    FROM rows WHERE stay IS NOT NULL GROUP BY stay, system
)
SELECT a.stay, a.system, b.system AS other_system, a.dates, b.dates AS other_dates,
       CASE WHEN b.has_recall AND NOT a.has_recall THEN b.file ELSE a.file END AS file,
       CASE WHEN b.has_recall AND NOT a.has_recall THEN b.row ELSE a.row END AS row,
       CASE WHEN b.has_recall AND NOT a.has_recall THEN b.key ELSE a.key END AS key,
       CASE WHEN b.has_recall AND NOT a.has_recall THEN b.system ELSE a.system END AS recall_system,
       CASE WHEN a.has_recall OR b.has_recall THEN 'explained'
            WHEN a.last_end = b.last_end THEN 'agreeing'
            ELSE 'disagreeing' END AS outcome
FROM per a
JOIN per b ON a.stay = b.stay AND a.system <> b.system
JOIN precedence pa ON pa.system = a.system
JOIN precedence pb ON pb.system = b.system
WHERE pa.rank > pb.rank
"""


def discharge_date(q: DuckDBChecks) -> tuple[Counts, pa.Table]:
    """A stay's discharge date in every pair of systems with encounter rows for it.

    One comparison per stay and pair of systems; the lower-precedence system's row is the one listed. A
    recalled discharge on either side explains a difference (it is listed with its recalled row).
    """
    q.require_values("encounter", "end_at")
    if len(q.systems_with("encounter", "end_at")) < 2:
        raise NotApplicable("only one system at this site records discharge times (encounter.end_at)")
    q.execute(f"CREATE OR REPLACE TEMP TABLE discharge_stays AS {DISCHARGE_STAYS}")
    counts = q.counts(_COUNT_OUTCOMES.format(table="discharge_stays"))
    details = q.details(
        "discharge_date",
        """
        SELECT CASE WHEN outcome = 'explained' THEN recall_system ELSE system END AS system, file, row, key,
               'end_at' AS field, dates AS value, other_system, other_dates AS other_value,
               CASE WHEN outcome = 'explained' THEN 'recalled discharge'
                    ELSE 'discharge date differs from ' || other_system || '''s' END AS reason
        FROM discharge_stays WHERE outcome IN ('disagreeing', 'explained')
        """,
    )
    return counts, details


# The main diagnoses (rank 1, or unranked) of every visit, by name, in any system.
VISIT_DIAGNOSES = f"""
SELECT ev.visit_id, list(DISTINCT d.name ORDER BY d.name) AS names,
       string_agg(DISTINCT d.system, ',' ORDER BY d.system) AS systems
FROM diagnosis d JOIN ev ON {_ev("d", "diagnosis")}
WHERE d.name IS NOT NULL AND coalesce(d.rank, 1) = 1 AND ev.visit_id IS NOT NULL
GROUP BY ev.visit_id
"""

# A lab order's clinical diagnosis against the visit it names (its visit serial) and the visit the link stage
# placed it in. The named visit is the fact under test (domain.md §1 item 9: the only way back is order ->
# visit -> diagnoses); the linked visit says whether the link stage already moved the order.
ORDER_DIAGNOSES = f"""
WITH named AS (
    SELECT visit_serial, any_value(visit_id) AS visit_id FROM link_visits
    WHERE visit_serial IS NOT NULL GROUP BY visit_serial
)
SELECT o.system, o._source_file AS file, o._source_row AS row, o.record_key AS key,
       o.clinical_diagnosis AS dx,
       o.visit_serial AS carried_visit, ev.visit_id AS linked_visit,
       carried.names AS carried_names, carried.systems AS carried_systems, linked.names AS linked_names,
       CASE
           WHEN o.clinical_diagnosis IS NULL OR (carried.names IS NULL AND linked.names IS NULL)
               THEN 'not_comparable'
           WHEN carried.names IS NOT NULL AND NOT list_contains(carried.names, o.clinical_diagnosis)
               THEN 'disagreeing'
           WHEN linked.names IS NOT NULL AND NOT list_contains(linked.names, o.clinical_diagnosis)
               THEN 'disagreeing'
           ELSE 'agreeing'
       END AS outcome
FROM lab_order o
LEFT JOIN ev ON {_ev("o", "lab_order")}
LEFT JOIN named ON named.visit_serial = o.visit_serial
LEFT JOIN visit_diagnoses carried ON carried.visit_id = coalesce(named.visit_id, o.visit_serial)
LEFT JOIN visit_diagnoses linked ON linked.visit_id = ev.visit_id
"""


def request_diagnosis(q: DuckDBChecks) -> tuple[Counts, pa.Table]:
    """A lab order's clinical diagnosis is one of the main diagnoses of the visit it names."""
    q.require_values("lab_order", "clinical_diagnosis")
    q.require_values("diagnosis", "name")
    q.execute(f"CREATE OR REPLACE TEMP TABLE visit_diagnoses AS {VISIT_DIAGNOSES}")
    q.execute(f"CREATE OR REPLACE TEMP TABLE order_diagnoses AS {ORDER_DIAGNOSES}")
    counts = q.counts(_COUNT_OUTCOMES.format(table="order_diagnoses"))
    details = q.details(
        "request_diagnosis",
        """
        SELECT system, file, row, key, 'clinical_diagnosis' AS field, dx AS value,
               carried_systems AS other_system,
               coalesce(array_to_string(carried_names, ' | '), '-') || ' (named visit '
               || coalesce(carried_visit, '-') || '); ' || coalesce(array_to_string(linked_names, ' | '), '-')
               || ' (linked visit ' || coalesce(linked_visit, '-') || ')' AS other_value,
               CASE
                   WHEN carried_names IS NULL
                       THEN 'named visit has no diagnosis at this site; the linked visit''s differs'
                   WHEN NOT list_contains(carried_names, dx) AND list_contains(linked_names, dx)
                       THEN 'request filed against another visit: the named visit''s diagnosis differs, the '
                            || 'linked visit''s agrees'
                   WHEN NOT list_contains(carried_names, dx)
                       THEN 'diagnosis differs from the named visit''s (and the linked visit''s)'
                   ELSE 'the link stage moved the request to a visit whose diagnosis differs'
               END AS reason
        FROM order_diagnoses WHERE outcome = 'disagreeing'
        """,
    )
    return counts, details


# The cost of each visit as every system states it, by the link stage's visit: each system's charges summed
# (refunds are negative rows; outpatient-setting charges are not a stay's), each settlement's total and each
# encounter row's total (the front sheet's D01).
VISIT_COSTS = f"""
SELECT 'charge' AS kind, c.system, ev.visit_id, NULL::VARCHAR AS file, NULL::BIGINT AS row,
       NULL::VARCHAR AS key, sum(c.amount) AS cost, false AS recalled
FROM charge c JOIN ev ON {_ev("c", "charge")}
WHERE c.setting IS DISTINCT FROM 'outpatient' AND ev.visit_id IS NOT NULL
GROUP BY c.system, ev.visit_id
UNION ALL
SELECT 'settlement', s.system, ev.visit_id, s._source_file, s._source_row, s.record_key, s.total_cost, false
FROM settlement s JOIN ev ON {_ev("s", "settlement")}
WHERE s.total_cost IS NOT NULL AND ev.visit_id IS NOT NULL
UNION ALL
SELECT 'encounter', e.system, ev.visit_id, e._source_file, e._source_row, e.record_key, e.total_cost,
       -- a recalled discharge leaves the system two rows for the stay, each stating its own part's total
       bool_or(coalesce(e.recalled, false)) OVER (PARTITION BY e.system, ev.visit_id)
FROM encounter e JOIN ev ON {_ev("e", "encounter")}
WHERE e.total_cost IS NOT NULL AND ev.visit_id IS NOT NULL
"""

# One stated total (a settlement's, an encounter row's) against every system's charges of the same visit.
_COST_PAIRS = f"""
SELECT t.system, t.file, t.row, t.key, t.cost, c.system AS other_system, c.cost AS charged,
       CASE WHEN c.cost IS NULL THEN 'not_comparable'
            WHEN abs(t.cost - c.cost) <= {COST_TOLERANCE} THEN 'agreeing'
            WHEN t.recalled THEN 'explained'
            ELSE 'disagreeing' END AS outcome
FROM visit_costs t LEFT JOIN visit_costs c ON c.kind = 'charge' AND c.visit_id = t.visit_id
WHERE t.kind = $kind
"""


def stated_cost(q: DuckDBChecks, check: str, table: str) -> tuple[Counts, pa.Table]:
    """A visit's total cost as ``table`` (settlement or encounter) states it, against the sum of its charges
    in every system that holds charges for it."""
    q.require_values(table, "total_cost")
    q.require("charge")
    q.execute(f"CREATE TEMP TABLE IF NOT EXISTS visit_costs AS {VISIT_COSTS}")
    pairs = f"({_COST_PAIRS})"
    params = {"kind": table}
    counts = q.counts(_COUNT_OUTCOMES.format(table=pairs), params)
    details = q.details(
        check,
        f"""
        SELECT system, file, row, key, 'total_cost' AS field, printf('%.2f', cost) AS value, other_system,
               printf('%.2f', charged) AS other_value,
               'total differs from the charges of the visit by ' || printf('%.2f', cost - charged) AS reason
        FROM {pairs} WHERE outcome = 'disagreeing'
        """,
        params,
    )
    return counts, details


def settlement_cost(q: DuckDBChecks) -> tuple[Counts, pa.Table]:
    return stated_cost(q, "settlement_cost", "settlement")


def encounter_cost(q: DuckDBChecks) -> tuple[Counts, pa.Table]:
    return stated_cost(q, "encounter_cost", "encounter")


# ---------------------------------------------------------------------------------------------------------
# 2. Orphan and link rates per child table and system
# ---------------------------------------------------------------------------------------------------------

LINK_RATES = """
SELECT system, "table", count(*) AS rows,
       count(*) FILTER (WHERE status = 'linked') AS linked,
       count(*) FILTER (WHERE status = 'relinked') AS relinked,
       count(*) FILTER (WHERE status = 'recovered') AS recovered,
       count(*) FILTER (WHERE status = 'orphan') AS orphan,
       count(*) FILTER (WHERE parent_missing) AS parent_missing
FROM ev GROUP BY system, "table" ORDER BY system, "table"
"""

ORPHANS = """
SELECT system, source_file AS file, source_row AS row, record_key AS key, 'visit' AS field,
       NULL AS value, NULL AS other_system, NULL AS other_value, reason
FROM ev WHERE status = 'orphan' AND system = $system AND "table" = $table
"""

# The model's references (hospital.yaml, "Keys"): a child row reaches its parent through the first of these
# it carries. A table's parent is the one most of its rows point at (a lab result carrying a specimen key
# hangs on its specimen; one carrying only a visit serial hangs on the visit).
REFERENCES: dict[str, tuple[tuple[str, str], ...]] = {
    "specimen": (("order_key", "lab_order"),),
    "lab_result": (("specimen_key", "specimen"), ("order_key", "lab_order")),
    "imaging_study": (("accession_no", "imaging_exam"),),
    "medication_dispense": (("order_key", "medication_order"),),
    "encounter": (("parent_visit_serial", "encounter"),),
}
VISIT_IDENTIFIERS = ("visit_serial", "inpatient_no")


def parent_table(q: DuckDBChecks, table: str, system: str) -> str | None:
    """The canonical table a child table's rows of one system hang on, from the model's keys and the data.

    ``None`` for the patient table, the root every record reaches last.
    """
    if table == "patient":
        return None
    candidates = [*REFERENCES.get(table, ()), *((c, "encounter") for c in VISIT_IDENTIFIERS)]
    columns = _columns(q, table)
    best: tuple[int, str] | None = None
    for column, parent in candidates:
        if column not in columns or (parent == table and column != "parent_visit_serial"):
            continue
        n = q.scalar(f'SELECT count("{column}") FROM "{table}" WHERE system = $s', {"s": system})
        if n and (best is None or n > best[0]):
            best = (n, parent)
    if best is not None:
        return best[1]
    return "patient" if "patient_key" in columns else None


def _columns(q: DuckDBChecks, table: str) -> set[str]:
    if not q.rows_in.get(table):
        return set()
    return {r["column_name"] for r in q.rows(f'DESCRIBE "{table}"')}


# ---------------------------------------------------------------------------------------------------------
# 3. Units and reference ranges per lab test
# ---------------------------------------------------------------------------------------------------------

UNITS_SEEN = """
SELECT item_code, any_value(item_name) AS item_name, unit, count(*) AS rows,
       string_agg(DISTINCT lab_site, ',' ORDER BY lab_site) AS lab_sites
FROM lab_result WHERE item_code IS NOT NULL GROUP BY item_code, unit ORDER BY item_code, rows DESC, unit
"""

RANGES_SEEN = """
SELECT item_code, lab_site, unit, reference_range, count(*) AS rows
FROM lab_result WHERE item_code IS NOT NULL AND reference_range IS NOT NULL
GROUP BY ALL ORDER BY item_code, lab_site, unit, rows DESC, reference_range
"""


def unit_outcomes(q: DuckDBChecks, verdicts: Sequence[tuple[str, str, str, str]]) -> tuple[Counts, pa.Table]:
    """Label every result row by the verdict on its (test, unit): agreeing, explained or disagreeing.

    Args:
        verdicts: ``(item_code, unit, outcome, reason)`` for every unit other than the test's main one.
    """
    q.con.register(
        "unit_verdicts",
        pa.table(
            {
                name: pa.array([v[i] for v in verdicts], pa.string())
                for i, name in enumerate(("item_code", "unit", "outcome", "reason"))
            }
        ),
    )
    source = """(SELECT r.*, CASE WHEN r.unit IS NULL THEN 'not_comparable'
                                ELSE coalesce(v.outcome, 'agreeing') END AS outcome, v.reason
                 FROM lab_result r LEFT JOIN unit_verdicts v ON v.item_code = r.item_code AND v.unit = r.unit
                 WHERE r.item_code IS NOT NULL)"""
    counts = q.counts(_COUNT_OUTCOMES.format(table=source))
    details = q.details(
        "lab_units",
        f"""
        SELECT system, _source_file AS file, _source_row AS row, record_key AS key,
               'unit' AS field, unit AS value, lab_site AS other_system, NULL AS other_value, reason
        FROM {source} WHERE outcome IN ('disagreeing', 'explained')
        """,
    )
    return counts, details


# ---------------------------------------------------------------------------------------------------------
# 4. Code systems and value sets
# ---------------------------------------------------------------------------------------------------------

# Main diagnosis codes with the code system the site mapping declares for them. Editions of ICD-10 share one
# shape (category, `.`, three characters, an optional `x` extension), so the shape cannot say which edition
# a code is in. The edition is read from the data: per diagnosis name, the code most rows declared in one
# code system use is that name's code in that code system; a code that is another code system's code for the
# name is in that edition, any other code is in another (legacy) one.
DIAGNOSIS_CODES = """
WITH codes AS (
    SELECT system, _source_file AS file, _source_row AS row, record_key AS key, 'code' AS field, code, name,
           code_system AS expected
    FROM diagnosis WHERE code IS NOT NULL AND coalesce(rank, 1) = 1
), reference AS (
    SELECT name, expected, arg_max(code, n) AS code
    FROM (SELECT name, expected, code, count(*) AS n FROM codes WHERE name IS NOT NULL GROUP BY ALL)
    GROUP BY name, expected
)
SELECT c.*, own.code AS own_code,
       (SELECT min(r.expected) FROM reference r
        WHERE r.name = c.name AND r.code = c.code AND r.expected <> c.expected) AS other_edition,
       CASE WHEN c.name IS NULL THEN NULL
            WHEN c.code = own.code THEN c.expected
            ELSE coalesce((SELECT min(r.expected) FROM reference r
                           WHERE r.name = c.name AND r.code = c.code AND r.expected <> c.expected), 'other')
       END AS edition,
       -- Shapes of ICD-10 codes in the Chinese editions (domain.md §1 item 2): dagger-asterisk pairs
       -- (`E11.301+H36.0*`), extension codes (`E14.900x001`), category codes (`E11.900`),
       -- sub-codes (`E11.901`).
       CASE WHEN regexp_full_match(c.code,
                     '[A-Z][0-9]{2}\\.[0-9x]{3}(x[0-9]{3})?\\+[A-Z][0-9]{2}\\.[0-9x]\\*')
                THEN 'dagger-asterisk pair'
            WHEN regexp_full_match(c.code, '[A-Z][0-9]{2}\\.[0-9x][0-9]{2}x[0-9]{3}')
                THEN 'extension (x001)'
            WHEN regexp_full_match(c.code, '[A-Z][0-9]{2}\\.[0-9x][0-9]0') THEN 'category (E11.900)'
            WHEN regexp_full_match(c.code, '[A-Z][0-9]{2}\\.[0-9x][0-9][1-9]') THEN 'sub-code (E11.901)'
            ELSE 'other shape' END AS shape
FROM codes c
LEFT JOIN reference own ON own.name = c.name AND own.expected = c.expected
"""


def diagnosis_editions(q: DuckDBChecks) -> tuple[Counts, pa.Table, list[dict[str, Any]]]:
    """Main diagnosis codes in the code system (edition) the site mapping declares for them."""
    q.require_values("diagnosis", "name")
    q.execute(f"CREATE OR REPLACE TEMP TABLE diagnosis_codes AS {DIAGNOSIS_CODES}")
    source = """(SELECT *, CASE WHEN edition IS NULL THEN 'not_comparable'
                                WHEN edition = expected THEN 'agreeing'
                                ELSE 'disagreeing' END AS outcome FROM diagnosis_codes)"""
    counts = q.counts(_COUNT_OUTCOMES.format(table=source))
    details = q.details(
        "diagnosis_code_edition",
        f"""
        SELECT system, file, row, key, field, code AS value, expected AS other_system,
               own_code AS other_value,
               CASE WHEN edition = 'other' THEN 'coded in another (legacy) edition than ' || expected
                    ELSE 'coded in ' || edition || ' where ' || expected || ' is declared' END AS reason
        FROM {source} WHERE outcome = 'disagreeing'
        """,
    )
    profile = q.rows(
        "SELECT system, expected, coalesce(edition, 'unknown') AS edition, shape, count(*) AS rows "
        "FROM diagnosis_codes GROUP BY ALL ORDER BY system, expected, edition, shape"
    )
    return counts, details, profile


# B34C discharge mode, national value set (domain.md §1): 1 ordered discharge, 2 ordered transfer to a
# hospital, 3 ordered transfer to a community health centre, 4 against advice, 5 death, 9 other.
DISCHARGE_MODE_VALUE_SET = ("1", "2", "3", "4", "5", "9")


def discharge_modes(q: DuckDBChecks) -> tuple[Counts, pa.Table]:
    """Discharge modes (encounter.discharge_mode, in every system) within the national value set."""
    q.require_values("encounter", "discharge_mode")
    params = {"allowed": list(DISCHARGE_MODE_VALUE_SET)}
    source = """(SELECT system, _source_file AS file, _source_row AS row, record_key AS key,
                        discharge_mode AS value,
                        CASE WHEN discharge_mode IS NULL THEN 'not_comparable'
                             WHEN list_contains($allowed, discharge_mode) THEN 'agreeing'
                             ELSE 'disagreeing' END AS outcome
                 FROM encounter)"""
    counts = q.counts(_COUNT_OUTCOMES.format(table=source), params)
    details = q.details(
        "discharge_mode_value_set",
        f"""
        SELECT system, file, row, key, 'discharge_mode' AS field, value, NULL AS other_system,
               NULL AS other_value,
               CASE WHEN value = '6'
                        THEN 'discharge mode 6 is outside the national value set; a template '
                             || 'writes ''other'' as 6 instead of 9'
                    ELSE 'discharge mode outside the national value set (1, 2, 3, 4, 5, 9)'
               END AS reason
        FROM {source} WHERE outcome = 'disagreeing'
        """,
        params,
    )
    return counts, details


# Department codes in every canonical column that holds one. Where the site writes codes with a letter prefix
# (a department class before the digits), a code of digits alone has lost it (domain.md §1 item 4), which
# leaves a code that can stand for several departments. A site whose codes are all digits is consistent.
_DEPARTMENT_COLUMNS = (
    ("encounter", "department_code"),
    ("encounter", "discharge_department_code"),
    ("transfer", "from_department_code"),
    ("transfer", "to_department_code"),
    ("procedure", "department_code"),
)


def department_prefixes(q: DuckDBChecks) -> tuple[Counts, pa.Table, list[dict[str, Any]]]:
    """Department codes that lost the letter prefix the site's other codes carry."""
    parts = [
        f"SELECT system, _source_file AS file, _source_row AS row, record_key AS key, '{table}.{column}' "
        f'AS field, "{column}" AS code FROM "{table}"'
        for table, column in _DEPARTMENT_COLUMNS
        if q.rows_in.get(table)
    ]
    if not parts:
        raise NotApplicable(
            "no canonical table with department codes (encounter, transfer, procedure) has rows"
        )
    q.execute("CREATE OR REPLACE TEMP TABLE department_code_rows AS " + " UNION ALL ".join(parts))
    if not q.scalar("SELECT count(code) FROM department_code_rows"):
        raise NotApplicable("no department code is recorded at this site")
    q.execute(
        """CREATE OR REPLACE TEMP TABLE department_codes AS
        WITH prefixed AS (
            SELECT DISTINCT code, regexp_extract(code, '[0-9]+$') AS digits FROM department_code_rows
            WHERE regexp_full_match(code, '[A-Za-z]+[0-9]+')
        )
        SELECT c.*,
               CASE WHEN c.code IS NULL THEN 'not_comparable'
                    WHEN regexp_full_match(c.code, '[0-9]+') AND (SELECT count(*) FROM prefixed) > 0
                        THEN 'disagreeing'
                    ELSE 'agreeing' END AS outcome,
               (SELECT string_agg(p.code, ' or ' ORDER BY p.code) FROM prefixed p WHERE p.digits = c.code)
                   AS candidates
        FROM department_code_rows c"""
    )
    counts = q.counts(_COUNT_OUTCOMES.format(table="department_codes"))
    details = q.details(
        "department_code_prefix",
        """
        SELECT system, file, row, key, field, code AS value, NULL AS other_system, candidates AS other_value,
               'department code without its letter prefix'
               || CASE WHEN candidates LIKE '% or %' THEN '; ambiguous between ' || candidates
                       WHEN candidates IS NOT NULL THEN '; full code ' || candidates
                       ELSE '; no prefixed code with these digits seen' END AS reason
        FROM department_codes WHERE outcome = 'disagreeing'
        """,
    )
    per_table = q.rows(
        "SELECT system, file, field, count(*) AS rows, count(*) FILTER (WHERE outcome = 'disagreeing') "
        "AS without_prefix FROM department_codes GROUP BY ALL ORDER BY system, file, field"
    )
    return counts, details, per_table
