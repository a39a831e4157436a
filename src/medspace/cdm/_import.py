"""Importing an existing OMOP CDM (a folder or zip of CSVs, or a DuckDB database) into a workspace.

Hospitals and networks that already run an OMOP ETL hand over their CDM as files; medspace takes it in as
the ``cdm`` stage's output so quality checks, de-identification and products run on it as on a CDM medspace
built itself. The import writes ``<workspace>/cdm/<table>.parquet`` with the official v5.4 types, a
quarantine of the rows that could not be coerced, and a manifest of the counts. It writes into a fresh
folder swapped in only on success, so a failed import leaves the previous CDM untouched.

This module touches identifiable rows only by copying them into the workspace; it logs nothing about them.
"""

from __future__ import annotations

import json
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from medspace.cdm._duckdb import QUARANTINE_SCHEMA, DuckDbImporter, StagedTable
from medspace.cdm._schema import CdmSchema, CdmTable, cdm_schema
from medspace.core import (
    InputError,
    Workspace,
    refresh_catalog,
    replace_folder,
    scratch_folder,
    stage_lineage,
)

#: The ``system`` written in quarantine records of an imported CDM.
SYSTEM = "omop"

_DUCKDB_SUFFIXES = (".duckdb", ".ddb", ".db")

# Fields renamed between CDM v5.3 and v5.4 (OHDSI CommonDataModel, "Changes from v5.3 to v5.4"), so a v5.3
# source such as Eunomia GiBleed keeps these values instead of losing them as unknown columns.
_V53_RENAMES: dict[str, dict[str, str]] = {
    "visit_occurrence": {
        "admitting_source_concept_id": "admitted_from_concept_id",
        "admitting_source_value": "admitted_from_source_value",
        "discharge_to_concept_id": "discharged_to_concept_id",
        "discharge_to_source_value": "discharged_to_source_value",
    },
    "visit_detail": {
        "admitting_source_concept_id": "admitted_from_concept_id",
        "admitting_source_value": "admitted_from_source_value",
        "discharge_to_concept_id": "discharged_to_concept_id",
        "discharge_to_source_value": "discharged_to_source_value",
        "visit_detail_parent_id": "parent_visit_detail_id",
    },
    # The v5.3 DDL misspelt this field; v5.4 corrected it.
    "cost": {"reveue_code_source_value": "revenue_code_source_value"},
}

# Parquet writer settings are fixed so that importing the same source twice gives byte-identical files.
_PARQUET_OPTIONS: dict[str, object] = {"compression": "zstd", "version": "2.6", "write_statistics": True}


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TableImport(_Frozen):
    """What happened to one CDM table during an import."""

    table: str
    #: The source as the user knows it: ``Synthea27Nj_5.4.zip/PERSON.csv`` or ``eunomia.duckdb:person``.
    file: str
    rows_read: int
    rows_imported: int
    rows_quarantined: int
    #: CDM fields the source lacks (written as NULL; rows missing a required one are quarantined).
    missing_fields: tuple[str, ...] = ()
    #: Source columns that are not fields of the CDM table (not imported).
    ignored_columns: tuple[str, ...] = ()
    #: Source column -> CDM field, where the names differ by more than letter case (v5.3 names).
    renamed_columns: dict[str, str] = {}
    #: The real header was stored as the first data row (GiBleed's empty tables).
    header_in_first_row: bool = False


class ImportReport(_Frozen):
    """The result of `import_omop`: per-table counts, the tables skipped and where the CDM was written.

    Example:
        >>> report = ImportReport(source="x.zip", cdm_folder="ws/cdm", tables=(), skipped=(), seconds=0.1)
        >>> report.rows_quarantined
        0
    """

    source: str
    cdm_folder: str
    tables: tuple[TableImport, ...]
    #: Source files or tables that are not OMOP CDM v5.4 tables, e.g. ``eunomia.duckdb:cohort_attribute``.
    skipped: tuple[str, ...]
    seconds: float

    @property
    def rows_imported(self) -> int:
        return sum(t.rows_imported for t in self.tables)

    @property
    def rows_quarantined(self) -> int:
        return sum(t.rows_quarantined for t in self.tables)

    def table(self, name: str) -> TableImport:
        """The counts of one CDM table.

        Raises:
            KeyError: The source had no such table.
        """
        for t in self.tables:
            if t.table == name.lower():
                return t
        raise KeyError(f"the import had no table {name!r}")


@dataclass(frozen=True)
class _SourceTable:
    table: CdmTable
    file: str  # as shown to the user
    csv_path: Path | None = None  # a CSV file, or
    db_table: tuple[str, str] | None = None  # (schema, table) of the attached DuckDB database


def import_omop(source: Path, workspace: Path) -> ImportReport:
    """Import an existing OMOP CDM into ``<workspace>/cdm/`` as Parquet with the official v5.4 schema.

    Every table of the CDM v5.4 specification present in the source (clinical, health-system, vocabulary and
    cohort tables) is written as ``<table>.parquet``, even when empty. Source columns match fields by name,
    ignoring case; v5.3 names renamed in v5.4 are carried over. Rows that cannot be coerced (a value of the
    wrong type, an empty required field, a header stored as data) go to ``quarantine.parquet`` with the rule
    they broke; ``manifest.json`` gives rows read, imported and quarantined per table.

    Args:
        source: A folder of CSV files, a zip of CSV files, or a DuckDB database file. CSV files are named
            after their table (``PERSON.csv`` or ``person.csv``) and have a header line.
        workspace: The workspace root; the CDM goes to its ``cdm`` folder, replacing what was there only when
            the whole import succeeds.

    Returns:
        The per-table counts and the source files that are not CDM tables.

    Raises:
        InputError: The source is missing, not a recognised kind, holds no CDM table, holds one table twice,
            or a CSV file cannot be parsed (the message names the file).

    Example:
        >>> import tempfile
        >>> src = Path(tempfile.mkdtemp())
        >>> _ = (src / "DEATH.csv").write_text("person_id,death_date\\n1,2020-01-31\\n2,not a date\\n")
        >>> report = import_omop(src, Path(tempfile.mkdtemp()))
        >>> t = report.table("death")
        >>> (t.rows_read, t.rows_imported, t.rows_quarantined)
        (2, 1, 1)
    """
    started = time.perf_counter()
    source = Path(source)
    if not source.exists():
        raise InputError(
            "the OMOP source does not exist; give a folder, a .zip or a DuckDB file", file=str(source)
        )
    schema = cdm_schema()
    target = Workspace(Path(workspace)).stage("cdm")
    with tempfile.TemporaryDirectory(prefix="omop-", dir=scratch_folder()) as scratch:
        scratch_dir = Path(scratch)
        with DuckDbImporter(temp_directory=scratch_dir / "duckdb") as importer:
            tables, skipped = _discover(source, schema, importer, scratch_dir)
            lineage = stage_lineage(Path(workspace), "cdm")
            with replace_folder(target, lineage=lineage) as out:
                results = _import_tables(importer, tables, out)
                report = ImportReport(
                    source=source.name,
                    cdm_folder=str(target),
                    tables=tuple(results),
                    skipped=tuple(skipped),
                    seconds=round(time.perf_counter() - started, 3),
                )
                _write_manifest(out / "manifest.json", report, schema)
    refresh_catalog(Path(workspace))
    return report.model_copy(update={"seconds": round(time.perf_counter() - started, 3)})


def _discover(
    source: Path, schema: CdmSchema, importer: DuckDbImporter, scratch: Path
) -> tuple[list[_SourceTable], list[str]]:
    if source.is_dir():
        return _discover_csv(source, source.name, schema)
    if zipfile.is_zipfile(source):
        folder = scratch / "unzipped"
        try:
            with zipfile.ZipFile(source) as archive:
                archive.extractall(folder)
        except (zipfile.BadZipFile, OSError) as exc:
            raise InputError(f"cannot unpack the zip file: {exc}; re-create it", file=str(source)) from exc
        return _discover_csv(folder, source.name, schema)
    if source.suffix.lower() in _DUCKDB_SUFFIXES:
        try:
            importer.attach(source)
        except duckdb.Error as exc:
            raise InputError(f"cannot open the DuckDB database: {exc}", file=str(source)) from exc
        return _discover_duckdb(importer, source.name, schema)
    raise InputError(
        "unknown kind of OMOP source; give a folder of CSV files, a .zip of CSV files or a DuckDB file "
        f"({', '.join(_DUCKDB_SUFFIXES)})",
        file=str(source),
    )


def _discover_csv(folder: Path, label: str, schema: CdmSchema) -> tuple[list[_SourceTable], list[str]]:
    found: dict[str, _SourceTable] = {}
    skipped: list[str] = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        # macOS archives carry `__MACOSX/._NAME.csv` resource forks beside the real files.
        if not path.is_file() or any(part.startswith((".", "__MACOSX")) for part in relative.parts):
            continue
        shown = f"{label}/{relative.as_posix()}"
        if path.suffix.lower() != ".csv" or path.stem.lower() not in schema:
            skipped.append(shown)
            continue
        table = schema[path.stem]
        if table.name in found:
            raise InputError(
                f"two files hold table {table.name} (the other is {found[table.name].file}); keep one",
                file=shown,
            )
        found[table.name] = _SourceTable(table=table, file=shown, csv_path=path)
    if not found:
        raise InputError(
            "no OMOP CDM v5.4 table found; expected CSV files named after CDM tables, e.g. person.csv",
            file=label,
        )
    return _in_spec_order(found, schema), skipped


def _discover_duckdb(
    importer: DuckDbImporter, label: str, schema: CdmSchema
) -> tuple[list[_SourceTable], list[str]]:
    found: dict[str, _SourceTable] = {}
    skipped: list[str] = []
    for db_schema, name in importer.source_tables():
        shown = f"{label}:{name}" if db_schema == "main" else f"{label}:{db_schema}.{name}"
        if name.lower() not in schema:
            skipped.append(shown)
            continue
        table = schema[name]
        if table.name in found:
            raise InputError(
                f"two tables hold {table.name} (the other is {found[table.name].file}); keep one", file=shown
            )
        found[table.name] = _SourceTable(table=table, file=shown, db_table=(db_schema, name))
    if not found:
        raise InputError("no OMOP CDM v5.4 table found in the database", file=label)
    return _in_spec_order(found, schema), skipped


def _in_spec_order(found: dict[str, _SourceTable], schema: CdmSchema) -> list[_SourceTable]:
    return [found[name] for name in schema.table_names if name in found]


def _import_tables(importer: DuckDbImporter, tables: list[_SourceTable], out: Path) -> list[TableImport]:
    quarantine: list[pa.RecordBatch] = []
    results: list[TableImport] = []
    for source in tables:
        results.append(_import_table(importer, source, out, quarantine))
    # The quarantine is written even when empty, so its absence never has to be interpreted.
    pq.write_table(
        pa.Table.from_batches(quarantine, schema=QUARANTINE_SCHEMA),
        out / "quarantine.parquet",
        **_PARQUET_OPTIONS,
    )
    return results


def _import_table(
    importer: DuckDbImporter, source: _SourceTable, out: Path, quarantine: list[pa.RecordBatch]
) -> TableImport:
    table = source.table
    try:
        if source.csv_path is not None:
            name = importer.stage_csv(source.csv_path)
        else:
            assert source.db_table is not None  # one of the two is always set by discovery
            name = importer.stage_table(*source.db_table)
    except duckdb.Error as exc:
        raise InputError(
            f"cannot read the table: {_first_line(exc)}; fix the file or leave it out", file=source.file
        ) from exc
    columns = importer.columns_of(name)
    header_in_first_row = False
    if not set(c.lower() for c in columns) & set(table.field_names):
        first = importer.first_row(name)
        if first is not None and _looks_like_header(first, table):
            # GiBleed stores empty tables with generic column names and the real header as the only row.
            importer.rename_columns(name, [v if v else c for v, c in zip(first, columns, strict=True)])
            columns = importer.columns_of(name)
            header_in_first_row = True
    mapping, renamed, ignored = _map_columns(columns, table, source.file)
    staged = StagedTable(name=name, columns=tuple(columns), mapping=mapping, rows=importer.row_count(name))
    batches, counts = importer.coerce(staged, table, system=SYSTEM, file=source.file, quarantine=quarantine)
    with pq.ParquetWriter(out / f"{table.name}.parquet", table.arrow_schema(), **_PARQUET_OPTIONS) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return TableImport(
        table=table.name,
        file=source.file,
        rows_read=staged.rows,
        rows_imported=counts.imported,
        rows_quarantined=counts.quarantined,
        missing_fields=tuple(f for f in table.field_names if f not in mapping),
        ignored_columns=tuple(ignored),
        renamed_columns=renamed,
        header_in_first_row=header_in_first_row,
    )


def _looks_like_header(values: tuple[str | None, ...], table: CdmTable) -> bool:
    names = [v.strip().lower() for v in values if v is not None and v.strip()]
    fields = set(table.field_names) | set(_V53_RENAMES.get(table.name, {}))
    return bool(names) and sum(n in fields for n in names) * 2 >= len(names)


def _map_columns(
    columns: list[str], table: CdmTable, file: str
) -> tuple[dict[str, str], dict[str, str], list[str]]:
    renames = _V53_RENAMES.get(table.name, {})
    fields = set(table.field_names)
    mapping: dict[str, str] = {}
    renamed: dict[str, str] = {}
    ignored: list[str] = []
    for column in columns:
        key = column.strip().lower()
        field = key if key in fields else renames.get(key)
        if field is None:
            ignored.append(column)
            continue
        if field in mapping:
            raise InputError(
                f"columns {mapping[field]!r} and {column!r} both hold CDM field {field}; keep one",
                file=file,
                field=column,
            )
        mapping[field] = column
        if field != key:
            renamed[column] = field
    return mapping, renamed, ignored


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _write_manifest(path: Path, report: ImportReport, schema: CdmSchema) -> None:
    # No timestamps or absolute paths: re-importing the same source must give the same bytes.
    manifest = {
        "cdm_version": schema.version,
        "source": report.source,
        "system": SYSTEM,
        "tables": {t.table: t.model_dump(exclude={"table"}, mode="json") for t in report.tables},
        "skipped": list(report.skipped),
        "rows_imported": report.rows_imported,
        "rows_quarantined": report.rows_quarantined,
    }
    path.write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8"
    )
