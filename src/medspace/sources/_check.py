"""Checking a site mapping against the real files, before anything runs (``medspace site check``).

For every raw table: which files the glob finds, which columns the mapping reads are present or missing,
which columns of the files no field reads, and which fields no map reads. For every canonical table: which
maps feed it, which of its columns no map gives, whether it stays empty, and what a missing table disables
downstream (`NOT_AVAILABLE`). Only file headers are read (CSV header line, XLSX header row, the first
NDJSON documents), so a check takes seconds on a hospital's full export.

This module reads only headers and, for NDJSON, the first documents; it keeps and reports no values.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from medspace.core import InputError
from medspace.sources._jsonpath import extract, parse_json_path
from medspace.sources._model import HospitalModel, load_model
from medspace.sources._site import Site, fields_read, load_site
from medspace.sources._spec import CsvFormat, NdjsonFormat, TableSpec

#: What a canonical table that stays empty at a site disables in the later stages.
NOT_AVAILABLE: dict[str, str] = {
    "patient": "link cannot run: no patient records to resolve persons from",
    "encounter": "link cannot attach events to visits; cdm builds no visit_occurrence; visit KPIs n/a",
    "transfer": "cdm builds no ward segments (visit_detail) from transfers",
    "diagnosis": "cdm builds no condition_occurrence; diagnosis checks not applicable",
    "procedure": "cdm builds no procedure_occurrence; operation KPIs not applicable",
    "lab_order": "lab results reach their visits only by their own visit serial",
    "specimen": "lab results get no collection time or specimen from a specimen table",
    "lab_result": "cdm builds no lab measurements; lab unit and range checks not applicable",
    "imaging_exam": "imaging checks not applicable; cdm builds no imaging procedures from exams",
    "imaging_study": "imaging exam-to-study reconciliation not applicable",
    "medication_order": "cdm builds no drug_exposure from orders or prescriptions",
    "medication_dispense": "drug_exposure gets no dispensing records",
    "charge": "cost KPIs and charge reconciliation not applicable",
    "settlement": "insurance settlement reconciliation not applicable",
    "note": "cdm builds no note; free-text scrubbing has nothing to scrub",
    "death": "cdm records deaths only from encounters discharged by death",
}

_NDJSON_SAMPLE = 200


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnCheck(_Model):
    """One export file of a raw table and its header against the fields' sources."""

    file: str
    present: list[str]
    missing: list[str]
    unused: list[str]
    #: NDJSON: paths no document of the first ones holds (optional values are often absent: not an error).
    unseen: list[str] = []
    problem: str | None = None


class RawTableCheck(_Model):
    """One raw table of the site."""

    system: str
    table: str
    files: str
    found: list[ColumnCheck]
    #: Fields of the table that no map reads (their values would be staged nowhere).
    unmapped_fields: list[str]
    mapped: bool

    @property
    def missing_file(self) -> bool:
        return not self.found

    @property
    def missing_columns(self) -> list[str]:
        return sorted({c for f in self.found for c in f.missing})


class ModelTableCheck(_Model):
    """One canonical table: the maps feeding it and what stays unmapped."""

    table: str
    maps: list[str]
    unmapped_columns: list[str]
    empty: bool
    disables: str | None = None


class SiteCheck(_Model):
    """The result of `check_site`."""

    site: str
    raw_tables: list[RawTableCheck]
    model_tables: list[ModelTableCheck]

    @property
    def errors(self) -> list[str]:
        """What breaks staging: a mapped raw table without files, a missing column, an unreadable header."""
        found = []
        for t in self.raw_tables:
            if not t.mapped:
                continue
            if t.missing_file:
                found.append(f"{t.system}.{t.table}: no file matches {t.files}")
            for f in t.found:
                if f.missing:
                    found.append(f"{f.file}: missing column(s) {', '.join(f.missing)}")
                if f.problem:
                    found.append(f"{f.file}: {f.problem}")
        return found

    @property
    def ok(self) -> bool:
        return not self.errors


def check_site(site: Site | str | Path, exports: Path, model: HospitalModel | None = None) -> SiteCheck:
    """Compare a site mapping with an export folder, reading file headers only.

    Args:
        site: The site mapping, a shipped site's name or a site file.
        exports: The site's export folder.
        model: The canonical model (default: the shipped one).

    Returns:
        Per raw table the files and columns found, missing and unused; per canonical table the maps, the
        unmapped columns, whether it stays empty and what that disables.

    Raises:
        InputError: ``exports`` is not a folder.
        SpecError: the site mapping is invalid.

    Example:
        >>> check = check_site("synthetic-hospital", Path("hospital"))  # doctest: +SKIP
        >>> check.ok, [t.table for t in check.model_tables if t.empty]  # doctest: +SKIP
        (True, ['medication_dispense'])
    """
    site = site if isinstance(site, Site) else load_site(site)
    model = model or load_model()
    exports = Path(exports)
    if not exports.is_dir():
        raise InputError(
            "the export folder does not exist or is not a folder; pass the folder holding the exports",
            file=str(exports),
            rule="missing_folder",
        )
    read_fields = fields_read(site)
    raw_tables = []
    for system, table in site.raw_tables():
        reference = f"{system}.{table.name}"
        used = read_fields.get(reference, set())
        paths = table.export_files(exports)
        found = [_check_file(p, p.relative_to(exports).as_posix(), table) for p in paths]
        mapped = any(m.source == reference or reference in {lk.table for lk in m.lookups} for m in site.maps)
        raw_tables.append(
            RawTableCheck(
                system=system,
                table=table.name,
                files=table.files,
                found=found,
                unmapped_fields=[c.name for c in table.columns if c.name not in used],
                mapped=mapped,
            )
        )
    staged = {f"{t.system}.{t.table}" for t in raw_tables if t.found}
    model_tables = []
    for name, table_spec in model.tables.items():
        maps = [m for m in site.maps if m.to == name]
        given = {c for m in maps for c in m.columns}
        empty = not any(m.source in staged for m in maps)
        model_tables.append(
            ModelTableCheck(
                table=name,
                maps=[m.source for m in maps],
                unmapped_columns=[c for c in table_spec.columns if c not in given],
                empty=empty,
                disables=NOT_AVAILABLE.get(name) if empty else None,
            )
        )
    return SiteCheck(site=site.site, raw_tables=raw_tables, model_tables=model_tables)


def _check_file(path: Path, relative: str, table: TableSpec) -> ColumnCheck:
    sources = list(dict.fromkeys(s for c in table.columns for s in c.sources))
    try:
        if isinstance(table.format, NdjsonFormat):
            return _check_ndjson(path, relative, sources)
    except OSError as exc:
        return ColumnCheck(
            file=relative, present=[], missing=[], unused=[], problem=f"unreadable: {exc.strerror}"
        )
    try:
        header = (
            _csv_header(path, table.format)
            if isinstance(table.format, CsvFormat)
            else _xlsx_header(path, table.format.sheet)
        )
    except ValueError as exc:
        return ColumnCheck(file=relative, present=[], missing=[], unused=[], problem=str(exc))
    except OSError as exc:
        return ColumnCheck(
            file=relative, present=[], missing=[], unused=[], problem=f"unreadable: {exc.strerror}"
        )
    return ColumnCheck(
        file=relative,
        present=[s for s in sources if s in header],
        missing=[s for s in sources if s not in header],
        unused=[h for h in header if h not in sources],
    )


def _csv_header(path: Path, fmt: CsvFormat) -> list[str]:
    with path.open("rb") as f:
        first = f.readline()
    if not first.strip():
        raise ValueError("the file is empty or has no header line")
    try:
        text = first.decode(fmt.encoding)
    except UnicodeDecodeError:
        raise ValueError(
            f"the header line is not valid {fmt.encoding}; check the declared encoding"
        ) from None
    return next(csv.reader([text.lstrip("\ufeff").rstrip("\r\n")], delimiter=fmt.delimiter))


def _xlsx_header(path: Path, sheet: str) -> list[str]:
    from openpyxl import load_workbook  # optional heavy import, only for XLSX tables

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile, KeyError and XML errors for a damaged workbook
        raise ValueError(f"not a readable XLSX workbook ({type(exc).__name__})") from None
    try:
        if sheet not in workbook.sheetnames:
            raise ValueError(f"the workbook has no sheet {sheet!r}")
        first = next(workbook[sheet].iter_rows(values_only=True), None)
        return [str(v) for v in first or () if v is not None]
    finally:
        workbook.close()


def _check_ndjson(path: Path, relative: str, sources: list[str]) -> ColumnCheck:
    documents: list[Any] = []
    with path.open("rb") as f:
        for _, line in zip(range(_NDJSON_SAMPLE), f, strict=False):
            try:
                documents.append(json.loads(line.decode("utf-8").lstrip("\ufeff")))
            except ValueError:
                continue
    if not documents:
        return ColumnCheck(file=relative, present=[], missing=[], unused=[], problem="no readable JSON line")
    parsed = {s: parse_json_path(s) for s in sources}
    seen = [
        s
        for s in sources
        if any(isinstance(d, dict) and extract(d, parsed[s]) is not None for d in documents)
    ]
    return ColumnCheck(
        file=relative, present=seen, missing=[], unused=[], unseen=[s for s in sources if s not in seen]
    )
