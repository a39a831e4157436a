"""Access to the staged tables (`<workspace>/staging/<system>/<table>.parquet`) on an Ibis backend."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ibis import BaseBackend

from medspace.core import InputError


@dataclass(frozen=True)
class StagedTables:
    """The staged tables of one workspace, read lazily on the given backend."""

    con: BaseBackend
    staging: Path

    def path(self, system: str, table: str) -> Path:
        return self.staging / system / f"{table}.parquet"

    def has(self, system: str, table: str) -> bool:
        return self.path(system, table).exists()

    def table(self, system: str, table: str) -> Any:
        path = self.path(system, table)
        if not path.exists():
            raise InputError(
                f"staged table {system}/{table} is missing; run `medspace ingest` first", file=str(path)
            )
        return self.con.read_parquet(str(path), table_name=f"staged_{system}_{table}")
