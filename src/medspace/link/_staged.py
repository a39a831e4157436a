"""The staged canonical hospital model of one workspace, as the link stage reads it.

Staging writes ``<workspace>/staging/<table>.parquet`` for every table of the canonical hospital model
(``sources/data/model/hospital.yaml``), ``quarantine.parquet`` and ``site.json``. This module opens them on an
Ibis backend, with the site declarations (``patient_index``, ``precedence``, ``identifiers``) read from
``site.json`` alone and each table's event time from the model. Nothing here knows
which systems a site has.

Paths reach the engine as arguments of ``read_parquet`` (DuckDB binds them, Spark takes them as paths), never
spliced into SQL text, so a workspace path may hold any character.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from ibis import BaseBackend

from medspace.core import InputError
from medspace.sources import SiteDeclarations, load_model, read_site


@dataclass(frozen=True)
class StagedTables:
    """The staged canonical tables of one workspace, read lazily on the given backend."""

    con: BaseBackend
    staging: Path

    @cached_property
    def site(self) -> SiteDeclarations:
        return read_site(self.staging.parent)

    @cached_property
    def per_admission(self) -> bool:
        """Whether the site gives a new inpatient number to every admission (domain.md 1.1)."""
        return self.site.identifiers.inpatient_no == "per_admission"

    @cached_property
    def event_times(self) -> dict[str, str | None]:
        """Each canonical table's event-time column, by the model (in model order)."""
        return {name: table.event_time for name, table in load_model().tables.items()}

    @property
    def tables(self) -> tuple[str, ...]:
        """The canonical tables, in model order."""
        return tuple(self.event_times)

    def path(self, table: str) -> Path:
        return self.staging / f"{table}.parquet"

    def columns(self, table: str) -> frozenset[str]:
        """The staged table's columns (model columns and lineage), from the Parquet footer."""
        return frozenset(pq.read_schema(self._existing(table)).names)

    def rows(self, table: str) -> int:
        return int(pq.read_metadata(self._existing(table)).num_rows)

    def filled(self, table: str, column: str) -> bool:
        """Whether any row of the staged table has a value in ``column``, by the Parquet footer's statistics
        (no scan; True when a row group keeps no statistics)."""
        path = self._existing(table)
        meta = pq.read_metadata(path)
        names = pq.read_schema(path).names
        if column not in names:
            return False
        index = names.index(column)
        for group in range(meta.num_row_groups):
            chunk = meta.row_group(group)
            stats = chunk.column(index).statistics
            if chunk.num_rows and (
                stats is None or stats.null_count is None or stats.null_count < chunk.num_rows
            ):
                return True
        return False

    def table(self, table: str) -> Any:
        return self.con.read_parquet(str(self._existing(table)), table_name=f"staged_{table}")

    def quarantine(self) -> Any | None:
        """The quarantine table, or None when staging quarantined nothing (or wrote no file)."""
        path = self.staging / "quarantine.parquet"
        if not path.exists() or pq.read_metadata(path).num_rows == 0:
            return None
        return self.con.read_parquet(str(path), table_name="staged_quarantine")

    def _existing(self, table: str) -> Path:
        path = self.path(table)
        if not path.exists():
            raise InputError(
                f"staged table {table} is missing; run `medspace ingest` first (staging writes every "
                "table of the canonical model, empty ones included)",
                file=str(path),
            )
        return path
