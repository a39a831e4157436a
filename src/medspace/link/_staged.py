"""The staged canonical hospital model of one workspace, as the link stage reads it.

Staging writes ``<workspace>/staging/<table>.parquet`` for every table of the canonical hospital model
(``sources/data/model/hospital.yaml``), ``quarantine.parquet`` and ``site.json``. This module opens them on an
Ibis backend and gives link the few site declarations it needs (``patient_index``, ``precedence``,
``identifiers``) from ``site.json`` alone, and each table's event time from the model. Nothing here knows
which systems a site has.

Paths reach the engine as arguments of ``read_parquet`` (DuckDB binds them, Spark takes them as paths), never
spliced into SQL text, so a workspace path may hold any character.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import pyarrow.parquet as pq
import yaml
from ibis import BaseBackend

from medspace.core import InputError

InpatientNumbering = Literal["per_patient", "per_admission"]


@dataclass(frozen=True)
class SiteDeclarations:
    """What link needs to know about a site, read from ``staging/site.json``."""

    site: str
    patient_index: str | None  # the system whose patient records anchor persons
    precedence: tuple[str, ...]  # whose value wins when systems disagree on one fact
    inpatient_no: InpatientNumbering

    def rank(self, system: str) -> int:
        """A system's place in precedence (systems not named come after every named one)."""
        return self.precedence.index(system) if system in self.precedence else len(self.precedence)


def read_declarations(path: Path) -> SiteDeclarations:
    """Read the site declarations staging copied from the site mapping.

    Raises:
        InputError: the file is missing or not a site declaration.
    """
    if not path.exists():
        raise InputError(
            "the staged site declaration is missing; run `medspace ingest` first", file=str(path)
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"the staged site declaration cannot be read ({exc})", file=str(path)) from exc
    if not isinstance(data, dict):
        raise InputError("the staged site declaration is not a JSON object", file=str(path))
    numbering = (data.get("identifiers") or {}).get("inpatient_no", "per_patient")
    if numbering not in ("per_patient", "per_admission"):
        raise InputError(
            f"identifiers.inpatient_no is {numbering!r}; use per_patient or per_admission",
            file=str(path),
            field="identifiers.inpatient_no",
        )
    return SiteDeclarations(
        site=str(data.get("site", "")),
        patient_index=data.get("patient_index"),
        precedence=tuple(data.get("precedence") or ()),
        inpatient_no=numbering,
    )


def model_event_times() -> dict[str, str | None]:
    """Each canonical table's event-time column (the time an event of the table happened), by the model."""
    text = files("medspace.sources").joinpath("data/model/hospital.yaml").read_text(encoding="utf-8")
    model = yaml.safe_load(text)
    return {name: table.get("event_time") for name, table in model["tables"].items()}


@dataclass(frozen=True)
class StagedTables:
    """The staged canonical tables of one workspace, read lazily on the given backend."""

    con: BaseBackend
    staging: Path

    @cached_property
    def site(self) -> SiteDeclarations:
        return read_declarations(self.staging / "site.json")

    @cached_property
    def event_times(self) -> dict[str, str | None]:
        return model_event_times()

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
