"""Checks on how each system holds identities and formats: resident IDs that fail GB 11643, missing phones,
one person under several HIS patient numbers, addresses that differ between systems for the same person,
and date columns written in more than one format.

They run on the cross-system checks' DuckDB connection (its views of the staged and linked tables). The
resident-ID rule runs in Python over the distinct IDs only, reusing medspace's one GB 11643 check.
"""

from __future__ import annotations

import json

import pyarrow as pa

from medspace.core import check_resident_id

from ._cross_system_duckdb import DETAIL_SCHEMA, Counts, DuckDBChecks

# Resident IDs as each system writes them, with the row they sit on.
_RESIDENT_IDS = """
SELECT 'his' AS system, _source_file AS file, _source_row AS row, his_patient_id AS key,
       'resident_id' AS field, resident_id AS value FROM his_patients WHERE resident_id IS NOT NULL
UNION ALL
SELECT 'emr', _source_file, _source_row, inpatient_no || '-' || admission_count, 'resident_id', resident_id
FROM emr_front_sheets WHERE resident_id IS NOT NULL
UNION ALL
SELECT 'insurance', _source_file, _source_row, settlement_id, 'insured_id', insured_id
FROM insurance_settlements WHERE insured_id IS NOT NULL
"""


def resident_ids(q: DuckDBChecks) -> tuple[Counts, pa.Table]:
    """Resident IDs that fail the GB 11643 checksum, birth date or region rule."""
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


_PHONES = """
SELECT 'his' AS system, _source_file AS file, _source_row AS row, his_patient_id AS key, phone
FROM his_patients
UNION ALL
SELECT 'emr', _source_file, _source_row, inpatient_no || '-' || admission_count, phone FROM emr_front_sheets
"""


def phones(q: DuckDBChecks) -> tuple[Counts, pa.Table]:
    """Patient rows without a phone number (HIS writes a missing value as '-', staged as null)."""
    counts = q.counts(
        f"SELECT count(*) AS compared, count(phone) AS agreeing, count(*) - count(phone) AS disagreeing, "
        f"0 AS explained, 0 AS not_comparable FROM ({_PHONES})"
    )
    details = q.details(
        "phone_present",
        f"SELECT system, file, row, key, 'phone' AS field, NULL AS value, NULL AS other_system, "
        f"NULL AS other_value, 'no phone number' AS reason FROM ({_PHONES}) WHERE phone IS NULL",
    )
    return counts, details


# Each HIS patient row with the person the link stage found for it.
_HIS_PERSONS = """
SELECT p._source_file AS file, p._source_row AS row, p.his_patient_id AS key, e.person_id
FROM his_patients p JOIN ev e ON e.source_file = p._source_file AND e.source_row = p._source_row
WHERE e.person_id IS NOT NULL
"""


def his_numbers(q: DuckDBChecks) -> tuple[Counts, pa.Table]:
    """Persons registered in HIS under more than one patient number (domain.md §1.1)."""
    counts = q.counts(
        f"WITH per AS (SELECT person_id, count(DISTINCT key) AS n FROM ({_HIS_PERSONS}) GROUP BY person_id) "
        "SELECT count(*) AS compared, count(*) FILTER (WHERE n = 1) AS agreeing, "
        "count(*) FILTER (WHERE n > 1) AS disagreeing, 0 AS explained, 0 AS not_comparable FROM per"
    )
    details = q.details(
        "his_patient_number_unique",
        f"WITH h AS ({_HIS_PERSONS}), per AS (SELECT person_id FROM h GROUP BY person_id "
        "HAVING count(DISTINCT key) > 1) "
        "SELECT 'his' AS system, h.file, h.row, h.key, 'his_patient_id' AS field, h.person_id AS value, "
        "NULL AS other_system, NULL AS other_value, 'one person, several HIS patient numbers' AS reason "
        "FROM h JOIN per USING (person_id)",
    )
    return counts, details


# Addresses normalised the way people write them differently: without the province/city prefix and with
# the district suffix (区 / 新区) dropped.
_NORMALISED = (
    "regexp_replace(regexp_replace({col}, '^(上海市|[^省市]+省)?([^市]+市)?', ''), '(新区|区)', '', 'g')"
)
_ADDRESSES = f"""
WITH his AS (
    SELECT e.person_id, p._source_file AS file, p._source_row AS row, p.his_patient_id AS key, p.address
    FROM his_patients p JOIN ev e ON e.source_file = p._source_file AND e.source_row = p._source_row
    WHERE e.person_id IS NOT NULL AND p.address IS NOT NULL
), emr AS (
    SELECT e.person_id, any_value(f.address) AS address
    FROM emr_front_sheets f JOIN ev e ON e.source_file = f._source_file AND e.source_row = f._source_row
    WHERE e.person_id IS NOT NULL AND f.address IS NOT NULL GROUP BY e.person_id
)
SELECT his.*, emr.address AS emr_address,
       CASE WHEN his.address = emr.address THEN 'agreeing'
            WHEN {_NORMALISED.format(col="his.address")} = {_NORMALISED.format(col="emr.address")}
                THEN 'explained'
            ELSE 'disagreeing' END AS outcome
FROM his JOIN emr USING (person_id)
"""


def addresses(q: DuckDBChecks) -> tuple[Counts, pa.Table]:
    """The same person's address in HIS and on the EMR front sheet: equal, a writing variant, or different."""
    counts = q.counts(
        f"SELECT count(*) AS compared, count(*) FILTER (WHERE outcome = 'agreeing') AS agreeing, "
        f"count(*) FILTER (WHERE outcome = 'disagreeing') AS disagreeing, "
        f"count(*) FILTER (WHERE outcome = 'explained') AS explained, 0 AS not_comparable FROM ({_ADDRESSES})"
    )
    details = q.details(
        "address_agreement",
        "SELECT 'his' AS system, file, row, key, 'address' AS field, address AS value, "
        "'emr' AS other_system, emr_address AS other_value, CASE outcome WHEN 'explained' "
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
    manifest = json.loads((q.workspace / "staging" / "manifest.json").read_text(encoding="utf-8"))
    compared = minority = 0
    rows: list[dict[str, object]] = []
    for f in manifest["files"]:
        for column, used in (f.get("date_formats") or {}).items():
            ranked = sorted(used.items(), key=lambda kv: (-kv[1], kv[0]))
            compared += sum(used.values())
            for fmt, n in ranked[1:]:
                minority += n
                rows.append(
                    {
                        "check": "date_format_consistency",
                        "system": f["system"],
                        "file": f["file"],
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
