"""Checks on how each system holds identities and formats: resident IDs that fail GB 11643, missing phones,
one person under several numbers of the site's patient index, addresses that differ between systems for the
same person, and date columns written in more than one format.

They run on the cross-system checks' DuckDB connection (its views of the canonical and linked tables). The
resident-ID rule runs in Python over the distinct IDs only, reusing medspace's one GB 11643 check.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from medspace.core import check_resident_id

from ._cross_system_duckdb import DETAIL_SCHEMA, Counts, DuckDBChecks, NotApplicable

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
