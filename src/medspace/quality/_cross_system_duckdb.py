"""The cross-system checks' queries on DuckDB: each one compares a fact two hospital systems both hold.

Every query reads the workspace's staged tables (``staging/<system>/<table>``, lineage columns
``_source_file`` and ``_source_row``) and the link stage's output (``link/events``, which gives every staged
row its person and visit). Rows are joined to their person and visit through ``(source_file, source_row)``,
the one key every staged table and every event share, rather than through each system's own keys.

Each query returns *detail* rows in one shape (``DETAIL_COLUMNS``): the record that disagrees (system, file,
row, key, field, value), what it was compared with (other system and value) and a reason. Counts come from a
second query per check so that a check with no disagreement still says how much it compared.

Raw SQL is kept in this module only (STYLE.md section 1): the checks are refused on Spark with a named error
by the orchestrator until a Spark twin is written and compared with this one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from medspace.core import InputError

# The staged tables and link outputs the checks read, as view name -> path under the workspace.
SOURCES: Mapping[str, str] = {
    "his_patients": "staging/his/patients.parquet",
    "his_registrations": "staging/his/registrations.parquet",
    "his_admissions": "staging/his/admissions.parquet",
    "his_transfers": "staging/his/transfers.parquet",
    "his_bills": "staging/his/bills.parquet",
    "lis_requests": "staging/lis/requests.parquet",
    "lis_results": "staging/lis/results.parquet",
    "emr_front_sheets": "staging/emr/front_sheets.parquet",
    "ris_exams": "staging/ris/exams.parquet",
    "pacs_studies": "staging/pacs/studies.parquet",
    "surgery_operations": "staging/surgery/operations.parquet",
    "insurance_settlements": "staging/insurance/settlements.parquet",
    "link_events": "link/events.parquet",
}

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

# A cost is the same when it differs by less than one fen (0.01 yuan); float sums of bill rows drift below it.
COST_TOLERANCE = 0.005


@dataclass(frozen=True)
class Counts:
    """What one check compared: records (or stays, persons, items) and how they came out."""

    compared: int
    agreeing: int
    disagreeing: int
    explained: int
    not_comparable: int


class DuckDBChecks:
    """The cross-system queries over one workspace, on one in-memory DuckDB connection.

    Args:
        workspace: The workspace folder holding ``staging/`` and ``link/``.
        threads: DuckDB threads (default: all cores).

    Raises:
        InputError: if a staged table or link output is missing.
    """

    def __init__(self, workspace: Path, *, threads: int | None = None) -> None:
        self.workspace = Path(workspace)
        # DuckDB itself rather than Ibis's backend: these are DuckDB SQL statements, and Arrow results come
        # straight from a relation without the extra copy a DB-API cursor makes.
        self.con = duckdb.connect()
        self.con.execute("SET enable_progress_bar = false")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        for view, relative in SOURCES.items():
            path = self.workspace / relative
            if not path.exists():
                raise InputError(
                    f"the cross-system checks need {relative}, which is missing; run `medspace run` (ingest "
                    "and link) on this workspace first",
                    file=str(path),
                )
            self.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM read_parquet('{_quoted(path)}')")
        # Every staged row's person and visit, keyed by lineage.
        self.execute(
            'CREATE OR REPLACE TEMP TABLE ev AS SELECT source_file, source_row, system, "table", record_key, '
            "person_id, visit_id, status, parent_missing, reason FROM link_events"
        )

    def execute(self, sql: str) -> None:
        self.con.execute(sql)

    def table(self, sql: str) -> pa.Table:
        return self.con.sql(sql).to_arrow_table()

    def rows(self, sql: str) -> list[dict[str, Any]]:
        return list(self.table(sql).to_pylist())

    def counts(self, sql: str) -> Counts:
        """Run a query returning one row with the five count columns."""
        row = self.rows(sql)[0]
        return Counts(
            compared=int(row["compared"] or 0),
            agreeing=int(row["agreeing"] or 0),
            disagreeing=int(row["disagreeing"] or 0),
            explained=int(row["explained"] or 0),
            not_comparable=int(row["not_comparable"] or 0),
        )

    def details(self, check: str, sql: str) -> pa.Table:
        """Run a detail query (columns as ``DETAIL_COLUMNS`` minus ``check``) and label it with the check."""
        table = self.table(f"SELECT '{check}' AS \"check\", * FROM ({sql})")
        return table.select(list(DETAIL_COLUMNS)).cast(DETAIL_SCHEMA)


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


# ---------------------------------------------------------------------------------------------------------
# 1. The same fact in two systems
# ---------------------------------------------------------------------------------------------------------

# One row per front sheet with the HIS admission rows of the same stay (inpatient number + admission count).
# HIS keeps dates only, so the front sheet's discharge time is compared as a date. A recalled discharge
# (出院召回, domain.md §1 item 7) leaves two HIS rows for one stay, the second flagged `recalled`.
DISCHARGE_STAYS = """
WITH his AS (
    SELECT inpatient_no, admission_count,
           max(discharge_date) AS last_discharge,
           count(*) AS his_rows,
           bool_or(coalesce(recalled, false)) AS has_recall,
           string_agg(strftime(discharge_date, '%Y-%m-%d'), ' -> ' ORDER BY discharge_date) AS his_dates,
           arg_max(_source_file, coalesce(recalled, false)::int * 1000000000 + _source_row) AS his_file,
           arg_max(_source_row, coalesce(recalled, false)::int * 1000000000 + _source_row) AS his_row,
           arg_max(visit_serial, coalesce(recalled, false)::int * 1000000000 + _source_row) AS his_key
    FROM his_admissions
    GROUP BY inpatient_no, admission_count
)
SELECT f._source_file AS fs_file, f._source_row AS fs_row,
       f.inpatient_no || '-' || f.admission_count AS fs_key,
       f.discharged_at, his.*,
       CASE
           WHEN his.inpatient_no IS NULL OR f.discharged_at IS NULL OR his.last_discharge IS NULL
               THEN 'not_comparable'
           WHEN his.has_recall THEN 'explained'
           WHEN CAST(f.discharged_at AS DATE) = his.last_discharge THEN 'agreeing'
           ELSE 'disagreeing'
       END AS outcome
FROM emr_front_sheets f
LEFT JOIN his USING (inpatient_no, admission_count)
"""


def discharge_date(q: DuckDBChecks) -> tuple[Counts, pa.Table]:
    q.execute(f"CREATE OR REPLACE TEMP TABLE discharge_stays AS {DISCHARGE_STAYS}")
    counts = q.counts(_COUNT_OUTCOMES.format(table="discharge_stays"))
    details = q.details(
        "discharge_date",
        """
        SELECT 'his' AS system, his_file AS file, his_row AS row, his_key AS key, 'discharge_date' AS field,
               his_dates AS value, 'emr' AS other_system,
               strftime(discharged_at, '%Y-%m-%d %H:%M:%S') AS other_value,
               CASE WHEN outcome = 'explained' THEN 'recalled discharge'
                    ELSE 'discharge date differs from the front sheet' END AS reason
        FROM discharge_stays WHERE outcome IN ('disagreeing', 'explained')
        """,
    )
    return counts, details


_COUNT_OUTCOMES = """
SELECT count(*) FILTER (WHERE outcome <> 'not_comparable') AS compared,
       count(*) FILTER (WHERE outcome = 'agreeing') AS agreeing,
       count(*) FILTER (WHERE outcome = 'disagreeing') AS disagreeing,
       count(*) FILTER (WHERE outcome = 'explained') AS explained,
       count(*) FILTER (WHERE outcome = 'not_comparable') AS not_comparable
FROM {table}
"""

# The diagnosis (by name) of every visit: an outpatient visit's registration, a stay's front sheet.
VISIT_DIAGNOSES = """
SELECT visit_id, arg_max(dx, n) AS dx FROM (
    SELECT visit_serial AS visit_id, diagnosis_name AS dx, count(*) AS n
    FROM his_registrations WHERE diagnosis_name IS NOT NULL GROUP BY ALL
    UNION ALL
    SELECT ev.visit_id, f.main_diagnosis_name, count(*)
    FROM emr_front_sheets f
    JOIN ev ON ev.source_file = f._source_file AND ev.source_row = f._source_row
    WHERE f.main_diagnosis_name IS NOT NULL AND ev.visit_id IS NOT NULL GROUP BY ALL
)
GROUP BY visit_id
"""

# A request's clinical diagnosis against the visit it names (its visit serial) and the visit the link stage
# placed it in. The named visit is the fact under test (domain.md §1 item 9: the only way back is request ->
# HIS visit -> diagnoses); the linked visit says whether the link stage already moved the request.
REQUEST_DIAGNOSES = """
SELECT r._source_file AS file, r._source_row AS row, r.request_no AS key, r.clinical_diagnosis AS dx,
       r.visit_serial AS carried_visit, ev.visit_id AS linked_visit, ev.status AS link_status,
       carried.dx AS carried_dx, linked.dx AS linked_dx,
       CASE
           WHEN r.clinical_diagnosis IS NULL OR (carried.dx IS NULL AND linked.dx IS NULL)
               THEN 'not_comparable'
           WHEN carried.dx IS NOT NULL AND carried.dx <> r.clinical_diagnosis THEN 'disagreeing'
           WHEN linked.dx IS NOT NULL AND linked.dx <> r.clinical_diagnosis THEN 'disagreeing'
           ELSE 'agreeing'
       END AS outcome
FROM lis_requests r
LEFT JOIN ev ON ev.source_file = r._source_file AND ev.source_row = r._source_row
LEFT JOIN visit_diagnoses carried ON carried.visit_id = r.visit_serial
LEFT JOIN visit_diagnoses linked ON linked.visit_id = ev.visit_id
"""


def request_diagnosis(q: DuckDBChecks) -> tuple[Counts, pa.Table]:
    q.execute(f"CREATE OR REPLACE TEMP TABLE visit_diagnoses AS {VISIT_DIAGNOSES}")
    q.execute(f"CREATE OR REPLACE TEMP TABLE request_diagnoses AS {REQUEST_DIAGNOSES}")
    counts = q.counts(_COUNT_OUTCOMES.format(table="request_diagnoses"))
    details = q.details(
        "request_diagnosis",
        """
        SELECT 'lis' AS system, file, row, key, 'clinical_diagnosis' AS field, dx AS value,
               CASE WHEN carried_visit LIKE 'ZY%' THEN 'emr' ELSE 'his' END AS other_system,
               coalesce(carried_dx, '-') || ' (named visit ' || coalesce(carried_visit, '-') || '); '
               || coalesce(linked_dx, '-') || ' (linked visit ' || coalesce(linked_visit, '-') || ')'
                   AS other_value,
               CASE
                   WHEN carried_dx IS NULL
                       THEN 'named visit not in the HIS export; the linked visit''s diagnosis differs'
                   WHEN carried_dx <> dx AND linked_dx = dx
                       THEN 'request filed against another visit: the named visit''s diagnosis differs, the '
                            || 'linked visit''s agrees'
                   WHEN carried_dx <> dx
                       THEN 'diagnosis differs from the named visit''s (and the linked visit''s)'
                   ELSE 'the link stage moved the request to a visit whose diagnosis differs'
               END AS reason
        FROM request_diagnoses WHERE outcome = 'disagreeing'
        """,
    )
    return counts, details


# The cost of each stay in three systems, by the link stage's visit: HIS bill rows of the inpatient setting
# summed (refunds are negative rows), the insurance settlement total, the front sheet total (D01).
STAY_COSTS = """
WITH bills AS (
    SELECT ev.visit_id, sum(b.amount) AS cost, count(*) AS n
    FROM his_bills b JOIN ev ON ev.source_file = b._source_file AND ev.source_row = b._source_row
    WHERE b.setting = 'inpatient' AND ev.visit_id IS NOT NULL
    GROUP BY ev.visit_id
), settlements AS (
    SELECT ev.visit_id, s._source_file AS file, s._source_row AS row, s.settlement_id AS key,
           s.total_cost AS cost
    FROM insurance_settlements s
    JOIN ev ON ev.source_file = s._source_file AND ev.source_row = s._source_row
    WHERE ev.visit_id IS NOT NULL
), sheets AS (
    SELECT ev.visit_id, f._source_file AS file, f._source_row AS row,
           f.inpatient_no || '-' || f.admission_count AS key, f.total_cost AS cost
    FROM emr_front_sheets f
    JOIN ev ON ev.source_file = f._source_file AND ev.source_row = f._source_row
    WHERE ev.visit_id IS NOT NULL
)
SELECT v.visit_id, bills.cost AS bill_cost,
       s.file AS s_file, s.row AS s_row, s.key AS s_key, s.cost AS s_cost,
       f.file AS f_file, f.row AS f_row, f.key AS f_key, f.cost AS f_cost
FROM (SELECT visit_id FROM bills UNION SELECT visit_id FROM settlements UNION SELECT visit_id FROM sheets) v
LEFT JOIN bills USING (visit_id)
LEFT JOIN settlements s USING (visit_id)
LEFT JOIN sheets f USING (visit_id)
"""


def _cost_pair(q: DuckDBChecks, check: str, cost: str, system: str, prefix: str) -> tuple[Counts, pa.Table]:
    """One system's stay cost (settlement or front sheet) against the HIS bills of the same stay."""
    outcome = f"""
        CASE WHEN bill_cost IS NULL OR {cost} IS NULL THEN 'not_comparable'
             WHEN abs(bill_cost - {cost}) <= {COST_TOLERANCE} THEN 'agreeing'
             ELSE 'disagreeing' END"""
    present = f"({prefix}_file IS NOT NULL OR bill_cost IS NOT NULL)"
    counts = q.counts(
        _COUNT_OUTCOMES.format(table=f"(SELECT *, {outcome} AS outcome FROM stay_costs WHERE {present})")
    )
    third = "f_cost" if prefix == "s" else "s_cost"
    details = q.details(
        check,
        f"""
        SELECT '{system}' AS system, {prefix}_file AS file, {prefix}_row AS row, {prefix}_key AS key,
               'total_cost' AS field, printf('%.2f', {cost}) AS value, 'his' AS other_system,
               printf('%.2f', bill_cost) AS other_value,
               'total differs from the HIS bills of the stay by ' || printf('%.2f', {cost} - bill_cost)
               || CASE WHEN {third} IS NOT NULL AND abs({third} - bill_cost) <= {COST_TOLERANCE}
                       THEN ' (the ' || '{"front sheet" if prefix == "s" else "settlement"}'
                            || ' agrees with the bills)'
                       ELSE '' END AS reason
        FROM stay_costs
        WHERE bill_cost IS NOT NULL AND {cost} IS NOT NULL AND abs(bill_cost - {cost}) > {COST_TOLERANCE}
        """,
    )
    return counts, details


def settlement_cost(q: DuckDBChecks) -> tuple[Counts, pa.Table]:
    q.execute(f"CREATE OR REPLACE TEMP TABLE stay_costs AS {STAY_COSTS}")
    return _cost_pair(q, "settlement_cost", "s_cost", "insurance", "s")


def front_sheet_cost(q: DuckDBChecks) -> tuple[Counts, pa.Table]:
    return _cost_pair(q, "front_sheet_cost", "f_cost", "emr", "f")


# Identity attributes as each system's own patient index holds them, one row per staged record with its
# linked person. LIS and RIS keep an age at the event instead of a birth date; surgery keeps no birth date.
# The resident ID (HIS master index, front sheet, insured person number = resident ID) carries the birth date
# and sex when its GB 11643 check character is right (domain.md §4).
IDENTITY_RECORDS = """
WITH raw AS (
    SELECT 'his' AS system, _source_file AS file, _source_row AS row, his_patient_id AS key,
           name, sex, birth_date, NULL::BIGINT AS age_years, NULL::DATE AS age_at, resident_id
    FROM his_patients
    UNION ALL
    SELECT 'emr', _source_file, _source_row, inpatient_no || '-' || admission_count,
           name, sex, birth_date, NULL, NULL, resident_id
    FROM emr_front_sheets
    UNION ALL
    SELECT 'insurance', _source_file, _source_row, settlement_id, name, sex, birth_date, NULL, NULL,
           insured_id
    FROM insurance_settlements
    UNION ALL
    SELECT 'pacs', _source_file, _source_row, study_uid, name, sex, birth_date, NULL, NULL, NULL
    FROM pacs_studies
    UNION ALL
    SELECT 'lis', _source_file, _source_row, request_no, name, sex, NULL, age_years, CAST(ordered_at AS DATE),
           NULL
    FROM lis_requests
    UNION ALL
    SELECT 'ris', _source_file, _source_row, accession_no, name, sex, NULL, age_years,
           CAST(coalesce(requested_at, performed_at) AS DATE), NULL
    FROM ris_exams
    UNION ALL
    SELECT 'surgery', _source_file, _source_row, operation_id, name, sex, NULL, NULL, NULL, NULL
    FROM surgery_operations
), checked AS (
    SELECT raw.*, ev.person_id,
           -- GB 11643-1999: weights 7,9,10,5,8,4,2,1,6,3,7,9,10,5,8,4,2;
           -- check character "10X98765432"[sum mod 11].
           regexp_full_match(coalesce(resident_id, ''), '[0-9]{17}[0-9X]')
           AND substr('10X98765432', CAST(list_sum(list_transform(range(1, 18), lambda i:
                   coalesce(TRY_CAST(substr(resident_id, i, 1) AS INTEGER), 0)
                   * [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2][i])) % 11 + 1 AS BIGINT), 1)
               = substr(resident_id, 18, 1) AS id_valid
    FROM raw LEFT JOIN ev ON ev.source_file = raw.file AND ev.source_row = raw.row
)
SELECT *,
       CASE WHEN id_valid THEN try_strptime(substr(resident_id, 7, 8), '%Y%m%d')::DATE END AS id_birth_date,
       CASE WHEN id_valid THEN
           CASE WHEN TRY_CAST(substr(resident_id, 17, 1) AS INTEGER) % 2 = 1 THEN 'M' ELSE 'F' END
       END AS id_sex
FROM checked
"""

# One identity attribute compared across the systems that hold it for the same linked person. The person's
# reference value is the one their checksum-valid resident IDs give (birth date, sex) when those agree;
# otherwise the value most systems hold (each system votes once per distinct value, so a system with many
# rows for the person does not outvote the others). A typo made in one system's patient index shows on all
# that system's rows for the person (docs/synthetic-hospital.md), so every such row is listed.
IDENTITY_ATTRIBUTE = """
WITH recs AS (
    SELECT system, file, row, key, person_id, CAST({value} AS VARCHAR) AS value, {id_value} AS id_value
    FROM identity_records WHERE person_id IS NOT NULL
), by_id AS (
    SELECT person_id, min(id_value) AS id_ref FROM recs WHERE id_value IS NOT NULL
    GROUP BY person_id HAVING count(DISTINCT id_value) = 1
), votes AS (
    SELECT person_id, value, count(DISTINCT system) AS systems, string_agg(DISTINCT system, '+') AS holders
    FROM recs WHERE value IS NOT NULL GROUP BY person_id, value
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY person_id ORDER BY systems DESC, value) AS rank,
           lead(systems) OVER (PARTITION BY person_id ORDER BY systems DESC, value) AS runner_up,
           count(*) OVER (PARTITION BY person_id) AS distinct_values,
           sum(systems) OVER (PARTITION BY person_id) AS votes
    FROM votes
), per_person AS (
    SELECT r.person_id, r.distinct_values, r.votes,
           CASE WHEN r.runner_up IS NULL OR r.systems > r.runner_up THEN r.value END AS majority,
           r.holders
    FROM ranked r WHERE rank = 1
), systems_per_person AS (
    SELECT person_id, count(DISTINCT system) AS systems FROM recs WHERE value IS NOT NULL GROUP BY person_id
)
SELECT recs.system, recs.file, recs.row, recs.key, recs.person_id, recs.value,
       coalesce(by_id.id_ref, p.majority) AS reference,
       CASE WHEN by_id.id_ref IS NOT NULL THEN 'resident ID' ELSE p.holders END AS basis,
       CASE
           WHEN recs.value IS NULL THEN 'not_comparable'
           WHEN by_id.id_ref IS NULL AND coalesce(s.systems, 0) < 2 THEN 'not_comparable'
           WHEN coalesce(by_id.id_ref, p.majority) IS NULL THEN 'disagreeing'
           WHEN recs.value = coalesce(by_id.id_ref, p.majority) THEN 'agreeing'
           ELSE 'disagreeing'
       END AS outcome
FROM recs
LEFT JOIN by_id USING (person_id)
LEFT JOIN per_person p USING (person_id)
LEFT JOIN systems_per_person s USING (person_id)
"""

# Age at the event (LIS, RIS) against the person's reference birth date: whole years, as a birthday not yet
# reached that year has not added one.
AGE_RECORDS = """
WITH birth AS (SELECT DISTINCT person_id, reference FROM identity_birth_date WHERE reference IS NOT NULL)
SELECT r.system, r.file, r.row, r.key, r.person_id, CAST(r.age_years AS VARCHAR) AS value,
       CAST(date_diff('year', CAST(b.reference AS DATE), r.age_at)
            - CASE WHEN strftime(r.age_at, '%m%d') < strftime(CAST(b.reference AS DATE), '%m%d')
                   THEN 1 ELSE 0 END
            AS VARCHAR) AS reference,
       'age at the event from the birth date (' || b.reference || ')' AS basis
FROM identity_records r JOIN birth b USING (person_id)
WHERE r.age_years IS NOT NULL AND r.age_at IS NOT NULL
"""


def identity(q: DuckDBChecks, attribute: str) -> tuple[Counts, pa.Table]:
    """Agreement of one identity attribute (``name``, ``sex``, ``birth_date``) across systems per person.

    For ``birth_date`` the ages LIS and RIS record at the event are compared with the reference birth date
    too, so a birth-date typo in those systems' patient indexes shows.
    """
    q.execute(f"CREATE TEMP TABLE IF NOT EXISTS identity_records AS {IDENTITY_RECORDS}")
    id_value = {"birth_date": "CAST(id_birth_date AS VARCHAR)", "sex": "id_sex"}.get(attribute, "NULL")
    table = f"identity_{attribute}"
    q.execute(
        f"CREATE OR REPLACE TEMP TABLE {table} AS "
        + IDENTITY_ATTRIBUTE.format(value=attribute, id_value=id_value)
    )
    source = f"(SELECT *, '{attribute}' AS field FROM {table})"
    if attribute == "birth_date":
        q.execute(
            f"""CREATE OR REPLACE TEMP TABLE identity_age AS
            SELECT *, CASE WHEN reference IS NULL THEN 'not_comparable' WHEN value = reference THEN 'agreeing'
                           ELSE 'disagreeing' END AS outcome
            FROM ({AGE_RECORDS})"""
        )
        source = (
            "(SELECT system, file, row, key, person_id, value, reference, basis, outcome, "
            f"'{attribute}' AS field "
            f"FROM {table} WHERE NOT (value IS NULL AND system IN ('lis', 'ris', 'surgery')) "
            "UNION ALL SELECT system, file, row, key, person_id, value, reference, basis, outcome, "
            "'age_years' FROM identity_age)"
        )
    counts = q.counts(_COUNT_OUTCOMES.format(table=source))
    details = q.details(
        f"identity_{attribute}",
        f"""
        SELECT system, file, row, key, field, value, basis AS other_system, reference AS other_value,
               CASE WHEN reference IS NULL THEN 'systems disagree with no majority; the person''s systems '
                                                 || 'split evenly'
                    WHEN basis = 'resident ID' THEN 'differs from the person''s checksum-valid resident ID'
                    WHEN field = 'age_years' THEN 'age at the event does not match the person''s birth date'
                    ELSE 'differs from the value most of the person''s systems hold' END AS reason
        FROM {source} WHERE outcome = 'disagreeing'
        """,
    )
    return counts, details


# ---------------------------------------------------------------------------------------------------------
# 2. Orphan and link rates per child table and parent system
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
FROM ev WHERE status = 'orphan' AND system = '{system}' AND "table" = '{table}'
"""


# ---------------------------------------------------------------------------------------------------------
# 3. Units and reference ranges per lab test
# ---------------------------------------------------------------------------------------------------------

UNITS_SEEN = """
SELECT item_code, any_value(item_name) AS item_name, unit, count(*) AS rows,
       string_agg(DISTINCT lab_site, ',' ORDER BY lab_site) AS lab_sites
FROM lis_results WHERE item_code IS NOT NULL GROUP BY item_code, unit ORDER BY item_code, rows DESC
"""

RANGES_SEEN = """
SELECT item_code, lab_site, unit, reference_range, count(*) AS rows
FROM lis_results WHERE item_code IS NOT NULL AND reference_range IS NOT NULL
GROUP BY ALL ORDER BY item_code, lab_site, unit, rows DESC
"""


def unit_outcomes(q: DuckDBChecks, verdicts: list[tuple[str, str, str, str]]) -> tuple[Counts, pa.Table]:
    """Label every result row by the verdict on its (test, unit): agreeing, explained or disagreeing.

    Args:
        verdicts: ``(item_code, unit, outcome, reason)`` for every unit other than the test's main one.
    """
    values = ", ".join(
        f"({_literal(code)}, {_literal(unit)}, {_literal(outcome)}, {_literal(reason)})"
        for code, unit, outcome, reason in verdicts
    )
    q.execute(
        "CREATE OR REPLACE TEMP TABLE unit_verdicts (item_code VARCHAR, unit VARCHAR, outcome VARCHAR, "
        "reason VARCHAR)"
    )
    if values:
        q.execute(f"INSERT INTO unit_verdicts VALUES {values}")
    source = """(SELECT r.*, CASE WHEN r.unit IS NULL THEN 'not_comparable'
                                ELSE coalesce(v.outcome, 'agreeing') END AS outcome, v.reason
                 FROM lis_results r LEFT JOIN unit_verdicts v ON v.item_code = r.item_code AND v.unit = r.unit
                 WHERE r.item_code IS NOT NULL)"""
    counts = q.counts(_COUNT_OUTCOMES.format(table=source))
    details = q.details(
        "lab_units",
        f"""
        SELECT 'lis' AS system, _source_file AS file, _source_row AS row, barcode || '-' || item_code AS key,
               'unit' AS field, unit AS value, lab_site AS other_system, NULL AS other_value, reason
        FROM {source} WHERE outcome IN ('disagreeing', 'explained')
        """,
    )
    return counts, details


def _literal(text: str | None) -> str:
    return "NULL" if text is None else "'" + text.replace("'", "''") + "'"


# ---------------------------------------------------------------------------------------------------------
# 4. Code systems and value sets
# ---------------------------------------------------------------------------------------------------------

# Diagnosis codes each system writes, with the edition the system is meant to use: HIS and the front sheet
# the national clinical edition 2.0 (国临版), the settlement list the insurance edition 2.0 (医保版).
# Codes of the two editions and of the older ones share one shape (ICD-10 category, `.`, three characters,
# an optional `x` extension), so the shape alone cannot say which edition a code is in. The edition is read
# from the systems themselves: per diagnosis name, the code most rows of the clinical-edition systems use is
# that name's clinical code, the code most settlement rows use its insurance code; any other code is in
# another (legacy) edition.
DIAGNOSIS_CODES = """
WITH codes AS (
    SELECT 'his' AS system, _source_file AS file, _source_row AS row, visit_serial AS key,
           'diagnosis_code' AS field, diagnosis_code AS code, diagnosis_name AS name, 'clinical' AS expected
    FROM his_registrations WHERE diagnosis_code IS NOT NULL
    UNION ALL
    SELECT 'emr', _source_file, _source_row, inpatient_no || '-' || admission_count, 'main_diagnosis_code',
           main_diagnosis_code, main_diagnosis_name, 'clinical'
    FROM emr_front_sheets WHERE main_diagnosis_code IS NOT NULL
    UNION ALL
    SELECT 'insurance', _source_file, _source_row, settlement_id, 'main_diagnosis_code', main_diagnosis_code,
           main_diagnosis_name, 'insurance'
    FROM insurance_settlements WHERE main_diagnosis_code IS NOT NULL
), reference AS (
    SELECT name, expected, arg_max(code, n) AS code
    FROM (SELECT name, expected, code, count(*) AS n FROM codes WHERE name IS NOT NULL GROUP BY ALL)
    GROUP BY name, expected
)
SELECT c.*, clinical.code AS clinical_code, insurance.code AS insurance_code,
       CASE WHEN c.code = clinical.code THEN 'clinical'
            WHEN c.code = insurance.code THEN 'insurance'
            WHEN c.name IS NULL THEN NULL
            ELSE 'other' END AS edition,
       -- Shapes of ICD-10 codes in the Chinese editions (domain.md §1 item 2): dagger-asterisk pairs
       -- (`E11.301+H36.0*`), extension codes (`E14.900x001`), category codes (`E11.900`),
       -- sub-codes (`E11.901`).
       CASE WHEN regexp_full_match(c.code,
                     '[A-Z][0-9]{{2}}\\.[0-9x]{{3}}(x[0-9]{{3}})?\\+[A-Z][0-9]{{2}}\\.[0-9x]\\*')
                THEN 'dagger-asterisk pair'
            WHEN regexp_full_match(c.code, '[A-Z][0-9]{{2}}\\.[0-9x][0-9]{{2}}x[0-9]{{3}}')
                THEN 'extension (x001)'
            WHEN regexp_full_match(c.code, '[A-Z][0-9]{{2}}\\.[0-9x][0-9]0') THEN 'category (E11.900)'
            WHEN regexp_full_match(c.code, '[A-Z][0-9]{{2}}\\.[0-9x][0-9][1-9]') THEN 'sub-code (E11.901)'
            ELSE 'other shape' END AS shape
FROM codes c
LEFT JOIN reference clinical ON clinical.name = c.name AND clinical.expected = 'clinical'
LEFT JOIN reference insurance ON insurance.name = c.name AND insurance.expected = 'insurance'
"""


def diagnosis_editions(q: DuckDBChecks) -> tuple[Counts, pa.Table, list[dict[str, Any]]]:
    q.execute(f"CREATE OR REPLACE TEMP TABLE diagnosis_codes AS {DIAGNOSIS_CODES.format()}")
    source = """(SELECT *, CASE WHEN edition IS NULL THEN 'not_comparable'
                                WHEN edition = expected THEN 'agreeing'
                                ELSE 'disagreeing' END AS outcome FROM diagnosis_codes)"""
    counts = q.counts(_COUNT_OUTCOMES.format(table=source))
    details = q.details(
        "diagnosis_code_edition",
        f"""
        SELECT system, file, row, key, field, code AS value,
               CASE expected WHEN 'clinical' THEN 'national clinical edition' ELSE 'insurance edition' END
                   AS other_system,
               CASE expected WHEN 'clinical' THEN clinical_code ELSE insurance_code END AS other_value,
               CASE edition
                   WHEN 'insurance'
                       THEN 'coded in the insurance edition where the national clinical is expected'
                   WHEN 'clinical'
                       THEN 'coded in the national clinical edition where the insurance is expected'
                   ELSE 'coded in another (legacy) edition' END AS reason
        FROM {source} WHERE outcome = 'disagreeing'
        """,
    )
    profile = q.rows(
        "SELECT system, expected, coalesce(edition, 'unknown') AS edition, shape, count(*) AS rows "
        "FROM diagnosis_codes GROUP BY ALL ORDER BY system, edition, shape"
    )
    return counts, details, profile


# B34C discharge mode, national value set (domain.md §1): 1 ordered discharge, 2 ordered transfer to a
# hospital, 3 ordered transfer to a community health centre, 4 against advice, 5 death, 9 other.
DISCHARGE_MODE_VALUE_SET = ("1", "2", "3", "4", "5", "9")

DISCHARGE_MODES = """
WITH his AS (
    SELECT inpatient_no, admission_count, arg_max(discharge_mode, _source_row) AS his_mode
    FROM his_admissions GROUP BY ALL
)
SELECT 'emr' AS system, f._source_file AS file, f._source_row AS row,
       f.inpatient_no || '-' || f.admission_count AS key, f.discharge_mode AS value, 'his' AS other_system,
       his.his_mode AS other_value
FROM emr_front_sheets f LEFT JOIN his USING (inpatient_no, admission_count)
UNION ALL
SELECT 'his', _source_file, _source_row, visit_serial, discharge_mode, NULL, NULL FROM his_admissions
"""


def discharge_modes(q: DuckDBChecks) -> tuple[Counts, pa.Table]:
    allowed = ", ".join(_literal(code) for code in DISCHARGE_MODE_VALUE_SET)
    source = f"""(SELECT *, CASE WHEN value IS NULL THEN 'not_comparable' WHEN value IN ({allowed})
                  THEN 'agreeing' ELSE 'disagreeing' END AS outcome FROM ({DISCHARGE_MODES}))"""
    counts = q.counts(_COUNT_OUTCOMES.format(table=source))
    details = q.details(
        "discharge_mode_value_set",
        f"""
        SELECT system, file, row, key, 'discharge_mode' AS field, value, other_system, other_value,
               CASE WHEN value = '6'
                        THEN 'discharge mode 6 is outside the national value set (B34C); a template '
                             || 'writes ''other'' as 6 instead of 9'
                    ELSE 'discharge mode outside the national value set (B34C: 1, 2, 3, 4, 5, 9)'
               END AS reason
        FROM {source} WHERE outcome = 'disagreeing'
        """,
    )
    return counts, details


# Department codes in every system that writes them. Full codes are two letters (the department's class,
# e.g. NK internal medicine, WK surgery) and four digits; some HIS exports strip the letters (domain.md §1
# item 4), which leaves a code that can stand for several departments.
DEPARTMENT_CODES = """
WITH codes AS (
    SELECT 'his' AS system, _source_file AS file, _source_row AS row, visit_serial AS key,
           'department_code' AS field, department_code AS code FROM his_registrations
    UNION ALL SELECT 'his', _source_file, _source_row, visit_serial, 'admit_department_code',
           admit_department_code FROM his_admissions
    UNION ALL SELECT 'his', _source_file, _source_row, visit_serial, 'discharge_department_code',
           discharge_department_code FROM his_admissions
    UNION ALL SELECT 'his', _source_file, _source_row, transfer_id, 'from_department_code',
           from_department_code FROM his_transfers
    UNION ALL SELECT 'his', _source_file, _source_row, transfer_id, 'to_department_code',
           to_department_code FROM his_transfers
    UNION ALL SELECT 'emr', _source_file, _source_row, inpatient_no || '-' || admission_count,
           'admit_department_code', admit_department_code FROM emr_front_sheets
    UNION ALL SELECT 'emr', _source_file, _source_row, inpatient_no || '-' || admission_count,
           'discharge_department_code', discharge_department_code FROM emr_front_sheets
    UNION ALL SELECT 'surgery', _source_file, _source_row, operation_id, 'department_code', department_code
           FROM surgery_operations
), full_codes AS (
    SELECT DISTINCT code, regexp_extract(code, '[0-9]+$') AS digits FROM codes
    WHERE regexp_full_match(code, '[A-Z]{2}[0-9]{4}')
)
SELECT c.*,
       CASE WHEN c.code IS NULL THEN 'not_comparable'
            WHEN regexp_full_match(c.code, '[A-Z]{2}[0-9]{4}') THEN 'agreeing'
            ELSE 'disagreeing' END AS outcome,
       (SELECT string_agg(f.code, ' or ' ORDER BY f.code) FROM full_codes f WHERE f.digits = c.code)
           AS candidates
FROM codes c
"""


def department_prefixes(q: DuckDBChecks) -> tuple[Counts, pa.Table, list[dict[str, Any]]]:
    q.execute(f"CREATE OR REPLACE TEMP TABLE department_codes AS {DEPARTMENT_CODES}")
    counts = q.counts(_COUNT_OUTCOMES.format(table="department_codes"))
    details = q.details(
        "department_code_prefix",
        """
        SELECT system, file, row, key, field, code AS value, NULL AS other_system, candidates AS other_value,
               CASE WHEN regexp_full_match(code, '[0-9]+')
                    THEN 'department code without its letter prefix'
                         || CASE WHEN candidates LIKE '% or %' THEN '; ambiguous between ' || candidates
                                 WHEN candidates IS NOT NULL THEN '; full code ' || candidates
                                 ELSE '; no full code with these digits seen' END
                    ELSE 'department code in an unknown shape' END AS reason
        FROM department_codes WHERE outcome = 'disagreeing'
        """,
    )
    per_table = q.rows(
        "SELECT system, file, field, count(*) AS rows, count(*) FILTER (WHERE outcome = 'disagreeing') "
        "AS without_prefix FROM department_codes GROUP BY ALL ORDER BY system, file, field"
    )
    return counts, details, per_table
