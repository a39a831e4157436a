"""Checks on how each system holds identities and formats: a person's name, sex and birth date across
systems, resident IDs that fail GB 11643, missing phones, one person under several numbers of the site's
patient index, addresses that differ between systems for the same person, and date columns written in more
than one format.

They run on the cross-system checks' DuckDB connection (its views of the canonical and linked tables). The
resident-ID rule runs in Python over the distinct IDs only, reusing medspace's one GB 11643 check.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from medspace.core import check_resident_id

from ._cross_system_duckdb import _COUNT_OUTCOMES, DETAIL_SCHEMA, Counts, DuckDBChecks, NotApplicable, _ev

# Identity attributes as each system's patient records hold them, one row per staged record with its linked
# person. Systems that keep an age at the record instead of a birth date give age_years and the record's date.
# The resident ID carries the birth date and sex when its GB 11643 check character is right (domain.md §4).
IDENTITY_RECORDS = f"""
WITH checked AS (
    SELECT p.system, p._source_file AS file, p._source_row AS row, p.record_key AS key, p.name, p.sex,
           p.birth_date, p.age_years,
           CAST(coalesce(p.registered_date, same.event_at, latest.event_at) AS DATE) AS age_at,
           p.resident_id, ev.person_id,
           -- GB 11643-1999: weights 7,9,10,5,8,4,2,1,6,3,7,9,10,5,8,4,2;
           -- check character "10X98765432"[sum mod 11].
           regexp_full_match(coalesce(p.resident_id, ''), '[0-9]{{17}}[0-9X]')
           AND substr('10X98765432', CAST(list_sum(list_transform(range(1, 18), lambda i:
                   coalesce(TRY_CAST(substr(p.resident_id, i, 1) AS INTEGER), 0)
                   * [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2][i])) % 11 + 1 AS BIGINT), 1)
               = substr(p.resident_id, 18, 1) AS id_valid
    FROM patient p LEFT JOIN ev ON {_ev("p", "patient")}
    LEFT JOIN record_times same ON same.system = p.system AND same.record_key = p.record_key
    LEFT JOIN (SELECT system, patient_key, max(event_at) AS event_at FROM record_times GROUP BY ALL) latest
        ON latest.system = p.system AND latest.patient_key = p.patient_key AND p.age_years IS NOT NULL
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
# that system's rows for the person, so every such row is listed.
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
           lead(systems) OVER (PARTITION BY person_id ORDER BY systems DESC, value) AS runner_up
    FROM votes
), per_person AS (
    SELECT r.person_id,
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

# Age at the record against the person's reference birth date: whole years, as a birthday not yet reached
# that year has not added one.
AGE_RECORDS = """
WITH birth AS (SELECT DISTINCT person_id, reference FROM identity_birth_date WHERE reference IS NOT NULL)
SELECT r.system, r.file, r.row, r.key, r.person_id, CAST(r.age_years AS VARCHAR) AS value,
       CAST(date_diff('year', CAST(b.reference AS DATE), r.age_at)
            - CASE WHEN strftime(r.age_at, '%m%d') < strftime(CAST(b.reference AS DATE), '%m%d')
                   THEN 1 ELSE 0 END
            AS VARCHAR) AS reference,
       'age at the record from the birth date (' || b.reference || ')' AS basis
FROM identity_records r JOIN birth b USING (person_id)
WHERE r.age_years IS NOT NULL AND r.age_at IS NOT NULL
"""

IDENTITY_ATTRIBUTES = ("name", "sex", "birth_date")

# When a record was made, to date an age kept instead of a birth date: the patient record's registration
# date, else the event time of the same system's record it came with (a lab order, an imaging exam, an
# encounter sharing its record key), else the patient's latest such event in that system.
_EVENT_TIMES = (
    ("encounter", "start_at"),
    ("lab_order", "ordered_at"),
    ("imaging_exam", "coalesce(requested_at, performed_at)"),
)


def _record_times(q: DuckDBChecks) -> None:
    parts = [
        f'SELECT system, record_key, patient_key, {column} AS event_at FROM "{table}"'
        for table, column in _EVENT_TIMES
        if q.rows_in.get(table)
    ]
    q.execute(
        "CREATE TEMP TABLE IF NOT EXISTS record_times AS "
        + (
            " UNION ALL ".join(parts)
            if parts
            else "SELECT NULL::VARCHAR AS system, NULL::VARCHAR AS record_key, NULL::VARCHAR AS patient_key, "
            "NULL::TIMESTAMP AS event_at WHERE false"
        )
    )


def identity(q: DuckDBChecks, attribute: str) -> tuple[Counts, pa.Table]:
    """Agreement of one identity attribute (``name``, ``sex``, ``birth_date``) across systems per person.

    For ``birth_date`` the ages systems record at the record's date are compared with the reference birth
    date too, so a birth-date typo in those systems shows.
    """
    if attribute not in IDENTITY_ATTRIBUTES:
        raise ValueError(f"no identity attribute {attribute!r}; known: {', '.join(IDENTITY_ATTRIBUTES)}")
    q.require("patient")
    if len(q.systems_with("patient", attribute) + q.systems_with("patient", "resident_id")) < 2:
        raise NotApplicable(f"fewer than two systems at this site hold a patient's {attribute}")
    _record_times(q)
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
        # a record that keeps an age instead of a birth date is compared by its age, not counted twice
        source = (
            "(SELECT t.system, t.file, t.row, t.key, t.person_id, t.value, t.reference, t.basis, t.outcome, "
            f"'{attribute}' AS field FROM {table} t "
            "WHERE NOT (t.value IS NULL AND EXISTS (SELECT 1 FROM identity_age a WHERE a.system = t.system "
            "AND a.file = t.file AND a.row = t.row AND a.key = t.key)) "
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
                    WHEN field = 'age_years' THEN 'age at the record does not match the person''s birth date'
                    ELSE 'differs from the value most of the person''s systems hold' END AS reason
        FROM {source} WHERE outcome = 'disagreeing'
        """,
    )
    return counts, details


# Resident IDs as every system's patient records write them, with the row they sit on.
_RESIDENT_IDS = """
SELECT system, _source_file AS file, _source_row AS row, record_key AS key, 'resident_id' AS field,
       resident_id AS value
FROM patient WHERE resident_id IS NOT NULL
"""


def resident_ids(q: DuckDBChecks) -> tuple[Counts, pa.Table]:
    """Resident IDs that fail the GB 11643 checksum, birth date or region rule."""
    q.require_values("patient", "resident_id")
    q.execute(f"CREATE OR REPLACE TEMP TABLE resident_ids AS {_RESIDENT_IDS}")
    distinct = q.table("SELECT DISTINCT value FROM resident_ids").column("value").to_pylist()
    invalid = [v for v in distinct if not check_resident_id(v).valid]
    q.con.register("invalid_resident_ids", pa.table({"value": pa.array(invalid, pa.string())}))
    counts = q.counts(
        "SELECT count(*) AS compared, count(*) FILTER (WHERE i.value IS NULL) AS agreeing, "
        "count(i.value) AS disagreeing, 0 AS explained, 0 AS not_comparable "
        "FROM resident_ids r LEFT JOIN invalid_resident_ids i USING (value)"
    )
    details = q.details(
        "resident_id_valid",
        "SELECT system, file, row, key, field, value, NULL AS other_system, NULL AS other_value, "
        "'fails GB 11643 (checksum, birth date or region)' AS reason "
        "FROM resident_ids JOIN invalid_resident_ids USING (value)",
    )
    return counts, details


# Patient records of the exports that keep phone numbers at all (a system's raw table of which some rows hold
# one): an export that never records a phone, such as a note's patient reference, is not missing them.
_PHONES = """
WITH holders AS (SELECT system, _source_table FROM patient GROUP BY ALL HAVING count(phone) > 0)
SELECT p.system, p._source_file AS file, p._source_row AS row, p.record_key AS key, p.phone
FROM patient p JOIN holders h ON h.system = p.system AND h._source_table IS NOT DISTINCT FROM p._source_table
"""


def phones(q: DuckDBChecks) -> tuple[Counts, pa.Table]:
    """Patient records without a phone number, in every export that records phones."""
    q.require_values("patient", "phone")
    counts = q.counts(
        f"SELECT count(*) AS compared, count(phone) AS agreeing, count(*) - count(phone) AS disagreeing, "
        f"0 AS explained, 0 AS not_comparable FROM ({_PHONES})",
    )
    details = q.details(
        "phone_present",
        f"SELECT system, file, row, key, 'phone' AS field, NULL AS value, NULL AS other_system, "
        f"NULL AS other_value, 'no phone number' AS reason FROM ({_PHONES}) WHERE phone IS NULL",
    )
    return counts, details


# Each patient record of the site's patient index (site.json) with the person the link stage found for it.
_INDEX_PERSONS = """
SELECT p.system, p._source_file AS file, p._source_row AS row, p.patient_key AS key, e.person_id
FROM patient p JOIN ev e ON e."table" = 'patient' AND e.system = p.system AND e.record_key = p.record_key
WHERE e.person_id IS NOT NULL AND p.system = $index
"""


def patient_numbers(q: DuckDBChecks) -> tuple[Counts, pa.Table]:
    """Persons registered in the patient index under more than one patient number (domain.md §1.1)."""
    index = q.patient_index
    if index is None:
        raise NotApplicable("the site declares no patient index (site.json patient_index)")
    q.require("patient")
    if index not in q.systems_of("patient"):
        raise NotApplicable(f"the patient index {index} has no patient records at this site")
    params = {"index": index}
    counts = q.counts(
        f"WITH per AS (SELECT person_id, count(DISTINCT key) AS n FROM ({_INDEX_PERSONS}) "
        "GROUP BY person_id) "
        "SELECT count(*) AS compared, count(*) FILTER (WHERE n = 1) AS agreeing, "
        "count(*) FILTER (WHERE n > 1) AS disagreeing, 0 AS explained, 0 AS not_comparable FROM per",
        params,
    )
    details = q.details(
        "patient_number_unique",
        f"WITH h AS ({_INDEX_PERSONS}), per AS (SELECT person_id FROM h GROUP BY person_id "
        "HAVING count(DISTINCT key) > 1) "
        "SELECT h.system, h.file, h.row, h.key, 'patient_key' AS field, h.person_id AS value, "
        "NULL AS other_system, NULL AS other_value, 'one person, several patient numbers in the patient "
        "index' AS reason FROM h JOIN per USING (person_id)",
        params,
    )
    return counts, details


# Addresses normalised the way people write them differently: without the province/city prefix and with
# the district suffix (区 / 新区) dropped (GB/T 2260 administrative divisions).
_NORMALISED = (
    "regexp_replace(regexp_replace({col}, '^(上海市|[^省市]+省)?([^市]+市)?', ''), '(新区|区)', '', 'g')"
)
# Every patient record with an address against the address another system, ahead of it in the site's
# precedence, holds for the same person (one comparison per record and other system).
_ADDRESSES = f"""
WITH rec AS (
    SELECT p.system, e.person_id, p._source_file AS file, p._source_row AS row, p.record_key AS key, p.address
    FROM patient p JOIN ev e ON e."table" = 'patient' AND e.system = p.system AND e.record_key = p.record_key
    WHERE e.person_id IS NOT NULL AND p.address IS NOT NULL
), per_system AS (
    SELECT person_id, system, any_value(address ORDER BY row) AS address FROM rec GROUP BY person_id, system
)
SELECT a.*, b.system AS other_system, b.address AS other_address,
       CASE WHEN a.address = b.address THEN 'agreeing'
            WHEN {_NORMALISED.format(col="a.address")} = {_NORMALISED.format(col="b.address")}
                THEN 'explained'
            ELSE 'disagreeing' END AS outcome
FROM rec a JOIN per_system b ON b.person_id = a.person_id AND b.system <> a.system
JOIN precedence pa ON pa.system = a.system
JOIN precedence pb ON pb.system = b.system
WHERE pa.rank > pb.rank
"""


def addresses(q: DuckDBChecks) -> tuple[Counts, pa.Table]:
    """The same person's address in every pair of systems: equal, a writing variant, or different."""
    q.require_values("patient", "address")
    if len(q.systems_with("patient", "address")) < 2:
        raise NotApplicable("fewer than two systems at this site hold a patient's address")
    counts = q.counts(
        f"SELECT count(*) AS compared, count(*) FILTER (WHERE outcome = 'agreeing') AS agreeing, "
        f"count(*) FILTER (WHERE outcome = 'disagreeing') AS disagreeing, "
        f"count(*) FILTER (WHERE outcome = 'explained') AS explained, 0 AS not_comparable FROM ({_ADDRESSES})"
    )
    details = q.details(
        "address_agreement",
        "SELECT system, file, row, key, 'address' AS field, address AS value, "
        "other_system, other_address AS other_value, CASE outcome WHEN 'explained' "
        "THEN 'written differently (prefix or district suffix)' ELSE 'different address' END AS reason "
        f"FROM ({_ADDRESSES}) "
        "WHERE outcome <> 'agreeing'",
    )
    return counts, details


def date_formats(q: DuckDBChecks) -> tuple[Counts, pa.Table]:
    """Date columns written in more than one format within one export (domain.md §1.4).

    Staging parses every accepted format and counts what each parsed (``staging/manifest.json``); the
    values in a column's less common formats are the inconsistent ones. They were parsed correctly, so the
    data is usable, but the export is not conforming.
    """
    path = q.workspace / "staging" / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    entries = [e for e in _entries(manifest) if e.get("date_formats")]
    if not entries:
        raise NotApplicable("the staging manifest records no date formats per column")
    compared = minority = 0
    rows: list[dict[str, object]] = []
    for f in entries:
        for column, used in (f.get("date_formats") or {}).items():
            ranked = sorted(used.items(), key=lambda kv: (-kv[1], kv[0]))
            compared += sum(used.values())
            for fmt, n in ranked[1:]:
                minority += n
                rows.append(
                    {
                        "check": "date_format_consistency",
                        "system": f.get("system"),
                        "file": f.get("file"),
                        "row": None,
                        "key": None,
                        "field": column,
                        "value": fmt,
                        "other_system": None,
                        "other_value": ranked[0][0],
                        "reason": f"{n:,} values in a second format",
                    }
                )
    counts = Counts(compared, compared - minority, minority, 0, 0)
    return counts, pa.Table.from_pylist(rows, schema=DETAIL_SCHEMA)


def _entries(node: Any) -> list[dict[str, Any]]:
    """Every object in the manifest that carries ``date_formats`` (per file or per raw table)."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if isinstance(node.get("date_formats"), dict):
            found.append(node)
        for value in node.values():
            if isinstance(value, dict | list):
                found.extend(_entries(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_entries(value))
    return found
