"""The sources stage: read each hospital system's exports by a declarative mapping spec into staging tables.

A mapping spec (YAML, one per source system, shipped under ``data/specs/``) names a system's tables, their
files and formats, primary keys and, per canonical column, where its value comes from and how it is parsed.
`stage_exports` applies the specs to an export folder and writes ``<workspace>/staging/``: one Parquet file
per table with lineage columns, a quarantine table holding every row that was not staged and why, and a
manifest of counts. Nothing is dropped silently.

Example:
    >>> specs = load_specs()
    >>> specs[1].system, specs[1].table("patients").primary_key
    ('his', ['his_patient_id'])
"""

from medspace.sources._convert import ARROW_TYPES
from medspace.sources._report import FileReport, Problem, StagingReport, TableReport
from medspace.sources._spec import (
    CODE_SYSTEMS,
    ColumnSpec,
    CsvFormat,
    NdjsonFormat,
    SourceSpec,
    TableSpec,
    XlsxFormat,
    load_spec,
    load_specs,
    parse_spec,
)
from medspace.sources._stage import LINEAGE, QUARANTINE, stage_exports

__all__ = [
    "ARROW_TYPES",
    "CODE_SYSTEMS",
    "LINEAGE",
    "QUARANTINE",
    "ColumnSpec",
    "CsvFormat",
    "FileReport",
    "NdjsonFormat",
    "Problem",
    "SourceSpec",
    "StagingReport",
    "TableReport",
    "TableSpec",
    "XlsxFormat",
    "load_spec",
    "load_specs",
    "parse_spec",
    "stage_exports",
]
