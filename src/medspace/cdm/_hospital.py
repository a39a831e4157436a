"""The cdm stage's view of a hospital: the canonical staged tables, the site's declarations and the link
stage's output of one workspace, on one backend, and the account of what became of every staged row.

The build reads only the canonical hospital model (``staging/<table>.parquet``, whose tables and columns are
``sources/data/model/hospital.yaml``), the site declarations staging copied to ``staging/site.json``
(precedence of systems, code systems) and ``link/`` (persons, visits, events). It never names a source
system, raw table or raw column: systems appear only as data, in the ``system`` column.

Every builder routes each staged row of the canonical table it reads to one outcome: the CDM table it is
written to, or an exclusion by a documented rule (`RULES`). `HospitalData.route` records that outcome per
row, so the manifest accounts for every staged row (DESIGN: nothing lost).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
import yaml

from medspace.core import InputError, small_table

from ._mappings import Mappings, load_mappings

#: Lineage columns staging adds to every canonical row (contract §1).
LINEAGE = ("system", "_source_table", "_source_file", "_source_row")

_MODEL_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
}

#: The rules by which a staged row is not written to the CDM (or is written with a derived value), with the
#: reason the manifest states beside each count.
RULES: dict[str, str] = {
    "orphan": "the link stage gave the row no person (its patient record is missing or was quarantined); "
    "OMOP rows need a person_id",
    "not_linked": "the row has no entry in link/events.parquet (link ran on other staged data)",
    "not_a_visit": "a refunded or cancelled registration, or an encounter whose visit has no person: "
    "not a visit",
    "no_visit": "the row's visit is not a visit_occurrence (unlinked or not a visit); costs are per visit",
    "no_date": "neither the row nor its visit gives a date, and the CDM table requires one",
    "no_text": "a note or imaging report without text (note_text is required)",
    "no_code": "a diagnosis without a code",
    "context_only": "context for other rows (lab orders and specimens date and place their results); "
    "OMOP CDM v5.4 has no table for them",
    "no_cdm_table": "imaging studies (the archive's record of images) have no OMOP CDM v5.4 table; the "
    "imaging exam is the procedure and its report the note",
    "dated_by_visit": "written, dated by its visit's start because the row keeps no time of its own",
}


@cache
def _model() -> dict[str, Any]:
    text = resources.files("medspace.sources").joinpath("data", "model", "hospital.yaml").read_text("utf-8")
    model: dict[str, Any] = yaml.safe_load(text)
    return model


@cache
def model_event_times() -> dict[str, str]:
    """The column that dates each canonical table's rows (the model's ``event_time``), where it has one."""
    return {name: t["event_time"] for name, t in _model()["tables"].items() if t.get("event_time")}


@cache
def model_schemas() -> dict[str, pa.Schema]:
    """Every canonical table's Arrow schema as staging writes it: model columns, then lineage."""
    model = _model()
    out: dict[str, pa.Schema] = {}
    for name, table in model["tables"].items():
        fields = [pa.field(c, _MODEL_TYPES[spec["type"]]) for c, spec in table["columns"].items()]
        fields += [
            pa.field("system", pa.string()),
            pa.field("_source_table", pa.string()),
            pa.field("_source_file", pa.string()),
            pa.field("_source_row", pa.int64()),
        ]
        out[name] = pa.schema(fields)
    return out


@dataclass(frozen=True)
class SiteDeclarations:
    """What the cdm stage reads of ``staging/site.json``: whose values win, and the code systems in use."""

    site: str
    precedence: tuple[str, ...]
    #: code system name -> OMOP vocabulary_id, or None when the site declares none.
    code_systems: dict[str, str | None]

    @classmethod
    def read(cls, workspace: Path) -> SiteDeclarations:
        path = workspace / "staging" / "site.json"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            systems = raw.get("code_systems") or {}
            return cls(
                site=str(raw["site"]),
                precedence=tuple(str(s) for s in raw.get("precedence") or ()),
                code_systems={
                    str(k): (v or {}).get("vocabulary_id") if isinstance(v, dict) else None
                    for k, v in systems.items()
                },
            )
        except FileNotFoundError as exc:
            raise InputError(
                "the workspace's staging has no site.json; run `medspace ingest` again", file=str(path)
            ) from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"site.json is not a staged site declaration: {exc}", file=str(path)) from exc


@dataclass
class Route:
    """Where each staged row of one canonical table went: ``outcome`` is a CDM table name, or
    ``excluded:<rule>``. ``also`` are further CDM tables some rows were written to as well."""

    table: str
    rows: Any  # an Ibis table with one column, ``outcome``
    also: dict[str, Any] = field(default_factory=dict)  # CDM table -> Ibis table of the rows written there


def outcome(written: str | Any, *exclusions: tuple[Any, str]) -> Any:
    """A row's outcome: the first exclusion whose condition holds, else the CDM table it is written to."""
    target = ibis.literal(written) if isinstance(written, str) else written
    if not exclusions:
        return target
    return ibis.cases(*((cond, ibis.literal(f"excluded:{rule}")) for cond, rule in exclusions), else_=target)


class HospitalData:
    """The staged canonical tables, site declarations, link output and mappings of one workspace."""

    def __init__(self, con: Any, workspace: Path, mappings: Mappings | None = None) -> None:
        self.con = con
        self.workspace = workspace
        self.mappings = mappings or load_mappings()
        self.site = SiteDeclarations.read(workspace)
        self.routes: dict[str, Route] = {}
        self.dated_by_visit: dict[str, Any] = {}

    def staged(self, table: str) -> Any:
        """One canonical table as staged; an empty table of the model's schema when the site has none."""
        schema = model_schemas()[table]
        path = self.workspace / "staging" / f"{table}.parquet"
        if not path.exists():
            return small_table(self.con, f"cdm_in_{table}", schema.empty_table())
        t = self.con.read_parquet(str(path), table_name=f"cdm_in_{table}")
        missing = [f for f in schema if f.name not in t.columns]
        if missing:  # an older staging without a column the model now has: null, typed
            t = t.mutate(**{f.name: ibis.null(_ibis_type(f.type)) for f in missing})
        return t

    def linked(self, name: str) -> Any:
        path = self.workspace / "link" / f"{name}.parquet"
        return self.con.read_parquet(str(path), table_name=f"cdm_link_{name}")

    def rows(self, table: str) -> Any:
        """Every staged row of ``table`` with the person, visit and status the link stage gave it.

        Joined on (table, system, record_key), as link/events.parquet keys them (unpivoted rows share their
        source file and row). Rows link did not list keep null ``ev_*`` columns: callers route them.
        ``src`` orders rows deterministically: system and record key.
        """
        t = self.staged(table)
        e = self.linked("events")
        e = e.filter(e.table == table).select(
            ev_system=e.system,
            ev_key=e.record_key,
            ev_person=e.person_id,
            ev_visit=e.visit_id,
            ev_status=e.status,
        )
        j = t.left_join(e, [t.system == e.ev_system, t.record_key == e.ev_key]).drop("ev_system", "ev_key")
        return j.mutate(src=j.system + ":" + j.record_key)

    def route(self, table: str, rows: Any, result: Any, **also: Any) -> None:
        """Record the outcome of every row of canonical ``table`` (``rows``: all of them, unfiltered)."""
        self.routes[table] = Route(table, rows.select(outcome=result), dict(also))

    def lookup(self, name: str, rows: list[dict[str, Any]], schema: pa.Schema) -> Any:
        """A small reference table (a mapping) on the backend."""
        return small_table(self.con, f"cdm_map_{name}", pa.Table.from_pylist(rows, schema=schema))

    def precedence(self, system: Any) -> Any:
        """An integer rank of a ``system`` column by the site's precedence (unlisted systems last)."""
        order = self.site.precedence
        if not order:
            return ibis.literal(0)
        return ibis.cases(*((system == s, i) for i, s in enumerate(order)), else_=len(order))


def orphan_rules(t: Any) -> tuple[tuple[Any, str], ...]:
    """The exclusions every person-level row shares: not listed by link, or listed without a person."""
    return ((t.ev_status.isnull(), "not_linked"), (t.ev_person.isnull(), "orphan"))


def _ibis_type(dtype: pa.DataType) -> str:
    return {
        pa.string(): "string",
        pa.int64(): "int64",
        pa.float64(): "float64",
        pa.bool_(): "boolean",
        pa.date32(): "date",
        pa.timestamp("us"): "timestamp",
    }[dtype]
