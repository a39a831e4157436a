"""Site mappings: how one site's raw exports become the canonical hospital model.

A site mapping is one YAML file (shipped under ``data/sites/`` or given as a path). It declares the site's
systems and, per system, its raw tables (files, format, key and typed fields, read by the `TableSpec`
mechanics), then its ``maps``: each map takes one raw table to one canonical table, with a DuckDB SQL
expression per canonical column over the raw table's field names (and the fields of lookup tables, joined
by their key). A map may unpivot numbered slots (a front sheet's 40 procedure columns), skip empty slots,
filter rows with a documented reason, and several maps may feed one canonical table.

Everything is checked when the file is loaded, and every problem names the file, the line and the field:
YAML structure, field options, that ``from`` and lookup tables exist, that ``to`` is a model table and
every mapped column a model column, that required columns are mapped, that code-system constants are
declared by the site, that every field an expression reads exists (expressions are parsed with sqlglot),
and that expressions are expressions (no sub-queries, no table functions reading files).

A spec never runs SQL: `medspace.sources.stage_site` binds the expressions to DuckDB.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import sqlglot
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlglot import exp

from medspace.core import SpecError
from medspace.sources._jsonpath import parse_json_path
from medspace.sources._model import HospitalModel, load_model
from medspace.sources._spec import TableSpec

#: The site mapping shipped as the default of `medspace ingest` and `medspace run`.
DEFAULT_SITE = "synthetic-hospital"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)(?::([^{}]*))?\}")
#: The alias the raw table of a map has in its SQL; lookups may not use it.
BASE_ALIAS = "t"
# Table functions and statements an expression may not reach: a mapping transforms values, it never reads
# files or other databases (DuckDB's external access is switched off while maps run, too).
_FORBIDDEN_NODES = (exp.Select, exp.Subquery, exp.Table, exp.Command, exp.Insert, exp.Delete, exp.Update)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CodeSystem(_Model):
    """A code system the site's data uses (an open set: each site declares its own)."""

    description: str | None = None
    vocabulary_id: str | None = None


class Identifiers(_Model):
    """How the site's hospital-wide identifiers behave."""

    inpatient_no: Literal["per_patient", "per_admission"] = "per_patient"


class SystemSpec(_Model):
    """One source system of the site and its raw tables."""

    description: str | None = None
    tables: dict[str, TableSpec]


class Lookup(_Model):
    """A LEFT JOIN of a map's raw table to another raw table of the site, on that table's whole key."""

    table: str
    alias: str = Field(alias="as")
    on: dict[str, str]

    @field_validator("alias")
    @classmethod
    def _alias_name(cls, value: str) -> str:
        if not _NAME.match(value) or value == BASE_ALIAS:
            raise ValueError(f"lookup alias {value!r} must be snake_case and not {BASE_ALIAS!r}")
        return value


def _sql_literal(value: Any) -> Any:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return value


class MapSpec(_Model):
    """One raw table mapped to one canonical table."""

    to: str
    source: str = Field(alias="from")
    description: str | None = None
    columns: dict[str, str]
    unpivot: dict[str, tuple[int, int]] | None = None
    skip_if_null: str | None = None
    where: str | None = None
    excluded_because: str | None = None
    lookups: list[Lookup] = Field(default_factory=list)

    @field_validator("columns", mode="before")
    @classmethod
    def _constants_as_sql(cls, value: Any) -> Any:
        # `rank: 1` and `recalled: true` in YAML mean the SQL constants 1 and TRUE.
        if isinstance(value, dict):
            return {k: _sql_literal(v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _options_fit(self) -> MapSpec:
        if (self.where is None) != (self.excluded_because is None):
            raise ValueError("`where` and `excluded_because` go together: say why the rows are excluded")
        if self.unpivot is not None:
            if len(self.unpivot) != 1:
                raise ValueError("unpivot takes one slot variable, e.g. {i: [1, 10]}")
            [(_, (first, last))] = self.unpivot.items()
            if first > last:
                raise ValueError("unpivot: the first slot is after the last")
        if self.skip_if_null is not None and self.unpivot is None:
            raise ValueError("skip_if_null applies to unpivoted maps; use `where` to filter rows")
        if not self.columns:
            raise ValueError("a map needs at least one column")
        return self

    @property
    def system(self) -> str:
        return self.source.split(".", 1)[0]

    @property
    def table(self) -> str:
        return self.source.split(".", 1)[1] if "." in self.source else ""

    @property
    def slots(self) -> list[int | None]:
        """The unpivot slots, or ``[None]`` for a map without unpivot."""
        if self.unpivot is None:
            return [None]
        [(_, (first, last))] = self.unpivot.items()
        return list(range(first, last + 1))

    def expression(self, text: str, slot: int | None) -> str:
        """``text`` with the slot variable substituted (``{i}``, ``{i:02d}``)."""
        if slot is None or self.unpivot is None:
            return text
        return _substitute(text, {next(iter(self.unpivot)): slot})


class SystemInfo(_Model):
    """A system as downstream stages see it in ``site.json``: its description and raw tables."""

    description: str | None = None
    tables: list[str]


class SiteDeclarations(_Model):
    """The declarations of the site a workspace was staged from (``staging/site.json``).

    Downstream stages read site facts (which system anchors persons, whose value wins, how inpatient
    numbers behave, which code systems exist) only from here.
    """

    site: str
    model: int
    patient_index: str
    precedence: list[str]
    identifiers: Identifiers
    code_systems: dict[str, CodeSystem]
    systems: dict[str, SystemInfo]


class Site(_Model):
    """A site mapping: the site's systems, raw tables and maps onto the canonical model."""

    site: str
    model: int
    description: str | None = None
    patient_index: str
    precedence: list[str]
    identifiers: Identifiers = Field(default_factory=Identifiers)
    code_systems: dict[str, CodeSystem]
    systems: dict[str, SystemSpec]
    maps: list[MapSpec]

    def raw_table(self, reference: str) -> TableSpec:
        """The raw table ``system.table``.

        Raises:
            KeyError: the site has no such table.
        """
        system, _, table = reference.partition(".")
        return self.systems[system].tables[table]

    def raw_tables(self) -> Iterator[tuple[str, TableSpec]]:
        """Every raw table as (system, table spec), in file order."""
        for system, spec in self.systems.items():
            for table in spec.tables.values():
                yield system, table

    def declarations(self) -> SiteDeclarations:
        """What ``site.json`` holds."""
        return SiteDeclarations(
            site=self.site,
            model=self.model,
            patient_index=self.patient_index,
            precedence=self.precedence,
            identifiers=self.identifiers,
            code_systems=self.code_systems,
            systems={
                name: SystemInfo(description=s.description, tables=list(s.tables))
                for name, s in self.systems.items()
            },
        )


# ------------------------------------------------------------------------------------- YAML with lines
class _LineDict(dict[Any, Any]):
    """A YAML mapping that remembers its line and the line of each key (1-based)."""

    line: int = 0
    lines: dict[Any, int]


class _LineList(list[Any]):
    line: int = 0
    lines: list[int]


# libyaml's parser when PyYAML was built with it (five times faster on a site file), else the pure-Python one.
try:
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]


class _LineLoader(_SafeLoader):
    """PyYAML's safe loader, recording where every mapping, sequence and key starts.

    Booleans are YAML 1.2's ``true`` and ``false`` only: YAML 1.1 would read a lookup's ``on:`` (and a
    ``yes``, ``no`` or ``off`` value code) as a boolean.
    """


_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in _SafeLoader.yaml_implicit_resolvers.items()
}
_LineLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LineDict:
    loader.flatten_mapping(node)
    result = _LineDict()
    result.line = node.start_mark.line + 1
    result.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} appears twice in one mapping", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> _LineList:
    result = _LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.lines = [child.start_mark.line + 1 for child in node.value]
    return result


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def _line_of(data: Any, loc: tuple[Any, ...]) -> int | None:
    """The line of the deepest node on ``loc`` (a pydantic error location) that the YAML has."""
    node, line = data, getattr(data, "line", None)
    for step in loc:
        in_dict = isinstance(node, _LineDict) and step in node
        in_list = isinstance(node, _LineList) and isinstance(step, int) and 0 <= step < len(node)
        if in_dict or in_list:
            line, node = node.lines[step], node[step]
        # other steps (a union's tag, a validator's name) are not in the YAML: stay on this node
    return line


# ------------------------------------------------------------------------------------- repeat expansion
def _substitute(text: str, values: dict[str, int]) -> str:
    def replace(match: re.Match[str]) -> str:
        name, spec = match.group(1), match.group(2)
        if name not in values:
            return match.group(0)
        return format(values[name], spec or "")

    return _PLACEHOLDER.sub(replace, text)


class _Problems:
    """Problems found in one site file, each with its location."""

    def __init__(self, file: str, data: Any) -> None:
        self.file = file
        self.data = data
        self.items: list[tuple[tuple[Any, ...], str, int | None]] = []

    def add(self, loc: tuple[Any, ...], message: str, line: int | None = None) -> None:
        """Record a problem at ``loc``; ``line`` when the location's node is no longer in the data."""
        self.items.append((loc, message, line if line is not None else _line_of(self.data, loc)))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        described = []
        for loc, message, line in self.items:
            where = ".".join(str(p) for p in loc) or "(top)"
            described.append(f"line {line}, {where}: {message}" if line else f"{where}: {message}")
        first_loc, _, first_line = self.items[0]
        more = f" ({len(described)} problems)" if len(described) > 1 else ""
        raise SpecError(
            f"invalid site mapping{more}: " + "; ".join(described) + "; fix the site file",
            file=self.file,
            row=first_line,
            field=".".join(str(p) for p in first_loc) or None,
            rule="site",
        )


def _expand_tables(data: Any, problems: _Problems) -> None:
    """Name each raw table by its key and expand fields with ``repeat`` into one field per value."""
    systems = data.get("systems") if isinstance(data, dict) else None
    if not isinstance(systems, dict):
        return
    for system, spec in systems.items():
        tables = spec.get("tables") if isinstance(spec, dict) else None
        if not isinstance(tables, dict):
            continue
        for name, table in tables.items():
            if not isinstance(table, dict):
                continue
            table.setdefault("name", name)
            fields = table.get("fields")
            if not isinstance(fields, _LineList):
                continue
            expanded = _LineList()
            expanded.line, expanded.lines = fields.line, []
            for index, item in enumerate(fields):
                loc = ("systems", system, "tables", name, "fields", index)
                if not isinstance(item, dict) or "repeat" not in item:
                    _check_json_paths(table, item, loc, problems)
                    expanded.append(item)
                    expanded.lines.append(fields.lines[index])
                    continue
                repeat = item["repeat"]
                ranges = _repeat_ranges(repeat)
                if ranges is None:
                    message = "repeat takes one variable and [first, last], e.g. {i: [1, 40]}"
                    problems.add((*loc, "repeat"), message, fields.lines[index])
                    continue
                variable, first, last = ranges
                for value in range(first, last + 1):
                    copy_ = copy.copy(item)
                    del copy_["repeat"]
                    for key in ("name", "source"):
                        if isinstance(copy_.get(key), str):
                            copy_[key] = _substitute(copy_[key], {variable: value})
                        elif isinstance(copy_.get(key), list):
                            copy_[key] = [_substitute(str(s), {variable: value}) for s in copy_[key]]
                    _check_json_paths(table, copy_, loc, problems)
                    expanded.append(copy_)
                    expanded.lines.append(fields.lines[index])
            table["fields"] = expanded


def _check_json_paths(table: Any, item: Any, loc: tuple[Any, ...], problems: _Problems) -> None:
    """For an NDJSON table, the field's sources are JSON paths: check them here, where the line is known."""
    fmt = table.get("format")
    if not isinstance(fmt, dict) or fmt.get("kind") != "ndjson" or not isinstance(item, dict):
        return
    source = item.get("source")
    for path in [source] if isinstance(source, str) else source if isinstance(source, list) else []:
        try:
            parse_json_path(str(path))
        except ValueError as exc:
            problems.add((*loc, "source"), str(exc))


def _repeat_ranges(repeat: Any) -> tuple[str, int, int] | None:
    if not isinstance(repeat, dict) or len(repeat) != 1:
        return None
    [(variable, bounds)] = repeat.items()
    if (
        not isinstance(variable, str)
        or not isinstance(bounds, list)
        or len(bounds) != 2
        or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
        or bounds[0] > bounds[1]
    ):
        return None
    return variable, bounds[0], bounds[1]


# ------------------------------------------------------------------------------------- loading
def parse_site(text: str, name: str, model: HospitalModel | None = None) -> Site:
    """Parse and check a site mapping from YAML text; ``name`` is the file named in errors.

    Raises:
        SpecError: the YAML is malformed or the mapping is invalid; the error names the file, the line
            (``row``) and the field.
    """
    try:
        data: Any = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise SpecError(f"not valid YAML: {exc}", file=name, row=line, rule="yaml") from None
    problems = _Problems(name, data)
    if not isinstance(data, dict):
        problems.add((), "a site mapping is a YAML mapping with site, systems and maps")
        problems.raise_if_any()
    _expand_tables(data, problems)
    problems.raise_if_any()
    try:
        site = Site.model_validate(data)
    except ValidationError as exc:
        for item in exc.errors():
            problems.add(tuple(item["loc"]), item["msg"].removeprefix("Value error, "))
        problems.raise_if_any()
        raise  # pragma: no cover - raise_if_any raised
    _resolve(site, model or load_model(), problems)
    problems.raise_if_any()
    return site


def _shipped_sites() -> list[str]:
    folder = resources.files("medspace.sources").joinpath("data", "sites")
    return sorted(e.name.rsplit(".", 1)[0] for e in folder.iterdir() if e.name.endswith((".yaml", ".yml")))


def load_site(name_or_path: str | Path = DEFAULT_SITE) -> Site:
    """Load a site mapping: a shipped site by name, or a YAML file by path.

    Args:
        name_or_path: ``synthetic-hospital`` (a site shipped under ``sources/data/sites/``), or the path
            of a site file.

    Returns:
        The checked site mapping.

    Raises:
        SpecError: no such site or file, or the mapping is invalid (file, line and field named).

    Example:
        >>> site = load_site("synthetic-hospital")
        >>> site.patient_index, site.raw_table("his.patients").primary_key
        ('his', ['his_patient_id'])
    """
    text_name = str(name_or_path)
    path = Path(name_or_path)
    if isinstance(name_or_path, Path) or text_name.endswith((".yaml", ".yml")) or path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(
                f"cannot read the site file: {exc.strerror}", file=text_name, rule="site"
            ) from None
        return parse_site(text, text_name)
    if text_name not in _shipped_sites():
        raise SpecError(
            f"no shipped site {text_name!r}; give a site file (.yaml) or one of "
            f"{', '.join(_shipped_sites())}",
            rule="site",
        )
    entry = resources.files("medspace.sources").joinpath("data", "sites", f"{text_name}.yaml")
    return parse_site(entry.read_text(encoding="utf-8"), f"{text_name}.yaml")


def read_site(workspace: Path) -> SiteDeclarations:
    """The declarations of the site the workspace was staged from (``<workspace>/staging/site.json``).

    Raises:
        SpecError: the workspace has not been staged (run ``medspace ingest``) or site.json is invalid.
    """
    path = Path(workspace) / "staging" / "site.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SpecError(
            "the workspace has no readable staging/site.json; run `medspace ingest` first",
            file=str(path),
            rule="site",
        ) from None
    try:
        return SiteDeclarations.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"invalid site.json: {exc.errors()[0]['msg']}", file=str(path), rule="site") from None


# ------------------------------------------------------------------------------------- resolution
def _resolve(site: Site, model: HospitalModel, problems: _Problems) -> None:
    if site.model != model.version:
        problems.add(
            ("model",), f"the site maps model version {site.model}; this medspace has {model.version}"
        )
    for name in site.systems:
        if not _NAME.match(name):
            problems.add(("systems", name), f"system name {name!r} must be snake_case")
    if site.patient_index not in site.systems:
        problems.add(("patient_index",), f"{site.patient_index!r} is not one of the site's systems")
    for index, system in enumerate(site.precedence):
        if system not in site.systems:
            problems.add(("precedence", index), f"{system!r} is not one of the site's systems")
    if len(set(site.precedence)) != len(site.precedence):
        problems.add(("precedence",), "a system is listed twice")
    for index, mapping in enumerate(site.maps):
        _resolve_map(site, model, mapping, ("maps", index), problems)


def _fields(site: Site, reference: str) -> set[str] | None:
    try:
        return {c.name for c in site.raw_table(reference).columns}
    except KeyError:
        return None


def _resolve_map(
    site: Site, model: HospitalModel, mapping: MapSpec, loc: tuple[Any, ...], problems: _Problems
) -> None:
    fields = _fields(site, mapping.source)
    if fields is None:
        problems.add((*loc, "from"), f"{mapping.source!r} is not a raw table of the site (system.table)")
        return
    if mapping.to not in model.tables:
        problems.add((*loc, "to"), f"{mapping.to!r} is not a table of the hospital model")
        return
    table = model.tables[mapping.to]
    scope: dict[str, set[str]] = {BASE_ALIAS: fields}
    for i, lookup in enumerate(mapping.lookups):
        lookup_fields = _fields(site, lookup.table)
        if lookup_fields is None:
            problems.add((*loc, "lookups", i, "table"), f"{lookup.table!r} is not a raw table of the site")
            continue
        if lookup.alias in scope:
            problems.add((*loc, "lookups", i, "as"), f"the alias {lookup.alias!r} is used twice")
        scope[lookup.alias] = lookup_fields
        for mine, theirs in lookup.on.items():
            if mine not in fields:
                problems.add((*loc, "lookups", i, "on"), f"{mine!r} is not a field of {mapping.source}")
            if theirs not in lookup_fields:
                problems.add((*loc, "lookups", i, "on"), f"{theirs!r} is not a field of {lookup.table}")
        key = site.raw_table(lookup.table).primary_key
        if sorted(lookup.on.values()) != sorted(key):
            problems.add(
                (*loc, "lookups", i, "on"),
                f"a lookup joins on the whole key of {lookup.table} ({', '.join(key)}), so that it never "
                "multiplies rows",
            )
    for column, text in mapping.columns.items():
        where = (*loc, "columns", column)
        if column not in table.columns:
            problems.add(where, f"{column!r} is not a column of the model table {mapping.to}")
            continue
        for slot in _check_slots(mapping):
            tree = _check_expression(mapping.expression(text, slot), scope, where, problems)
            if tree is None:
                break
            _check_constants(site, column, table.columns[column].values, tree, where, problems)
    for column, spec in table.columns.items():
        if spec.required and column not in mapping.columns:
            problems.add((*loc, "columns"), f"the model requires {mapping.to}.{column}; map it")
    for option in ("skip_if_null", "where"):
        text = getattr(mapping, option)
        if text is not None:
            for slot in _check_slots(mapping):
                if _check_expression(mapping.expression(text, slot), scope, (*loc, option), problems) is None:
                    break


def _check_slots(mapping: MapSpec) -> list[int | None]:
    slots = mapping.slots
    return [slots[0], slots[-1]] if len(slots) > 1 else slots


def _check_expression(
    text: str, scope: dict[str, set[str]], loc: tuple[Any, ...], problems: _Problems
) -> exp.Expression | None:
    try:
        tree = sqlglot.parse_one(text, read="duckdb")
    except sqlglot.errors.ParseError as exc:
        problems.add(loc, f"not a valid SQL expression: {str(exc).splitlines()[0]}")
        return None
    if isinstance(tree, exp.Star) or any(isinstance(n, _FORBIDDEN_NODES) for n in tree.walk()):
        problems.add(loc, "an expression may not hold a query, a table or a statement")
        return None
    for column in tree.find_all(exp.Column):
        qualifier, name = column.table, column.name
        if qualifier and qualifier not in scope:
            problems.add(loc, f"{qualifier}.{name}: {qualifier!r} is not a lookup alias of this map")
        elif not qualifier and name not in scope[BASE_ALIAS]:
            problems.add(loc, f"{name!r} is not a field of the map's raw table")
        elif qualifier and name not in scope[qualifier]:
            problems.add(loc, f"{qualifier}.{name}: {name!r} is not a field of that lookup table")
    return tree


def _check_constants(
    site: Site,
    column: str,
    values: list[str] | None,
    tree: exp.Expression,
    loc: tuple[Any, ...],
    problems: _Problems,
) -> None:
    literals = [n.this for n in tree.find_all(exp.Literal) if n.is_string]
    if column.endswith("code_system"):
        for literal in literals:
            if literal not in site.code_systems:
                problems.add(
                    loc,
                    f"code system {literal!r} is not declared in the site's code_systems "
                    f"({', '.join(sorted(site.code_systems))})",
                )
    if values is not None and isinstance(tree, exp.Literal) and tree.is_string and tree.this not in values:
        problems.add(loc, f"{tree.this!r} is not one of the column's values ({', '.join(values)})")


def qualified(text: str, lookups: set[str]) -> str:
    """The expression with every unqualified field qualified by the raw table's alias, as DuckDB SQL
    (a lookup's key field often has the raw table's field name; unqualified it would be ambiguous)."""
    tree = sqlglot.parse_one(text, read="duckdb")

    def qualify(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table:
            return exp.column(node.name, table=BASE_ALIAS, quoted=True)
        if isinstance(node, exp.Column) and node.table in lookups:
            return exp.column(node.name, table=node.table, quoted=True)
        return node

    return tree.transform(qualify).sql(dialect="duckdb")


def fields_read(site: Site) -> dict[str, set[str]]:
    """Per raw table (``system.table``), the fields some map reads (as its source or as a lookup)."""
    read: dict[str, set[str]] = {}
    for mapping in site.maps:
        aliases = {lookup.alias: lookup.table for lookup in mapping.lookups}
        base = read.setdefault(mapping.source, set())
        texts = [*mapping.columns.values(), mapping.skip_if_null, mapping.where]
        for text in texts:
            if text is None:
                continue
            for slot in mapping.slots:
                tree = sqlglot.parse_one(mapping.expression(text, slot), read="duckdb")
                for column in tree.find_all(exp.Column):
                    if column.table in aliases:
                        read.setdefault(aliases[column.table], set()).add(column.name)
                    elif not column.table:
                        base.add(column.name)
        for lookup in mapping.lookups:
            base.update(lookup.on)
            read.setdefault(lookup.table, set()).update(lookup.on.values())
    return read
