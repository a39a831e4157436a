"""Everything DuckDB-specific about vocabularies: reading Athena's and OMOP exports' vocabulary files, and
the SQL that maps source codes to standard concepts.

Vocabulary files are read with every column as text and an explicit header, so DuckDB never guesses a type or
a quote character; lines it cannot split into the header's columns are kept in its rejects table (with their
physical line) instead of being skipped. File paths reach DuckDB only as bound parameters.

The mapping query follows the ``SOURCE_TO_STANDARD`` query of the OHDSI ETL documentation (the Book of OHDSI,
chapter "Extract Transform Load", and ETL-Synthea's vocabulary queries): a source concept ``Maps to`` its
standard concepts through CONCEPT_RELATIONSHIP, relationships and targets that are invalid are left out, and
the site's SOURCE_TO_CONCEPT_MAP (its own Usagi mappings) is consulted for codes Athena does not cover. Here
the site's mapping is consulted first: a code the site has mapped takes the site's targets, not Athena's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

#: The CDM vocabulary tables a mapping query reads, as views of the vocab folder's Parquet files.
MAPPING_TABLES = ("concept", "concept_relationship", "source_to_concept_map")


@dataclass(frozen=True)
class RejectedLine:
    """A line DuckDB could not split into the header's columns."""

    line: int  # physical line in the file, the header being line 1
    field: str | None
    error: str  # DuckDB's error type, e.g. MISSING COLUMNS
    message: str
    text: str | None


def stage_delimited(
    con: duckdb.DuckDBPyConnection, name: str, path: Path, columns: list[str], delimiter: str
) -> list[RejectedLine]:
    """Load one delimited file into temp table ``name`` (text columns, source order); return its bad lines.

    Tab-separated files are Athena's: quote characters are not special (a concept name may hold a lone
    ``"``), so quoting is turned off. Comma-separated files are OMOP exports written by CSV writers, so
    ``"`` quotes fields and doubles inside them.
    """
    quote = "" if delimiter == "\t" else '"'
    spec = {c: "VARCHAR" for c in columns}
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM read_csv(?, delim = ?, quote = ?, escape = ?, "
        "header = true, auto_detect = false, columns = ?, store_rejects = true, "
        f"rejects_table = '{name}_rejects', rejects_scan = '{name}_scans')",
        [str(path), delimiter, quote, quote, spec],
    )
    rows = con.execute(
        # DuckDB writes one reject per missing column of a short line; the line is one quarantined row.
        "SELECT line, arg_min(column_name, column_idx), arg_min(error_type, column_idx), "
        f"arg_min(error_message, column_idx), any_value(csv_line) FROM {name}_rejects "
        "GROUP BY line ORDER BY line"
    ).fetchall()
    return [
        RejectedLine(
            line=int(line),
            field=None if field is None else str(field),
            error=str(error),
            message=str(message).strip().splitlines()[0] if message else str(error),
            text=None if text is None else str(text),
        )
        for line, field, error, message, text in rows
    ]


def open_views(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    """Create a view per mapping table over ``<folder>/<table>.parquet`` (the path passed, not quoted)."""
    for table in MAPPING_TABLES:
        con.read_parquet(str(folder / f"{table}.parquet")).create_view(table)


def standard_targets(con: duckdb.DuckDBPyConnection, concept_ids: pa.Table) -> pa.Table:
    """Which of ``concept_ids`` (one int64 column ``concept_id``) are valid standard concepts of CONCEPT."""
    con.register("wanted_targets", concept_ids)
    try:
        return con.sql(
            "SELECT w.concept_id, c.vocabulary_id FROM wanted_targets w JOIN concept c "
            "ON c.concept_id = w.concept_id AND c.standard_concept = 'S' AND c.invalid_reason IS NULL"
        ).to_arrow_table()
    finally:
        con.unregister("wanted_targets")


# One row per input row; `i` keeps the caller's order. A code is trimmed of surrounding spaces (exports pad
# fixed-width codes) and matched twice: as written, and with every '.' removed on both sides, because ICD
# codes are written both ways (E11.9 in Athena's ICD10CM, E119 in many exports; 8151 for ICD9Proc's 81.51).
# An exact match always beats a dot-free one; among equals the smallest concept_id wins, so the result never
# depends on file order.
_MAPPING_SQL = """
WITH input AS (
    SELECT i, vocabulary_id, source_code, nullif(trim(source_code), '') AS code FROM codes_in
),
codes AS (
    SELECT DISTINCT vocabulary_id, code FROM input WHERE vocabulary_id IS NOT NULL AND code IS NOT NULL
),
source_candidates AS (
    SELECT d.vocabulary_id, d.code, c.concept_id, c.domain_id, 1 AS priority
    FROM codes d JOIN concept c ON c.vocabulary_id = d.vocabulary_id AND c.concept_code = d.code
    UNION ALL
    SELECT d.vocabulary_id, d.code, c.concept_id, c.domain_id, 2 AS priority
    FROM codes d JOIN concept c
        ON c.vocabulary_id = d.vocabulary_id AND replace(c.concept_code, '.', '') = replace(d.code, '.', '')
),
source AS (
    SELECT vocabulary_id, code, concept_id AS source_concept_id, domain_id AS source_domain_id,
        CASE priority WHEN 1 THEN 'exact' ELSE 'without_dot' END AS source_match
    FROM source_candidates
    QUALIFY row_number() OVER (PARTITION BY vocabulary_id, code ORDER BY priority, concept_id) = 1
),
site_candidates AS (
    SELECT d.vocabulary_id, d.code, m.target_concept_id, m.source_concept_id, 1 AS priority
    FROM codes d JOIN source_to_concept_map m
        ON m.source_vocabulary_id = d.vocabulary_id AND trim(m.source_code) = d.code
    WHERE m.invalid_reason IS NULL
    UNION ALL
    SELECT d.vocabulary_id, d.code, m.target_concept_id, m.source_concept_id, 2 AS priority
    FROM codes d JOIN source_to_concept_map m
        ON m.source_vocabulary_id = d.vocabulary_id
        AND replace(trim(m.source_code), '.', '') = replace(d.code, '.', '')
    WHERE m.invalid_reason IS NULL
),
site AS (
    SELECT * FROM site_candidates
    QUALIFY priority = min(priority) OVER (PARTITION BY vocabulary_id, code)
),
site_source AS (
    SELECT vocabulary_id, code, max(nullif(source_concept_id, 0)) AS source_concept_id FROM site GROUP BY ALL
),
athena AS (
    SELECT s.vocabulary_id, s.code, t.concept_id AS target_concept_id
    FROM source s
    JOIN concept_relationship r
        ON r.concept_id_1 = s.source_concept_id AND lower(r.relationship_id) = 'maps to'
        AND r.invalid_reason IS NULL
    JOIN concept t ON t.concept_id = r.concept_id_2 AND t.standard_concept = 'S' AND t.invalid_reason IS NULL
    WHERE NOT EXISTS (SELECT 1 FROM site WHERE site.vocabulary_id = s.vocabulary_id AND site.code = s.code)
),
all_targets AS (
    SELECT DISTINCT vocabulary_id, code, target_concept_id, 'site' AS mapped_by FROM site
    UNION ALL
    SELECT DISTINCT vocabulary_id, code, target_concept_id, 'athena' AS mapped_by FROM athena
),
targets AS (
    SELECT a.vocabulary_id, a.code AS source_code,
        coalesce(s.source_concept_id, ss.source_concept_id, 0) AS source_concept_id,
        a.target_concept_id, t.domain_id AS target_domain_id, t.vocabulary_id AS target_vocabulary_id,
        a.mapped_by,
        -- The simple answer is the target in the source concept's own domain if there is one (a condition
        -- that also maps to an observation stays a condition), then the smallest concept_id.
        row_number() OVER (
            PARTITION BY a.vocabulary_id, a.code
            ORDER BY (t.domain_id IS NOT DISTINCT FROM s.source_domain_id) DESC, a.target_concept_id
        ) AS target_rank,
        count(*) OVER (PARTITION BY a.vocabulary_id, a.code) AS target_count
    FROM all_targets a
    LEFT JOIN source s ON s.vocabulary_id = a.vocabulary_id AND s.code = a.code
    LEFT JOIN site_source ss ON ss.vocabulary_id = a.vocabulary_id AND ss.code = a.code
    LEFT JOIN concept t ON t.concept_id = a.target_concept_id
)
"""


def map_codes(con: duckdb.DuckDBPyConnection, codes: pa.Table) -> tuple[pa.Table, pa.Table, tuple[str, ...]]:
    """Map ``codes`` (columns ``i``, ``vocabulary_id``, ``source_code``) through the registered views.

    Returns:
        One row per input row, in input order (``i``, ``source_concept_id``, ``source_match``,
        ``concept_id``, ``mapped_by``, ``target_count``); every target of every distinct code; and the input's
        vocabulary_ids that neither CONCEPT nor SOURCE_TO_CONCEPT_MAP knows.
    """
    con.register("codes_in", codes)
    try:
        # The targets are computed once and read twice: the first for each input row, then all of them.
        for table, cte in (("mapped_targets", "targets"), ("mapped_sources", "source")):
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {_MAPPING_SQL} SELECT * FROM {cte}")
        rows = con.sql(
            """
            SELECT c.i, c.vocabulary_id, c.source_code,
                coalesce(s.source_concept_id, t.source_concept_id, 0)::BIGINT AS source_concept_id,
                s.source_match,
                coalesce(t.target_concept_id, 0)::BIGINT AS concept_id,
                t.mapped_by,
                coalesce(t.target_count, 0)::BIGINT AS target_count
            FROM (SELECT *, nullif(trim(source_code), '') AS code FROM codes_in) c
            LEFT JOIN mapped_sources s ON s.vocabulary_id = c.vocabulary_id AND s.code = c.code
            LEFT JOIN mapped_targets t
                ON t.vocabulary_id = c.vocabulary_id AND t.source_code = c.code AND t.target_rank = 1
            ORDER BY c.i
            """
        ).to_arrow_table()
        targets = con.sql(
            """
            SELECT vocabulary_id, source_code, source_concept_id::BIGINT AS source_concept_id,
                target_concept_id::BIGINT AS target_concept_id, target_domain_id, target_vocabulary_id,
                mapped_by, target_rank::BIGINT AS target_rank
            FROM mapped_targets ORDER BY vocabulary_id, source_code, target_rank
            """
        ).to_arrow_table()
        unknown = con.sql(
            "SELECT DISTINCT vocabulary_id FROM codes_in WHERE vocabulary_id IS NOT NULL "
            "AND vocabulary_id NOT IN (SELECT vocabulary_id FROM concept) "
            "AND vocabulary_id NOT IN (SELECT source_vocabulary_id FROM source_to_concept_map) "
            "ORDER BY vocabulary_id"
        ).fetchall()
    finally:
        con.execute("DROP TABLE IF EXISTS mapped_targets")
        con.execute("DROP TABLE IF EXISTS mapped_sources")
        con.unregister("codes_in")
    return rows, targets, tuple(str(v[0]) for v in unknown)
