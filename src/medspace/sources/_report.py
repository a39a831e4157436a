"""The staging report: what was read, staged and quarantined, per file and table, and the problems found.

It is also written as ``staging/manifest.json``. It holds counts, rule names and messages, never values
from the rows.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from medspace.core import InputError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Problem(_Model):
    """A problem with a whole file or table (missing file or column, unreadable file, wrong encoding)."""

    message: str
    file: str | None = None
    row: int | None = None
    field: str | None = None
    rule: str | None = None

    @classmethod
    def from_error(cls, error: InputError) -> Problem:
        return cls(message=str(error), file=error.file, row=error.row, field=error.field, rule=error.rule)

    def to_error(self) -> InputError:
        """The problem as the error a caller may raise (e.g. the CLI with ``--strict``)."""
        return InputError(self.message, file=self.file, row=self.row, field=self.field, rule=self.rule)


class FileReport(_Model):
    """One export file: rows read, staged and quarantined, quarantine entries per rule.

    ``staged + quarantined == rows_read`` always. A file that could not be read at all (``failed``) has no
    rows read and one quarantine entry with a null row, counted under its rule.
    """

    system: str
    table: str
    file: str
    rows_read: int
    staged: int
    quarantined: int
    failed: bool = False
    rules: dict[str, int]
    #: For date columns whose spec accepts several formats: the values each format parsed, so mixed
    #: formats in one column show (domain.md §1.4). Columns with a single accepted format are left out.
    date_formats: dict[str, dict[str, int]] = {}


class TableReport(_Model):
    """One staging table: its Parquet file (relative to the workspace) and totals over its files."""

    system: str
    table: str
    path: str
    files: int
    rows_read: int
    staged: int
    quarantined: int


class StagingReport(_Model):
    """The result of `stage_exports`.

    Every row read is staged or quarantined: ``rows_read == staged + quarantined`` per file, table and in
    total. Files that could not be read at all are listed with ``failed`` and in ``problems``.
    """

    staging: Path
    files: list[FileReport]
    tables: list[TableReport]
    rules: dict[str, int]
    problems: list[Problem]

    @property
    def rows_read(self) -> int:
        return sum(t.rows_read for t in self.tables)

    @property
    def staged(self) -> int:
        return sum(t.staged for t in self.tables)

    @property
    def quarantined(self) -> int:
        return sum(t.quarantined for t in self.tables)

    def table(self, system: str, table: str) -> TableReport:
        """The report of one table."""
        for t in self.tables:
            if t.system == system and t.table == table:
                return t
        raise KeyError(f"{system}.{table}")

    def file(self, relative: str) -> FileReport:
        """The report of one file, by its path relative to the export folder."""
        for f in self.files:
            if f.file == relative:
                return f
        raise KeyError(relative)

    def manifest_json(self) -> str:
        """The report as the text of ``staging/manifest.json`` (stable: no paths or times)."""
        data = self.model_dump(mode="json", exclude={"staging"})
        data = {
            "version": 1,
            "totals": {"rows_read": self.rows_read, "staged": self.staged, "quarantined": self.quarantined},
            **data,
        }
        return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
