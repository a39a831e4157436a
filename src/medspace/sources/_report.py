"""The staging report: what was read, staged, mapped, quarantined and excluded, per file, raw table, map and
canonical table, and the problems found.

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
        return cls(message=error.message, file=error.file, row=error.row, field=error.field, rule=error.rule)

    def to_error(self) -> InputError:
        """The problem as the error a caller may raise (e.g. the CLI)."""
        return InputError(self.message, file=self.file, row=self.row, field=self.field, rule=self.rule)


class FileReport(_Model):
    """One export file: rows read, staged and quarantined, quarantine entries per rule.

    ``staged + quarantined == rows_read`` always. A file that could not be read as a whole (``failed``) is
    either one that could not be opened (no rows read, one quarantine entry with a null row, counted under
    its rule) or one of which no line decoded (every line quarantined with its bytes).
    """

    system: str
    table: str
    file: str
    rows_read: int
    staged: int
    quarantined: int
    failed: bool = False
    rules: dict[str, int]
    #: For date fields that accept several formats: the values each format parsed, so mixed formats show
    #: (domain.md §1.4). Fields with a single accepted format are left out.
    date_formats: dict[str, dict[str, int]] = {}


class TableReport(_Model):
    """One raw table: totals over its files (phase 1: read into typed fields)."""

    system: str
    table: str
    files: int
    rows_read: int
    staged: int
    quarantined: int


class MapReport(_Model):
    """One map of the site (phase 2): where the staged rows of its raw table went.

    ``rows * slots == written + quarantined + excluded + empty_slots`` (``slots`` is 1 without unpivot).
    """

    index: int
    source: str
    to: str
    rows: int
    slots: int
    written: int
    quarantined: int
    excluded: int
    empty_slots: int
    excluded_because: str | None = None
    rules: dict[str, int] = {}


class CanonicalReport(_Model):
    """One canonical table: its Parquet file (relative to the workspace), rows and the maps feeding it."""

    table: str
    path: str
    rows: int
    maps: list[int]


class StagingReport(_Model):
    """The result of `stage_site`.

    Every row read is staged or quarantined (per file and raw table), and every staged row of a map's raw
    table is written, quarantined, excluded or an empty slot. Files that could not be read at all are
    listed with ``failed`` and in ``problems``.
    """

    site: str
    staging: Path
    files: list[FileReport]
    tables: list[TableReport]
    maps: list[MapReport]
    canonical: list[CanonicalReport]
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
        """Rows quarantined while reading (phase 1) plus output rows quarantined by the maps (phase 2)."""
        return sum(t.quarantined for t in self.tables) + sum(m.quarantined for m in self.maps)

    @property
    def empty_tables(self) -> list[str]:
        """Canonical tables nothing was written to."""
        return [c.table for c in self.canonical if c.rows == 0]

    @property
    def failed_files(self) -> list[FileReport]:
        """Files that could not be used at all: unreadable, or lacking a column the mapping reads."""
        return [f for f in self.files if f.failed or f.rules.get("missing_column")]

    def table(self, system: str, table: str) -> TableReport:
        """The report of one raw table."""
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

    def canonical_table(self, name: str) -> CanonicalReport:
        """The report of one canonical table."""
        for c in self.canonical:
            if c.table == name:
                return c
        raise KeyError(name)

    def over_quarantine(self, limit: float) -> list[str]:
        """What quarantined more than ``limit`` (a share, 0.01 = 1%) of its rows: ``"overall"`` and raw
        tables as ``system.table`` (their own phase-1 rows plus the phase-2 rows of maps reading them).

        Example:
            >>> report.over_quarantine(0.01)  # doctest: +SKIP
            ['lis.results']
        """
        over = []
        total_in = self.rows_read + sum(m.rows * m.slots for m in self.maps)
        if total_in and self.quarantined / total_in > limit:
            over.append("overall")
        for t in self.tables:
            maps = [m for m in self.maps if m.source == f"{t.system}.{t.table}"]
            rows = t.rows_read + sum(m.rows * m.slots for m in maps)
            bad = t.quarantined + sum(m.quarantined for m in maps)
            failed = any(f.failed for f in self.files if f.system == t.system and f.table == t.table)
            if failed or (rows and bad / rows > limit):
                over.append(f"{t.system}.{t.table}")
        return over

    def manifest_json(self) -> str:
        """The report as the text of ``staging/manifest.json`` (stable: no paths or times)."""
        data = self.model_dump(mode="json", exclude={"staging"})
        data = {
            "version": 2,
            "totals": {"rows_read": self.rows_read, "staged": self.staged, "quarantined": self.quarantined},
            "empty_tables": self.empty_tables,
            **data,
        }
        return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
