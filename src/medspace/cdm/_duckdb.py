"""Everything DuckDB-specific in the cdm stage: DDL for the CDM and the SQL that reads and coerces an OMOP
source table before it is written to Parquet.

Reading goes through DuckDB because it parses large CSVs in parallel and reads DuckDB databases natively;
its output is engine-neutral Parquet, so Spark (or any engine) reads the imported CDM the same way. Every
source column is first loaded as text into a staging table (its ``rowid`` keeps the source order and gives
the row number a user sees), then each field is cast with ``TRY_CAST``: a non-empty value that does not
cast sends its row to quarantine instead of failing the whole import or silently becoming NULL.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb
import pyarrow as pa

from medspace.cdm._schema import CdmField, CdmSchema, CdmTable, cdm_schema

_DDL_TYPES = {
    "integer": "BIGINT",
    "float": "DOUBLE",
    "date": "DATE",
    "datetime": "TIMESTAMP",
    "varchar": "VARCHAR",
}

#: Rows per Arrow batch when streaming a coerced table out of DuckDB.
BATCH_ROWS = 256_000


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def duckdb_ddl(
    tables: Sequence[str] | None = None, *, primary_keys: bool = False, schema: CdmSchema | None = None
) -> str:
    """DuckDB ``CREATE TABLE`` statements for the CDM, generated from the specification.

    Types follow the workspace's Parquet files (integers are BIGINT, datetimes TIMESTAMP), so Parquet written
    by `import_omop` loads into these tables without casts. Required fields are ``NOT NULL``.

    Args:
        tables: Names of the tables to create, in the order given; every table of the spec if None.
        primary_keys: Also declare each table's primary key (off by default: OHDSI ships primary keys as a
            separate script, and bulk loads are faster without them).
        schema: The CDM schema to use; the shipped OMOP CDM v5.4 if None.

    Returns:
        The statements, separated by blank lines, each ending with a semicolon.

    Raises:
        KeyError: A name in ``tables`` is not a CDM table.

    Example:
        >>> print(duckdb_ddl(["death"]))  # doctest: +NORMALIZE_WHITESPACE
        CREATE TABLE death (
            person_id BIGINT NOT NULL,
            death_date DATE NOT NULL,
            death_datetime TIMESTAMP,
            death_type_concept_id BIGINT,
            cause_concept_id BIGINT,
            cause_source_value VARCHAR,
            cause_source_concept_id BIGINT
        );
    """
    spec = schema or cdm_schema()
    chosen = [spec[name] for name in tables] if tables is not None else list(spec.tables)
    return "\n\n".join(_create_table(t, primary_keys=primary_keys) for t in chosen)


@cache
def _reserved_words() -> frozenset[str]:
    with duckdb.connect() as con:
        rows = con.execute("SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category = 'reserved'")
        return frozenset(str(r[0]).lower() for r in rows.fetchall())


def _identifier(name: str) -> str:
    # Only reserved words are quoted (note_nlp.offset), so the DDL reads like OHDSI's own scripts.
    return _quote(name) if name in _reserved_words() else name


def _create_table(table: CdmTable, *, primary_keys: bool) -> str:
    lines = [
        f"    {_identifier(f.name)} {_DDL_TYPES[f.datatype]}{' NOT NULL' if f.required else ''}"
        for f in table.fields
    ]
    if primary_keys and table.primary_key:
        lines.append(f"    PRIMARY KEY ({', '.join(_identifier(k) for k in table.primary_key)})")
    return f"CREATE TABLE {table.name} (\n" + ",\n".join(lines) + "\n);"


# --- import ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StagedTable:
    """A source table loaded as text into DuckDB, with how its columns map to the CDM table's fields."""

    name: str  # staging table name in the DuckDB connection
    columns: tuple[str, ...]  # source column names, in source order
    #: CDM field name -> source column name, for the fields the source has.
    mapping: dict[str, str]
    rows: int


@dataclass(frozen=True)
class CoercionCounts:
    imported: int
    quarantined: int


class DuckDbImporter:
    """One DuckDB connection that stages, coerces and writes OMOP source tables.

    Example:
        >>> with DuckDbImporter() as importer:
        ...     importer.con.sql("SELECT 1").fetchall()
        [(1,)]
    """

    def __init__(self, temp_directory: Path | None = None) -> None:
        self.con = duckdb.connect()
        self.con.execute("SET enable_progress_bar = false")
        if temp_directory is not None:
            self.con.execute(f"SET temp_directory = {_literal(str(temp_directory))}")
        # Source order must survive staging: it gives the row numbers in quarantine and error messages.
        self.con.execute("SET preserve_insertion_order = true")
        self._counter = 0

    def __enter__(self) -> DuckDbImporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.con.close()

    def _next_name(self) -> str:
        self._counter += 1
        return f"staged_{self._counter}"

    def stage_csv(self, path: Path) -> str:
        """Load a CSV file (header on the first line) as text columns; returns the staging table's name.

        Raises:
            duckdb.Error: DuckDB cannot parse the file; the caller turns it into an `InputError`.
        """
        name = self._next_name()
        self.con.execute(
            f"CREATE TEMP TABLE {name} AS SELECT * FROM read_csv({_literal(str(path))}, all_varchar = true, "
            "header = true, auto_detect = true, strict_mode = false)"
        )
        return name

    def attach(self, path: Path) -> None:
        """Attach a DuckDB database file read-only as ``src``."""
        self.con.execute(f"ATTACH {_literal(str(path))} AS src (READ_ONLY)")

    def source_tables(self) -> list[tuple[str, str]]:
        """(schema, table) of every base table in the attached database, in name order."""
        rows = self.con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'src' "
            "ORDER BY schema_name, table_name"
        ).fetchall()
        return [(str(s), str(t)) for s, t in rows]

    def stage_table(self, schema: str, table: str) -> str:
        """Copy a table of the attached database as text columns; returns the staging table's name."""
        name = self._next_name()
        source = f"src.{_quote(schema)}.{_quote(table)}"
        columns = self.columns_of(source)
        select = ", ".join(f"CAST({_quote(c)} AS VARCHAR) AS {_quote(c)}" for c in columns)
        self.con.execute(f"CREATE TEMP TABLE {name} AS SELECT {select} FROM {source}")
        return name

    def columns_of(self, relation: str) -> list[str]:
        return [str(c) for c in self.con.sql(f"SELECT * FROM {relation} LIMIT 0").columns]

    def row_count(self, name: str) -> int:
        rows = self.con.execute(f"SELECT count(*) FROM {name}").fetchall()
        return int(rows[0][0])

    def first_row(self, name: str) -> tuple[str | None, ...] | None:
        rows = self.con.execute(f"SELECT * FROM {name} ORDER BY rowid LIMIT 1").fetchall()
        return tuple(None if v is None else str(v) for v in rows[0]) if rows else None

    def rename_columns(self, name: str, new_names: Sequence[str]) -> None:
        """Give a staged table new column names (used when its real header sits in its first row)."""
        for old, new in zip(self.columns_of(name), new_names, strict=True):
            if old != new:
                self.con.execute(f"ALTER TABLE {name} RENAME COLUMN {_quote(old)} TO {_quote(new)}")

    def coerce(
        self,
        staged: StagedTable,
        table: CdmTable,
        *,
        system: str,
        file: str,
        quarantine: list[pa.RecordBatch],
    ) -> tuple[Iterator[pa.RecordBatch], CoercionCounts]:
        """Cast a staged table to the CDM table's types.

        Rows whose first non-empty values all equal their own column names are repeated headers (rule
        ``header_row``); a non-empty value that does not cast breaks rule ``type``; a required field left
        empty breaks rule ``required``. Their quarantine records are appended to ``quarantine``.

        Returns:
            The good rows as Arrow batches in source order (typed by the table's arrow schema), and counts.
        """
        bad = f"{staged.name}_bad"
        checks = self._checks(staged, table)
        header = self._header_condition(staged)
        raw_json = "json_object(" + ", ".join(f"{_literal(c)}, {_quote(c)}" for c in staged.columns) + ")"
        cases = ", ".join(f"CASE WHEN {cond} THEN {i} END" for i, (_f, _r, _m, cond) in enumerate(checks))
        failures = (
            f"list_filter([{cases}]::INTEGER[], lambda x: x IS NOT NULL)" if checks else "[]::INTEGER[]"
        )
        # One pass finds every bad row and the checks it fails.
        self.con.execute(
            f"CREATE TEMP TABLE {bad} AS SELECT rowid AS r, {header} AS is_header, {failures} AS failed, "
            f"{raw_json} AS raw FROM {staged.name} WHERE {header} OR len({failures}) > 0"
        )
        quarantine.extend(self._quarantine_batches(bad, checks, table.name, system=system, file=file))
        quarantined = self.row_count(bad)
        select = ", ".join(
            f"{self._cast(f, staged.mapping.get(f.name))} AS {_quote(f.name)}" for f in table.fields
        )
        query = f"SELECT {select} FROM {staged.name} WHERE rowid NOT IN (SELECT r FROM {bad}) ORDER BY rowid"
        schema = table.arrow_schema()
        reader = self.con.sql(query).to_arrow_reader(BATCH_ROWS)

        def batches() -> Iterator[pa.RecordBatch]:
            for batch in reader:
                yield batch.cast(schema)

        return batches(), CoercionCounts(imported=staged.rows - quarantined, quarantined=quarantined)

    @staticmethod
    def _value(column: str) -> str:
        # Empty text is a missing value in every CSV writer's convention; text fields keep inner spaces.
        return f"NULLIF({_quote(column)}, '')"

    def _cast(self, f: CdmField, column: str | None) -> str:
        if column is None:
            return f"CAST(NULL AS {_DDL_TYPES[f.datatype]})"
        value = self._value(column)
        trimmed = f"NULLIF(trim({_quote(column)}), '')"
        if f.datatype == "varchar":
            return value
        if f.datatype == "integer":
            # TRY_CAST('1.5' AS BIGINT) rounds to 2; only whole numbers ('7', '7.0' from float writers) pass.
            return (
                f"CASE WHEN regexp_full_match({trimmed}, '[+-]?[0-9]+(\\.0*)?') "
                f"THEN TRY_CAST(TRY_CAST({trimmed} AS DECIMAL(38, 1)) AS BIGINT) END"
            )
        if f.datatype == "float":
            return f"TRY_CAST({trimmed} AS DOUBLE)"
        if f.datatype == "date":
            # ISO dates (and ISO datetimes, whose time is dropped); compact yyyyMMdd as some exports write.
            return (
                f"coalesce(TRY_CAST({trimmed} AS DATE), TRY_CAST(try_strptime({trimmed}, '%Y%m%d') AS DATE))"
            )
        return f"TRY_CAST({trimmed} AS TIMESTAMP)"

    def _checks(self, staged: StagedTable, table: CdmTable) -> list[tuple[str, str, str, str]]:
        """(field, rule, reason, SQL condition that is true when the row breaks it)."""
        checks: list[tuple[str, str, str, str]] = []
        for f in table.fields:
            column = staged.mapping.get(f.name)
            if column is None:
                if f.required:
                    checks.append(
                        (
                            f.name,
                            "required",
                            "required field is missing: the source has no such column",
                            "true",
                        )
                    )
                continue
            cast = self._cast(f, column)
            if f.datatype != "varchar":
                checks.append(
                    (
                        f.name,
                        "type",
                        f"value is not a valid {f.datatype} ({f.spec_datatype})",
                        f"(trim({_quote(column)}) <> '' AND {cast} IS NULL)",
                    )
                )
            if f.required:
                checks.append(
                    (
                        f.name,
                        "required",
                        "required field is empty",
                        f"(trim({_quote(column)}) = '') IS NOT FALSE",
                    )
                )
        return checks

    def _header_condition(self, staged: StagedTable) -> str:
        # A repeated header row: every mapped column holds its own name (GiBleed stores empty tables as one
        # such row). Only text comparisons, so it works before any cast.
        if not staged.mapping:
            return "false"
        parts = [
            f"lower(trim({_quote(c)})) IS NOT DISTINCT FROM {_literal(c.lower())}"
            for c in staged.mapping.values()
        ]
        return "(" + " AND ".join(parts) + ")"

    def _quarantine_batches(
        self, bad: str, checks: list[tuple[str, str, str, str]], table: str, *, system: str, file: str
    ) -> list[pa.RecordBatch]:
        rows = self.con.execute(f"SELECT r, is_header, failed, raw FROM {bad} ORDER BY r").fetchall()
        if not rows:
            return []
        records: list[tuple[object, ...]] = []
        for r, is_header, failed, raw in rows:
            row_number = int(r) + 1  # 1-based data row, the header line not counted
            if is_header:
                records.append((system, table, file, row_number, None, "header_row", HEADER_REASON, raw))
                continue
            for i in failed:
                field, rule, reason, _cond = checks[i]
                records.append((system, table, file, row_number, field, rule, reason, raw))
        columns = list(zip(*records, strict=True))
        arrays = [pa.array(col, type=f.type) for col, f in zip(columns, QUARANTINE_SCHEMA, strict=True)]
        batches: list[pa.RecordBatch] = pa.Table.from_arrays(arrays, schema=QUARANTINE_SCHEMA).to_batches()
        return batches


HEADER_REASON = "a repeated header row (column names stored as data), not a record"

#: Columns of ``cdm/quarantine.parquet``: which source row broke which rule, with its raw values as JSON.
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("system", pa.string(), nullable=False),
        pa.field("table", pa.string(), nullable=False),
        pa.field("file", pa.string(), nullable=False),
        pa.field("row", pa.int64(), nullable=False),
        pa.field("field", pa.string()),
        pa.field("rule", pa.string(), nullable=False),
        pa.field("reason", pa.string()),
        pa.field("raw", pa.string()),
    ]
)
