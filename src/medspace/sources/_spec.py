"""Mapping specs: how one source system's exports map onto medspace's canonical staging tables.

A spec is data, not code: one YAML file per source system (vendor), shipped under ``data/specs/`` and loaded
into frozen pydantic models. It names the system's tables; per table the export files (a glob relative to the
export folder), how they are encoded (CSV with an encoding, NDJSON, an XLSX sheet), the primary key, and per
canonical column where its value comes from, its type, the input formats accepted, value mappings and null
tokens. Everything a spec refers to (key columns, unit columns, code systems, JSON paths, regular
expressions, date formats) is checked when it is loaded, so a typo fails there, naming the spec file, and
never half-way through staging a hospital's data.

A new hospital with other vendors is a new YAML file here; no code changes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medspace.core import SpecError
from medspace.sources._jsonpath import JsonPath, parse_json_path

ColumnType = Literal["string", "int", "float", "bool", "date", "timestamp"]

#: Code systems a column may be annotated with; the cdm stage maps each to an OMOP vocabulary. Listed here
#: so that a misspelt name fails when the spec is loaded.
CODE_SYSTEMS: frozenset[str] = frozenset(
    {
        "icd10_gb_clinical_2",  # 国家临床版 2.0 diagnoses (ICD-10 with Chinese extension codes)
        "icd10_nhsa",  # 医保版 diagnoses
        "icd9cm3_gb_clinical_3",  # 国家临床版 3.0 procedures (ICD-9-CM-3 with extension codes)
        "icd9cm3_nhsa",  # 医保版 procedures
        "icd_o_3_morphology",  # pathology (morphology) codes of the front sheet
        "nhsa_drug",  # 23-character national insurance drug codes
        "his_department",  # the hospital's own department codes
        "lis_item",  # the laboratory's own test item codes
        "dicom_modality",  # DICOM (0008,0060) modality codes
        "gb_t_2261_sex",  # GB/T 2261.1 sex codes
    }
)

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Python's strptime directives we accept in `formats`; Arrow's parser (glibc strptime) understands them too.
_DIRECTIVES = frozenset("YmdHMSf%")
_DIRECTIVE = re.compile(r"%(.)")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CsvFormat(_Model):
    """A delimited text export with a header line."""

    kind: Literal["csv"] = "csv"
    encoding: str = "utf-8"
    delimiter: str = ","

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(
                f"unknown encoding {value!r}; use a Python codec name such as utf-8 or gb18030"
            ) from None
        return value

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str) -> str:
        if len(value) != 1:
            raise ValueError("delimiter must be one character")
        return value


class NdjsonFormat(_Model):
    """One JSON document per line (UTF-8); column sources are JSON paths into each document."""

    kind: Literal["ndjson"] = "ndjson"


class XlsxFormat(_Model):
    """An Excel workbook; the first row of the named sheet is the header."""

    kind: Literal["xlsx"] = "xlsx"
    sheet: str


FileFormat = Annotated[CsvFormat | NdjsonFormat | XlsxFormat, Field(discriminator="kind")]


class ColumnSpec(_Model):
    """One canonical column of a staging table and how it is read from the source.

    ``source`` is a source column name (for NDJSON a JSON path such as ``content[0].attachment.text``), or a
    list of them whose values are joined with ``separator`` before parsing (a date column plus a time column).
    Values are handled in this order: null tokens, ``pattern`` (a regular expression whose group ``value``
    is kept), ``values`` (a mapping from source codes to canonical values), then parsing as ``type``.
    """

    name: str
    source: str | list[str]
    separator: str = " "
    type: ColumnType = "string"
    formats: list[str] | None = None
    values: dict[str, str] | None = None
    unmapped: Literal["quarantine", "keep"] = "quarantine"
    pattern: str | None = None
    true_values: list[str] | None = None
    false_values: list[str] | None = None
    null_tokens: list[str] | None = None
    required: bool = False
    on_error: Literal["quarantine", "null"] = "quarantine"
    code_system: str | None = None
    unit_column: str | None = None
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _snake_case(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"column name {value!r} must be snake_case (a-z, 0-9, _), not starting with _")
        return value

    @field_validator("source")
    @classmethod
    def _non_empty_source(cls, value: str | list[str]) -> str | list[str]:
        parts = [value] if isinstance(value, str) else value
        if not parts or any(not p for p in parts):
            raise ValueError("source must name at least one source column, none empty")
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern_has_value_group(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        if "value" not in compiled.groupindex:
            raise ValueError("pattern needs a named group (?P<value>...) holding the value to keep")
        return value

    @field_validator("code_system")
    @classmethod
    def _known_code_system(cls, value: str | None) -> str | None:
        if value is not None and value not in CODE_SYSTEMS:
            raise ValueError(f"unknown code system {value!r}; use one of {', '.join(sorted(CODE_SYSTEMS))}")
        return value

    @model_validator(mode="after")
    def _options_fit_type(self) -> ColumnSpec:
        temporal = self.type in ("date", "timestamp")
        if temporal and not self.formats:
            raise ValueError(f"column {self.name!r} of type {self.type} needs `formats` (strptime formats)")
        if not temporal and self.formats:
            raise ValueError(f"column {self.name!r}: `formats` apply to date and timestamp columns only")
        for fmt in self.formats or []:
            unknown = sorted({d for d in _DIRECTIVE.findall(fmt) if d not in _DIRECTIVES})
            if unknown:
                raise ValueError(
                    f"column {self.name!r}: format {fmt!r} uses unsupported directives "
                    f"{', '.join('%' + d for d in unknown)}; use %Y %m %d %H %M %S"
                )
        if (self.true_values is not None or self.false_values is not None) and self.type != "bool":
            raise ValueError(f"column {self.name!r}: true_values/false_values apply to bool columns only")
        if self.type == "bool" and (not self.true_values or not self.false_values):
            raise ValueError(f"column {self.name!r} of type bool needs true_values and false_values")
        if self.true_values and self.false_values and set(self.true_values) & set(self.false_values):
            raise ValueError(f"column {self.name!r}: a value is both in true_values and false_values")
        return self

    @property
    def sources(self) -> tuple[str, ...]:
        """The source column names (or JSON paths) this column reads, in order."""
        return (self.source,) if isinstance(self.source, str) else tuple(self.source)

    @property
    def field(self) -> str:
        """The field name used in quarantine entries and messages: the source column(s) as written."""
        return "+".join(self.sources)


class TableSpec(_Model):
    """One canonical staging table, read from one or more export files of the same layout."""

    name: str
    files: str
    format: FileFormat
    primary_key: list[str]
    null_tokens: list[str] = Field(default_factory=lambda: [""])
    columns: list[ColumnSpec]
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _snake_case(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"table name {value!r} must be snake_case")
        return value

    @field_validator("files")
    @classmethod
    def _relative_glob(cls, value: str) -> str:
        if value.startswith("/") or ".." in Path(value).parts:
            raise ValueError("files must be a glob relative to the export folder, without '..'")
        return value

    @model_validator(mode="after")
    def _references_resolve(self) -> TableSpec:
        names = [c.name for c in self.columns]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"table {self.name!r}: columns defined twice: {', '.join(duplicated)}")
        if not self.primary_key:
            raise ValueError(f"table {self.name!r}: primary_key needs at least one column")
        for key in self.primary_key:
            if key not in names:
                raise ValueError(f"table {self.name!r}: primary key {key!r} is not one of its columns")
        for column in self.columns:
            if column.unit_column is not None and column.unit_column not in names:
                raise ValueError(
                    f"table {self.name!r}: column {column.name!r} names unit_column "
                    f"{column.unit_column!r}, which is not one of its columns"
                )
            if isinstance(self.format, NdjsonFormat):
                for path in column.sources:
                    parse_json_path(path)  # raises ValueError with the position of the mistake
        return self

    def column(self, name: str) -> ColumnSpec:
        """The column named ``name``."""
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def json_paths(self) -> dict[str, JsonPath]:
        """For NDJSON tables: every source path of the table, parsed."""
        return {path: parse_json_path(path) for column in self.columns for path in column.sources}


class SourceSpec(_Model):
    """The mapping spec of one source system (one vendor's exports)."""

    system: str
    description: str | None = None
    tables: list[TableSpec]

    @field_validator("system")
    @classmethod
    def _snake_case(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"system name {value!r} must be snake_case")
        return value

    @model_validator(mode="after")
    def _unique_tables(self) -> SourceSpec:
        names = [t.name for t in self.tables]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"tables defined twice: {', '.join(duplicated)}")
        if not self.tables:
            raise ValueError("a spec needs at least one table")
        return self

    def table(self, name: str) -> TableSpec:
        """The table named ``name``."""
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def parse_spec(text: str, name: str) -> SourceSpec:
    """Parse one spec from YAML text; ``name`` is the file name used in error messages.

    Raises:
        SpecError: the YAML is malformed or the spec is invalid; the message names ``name`` and the field.
    """
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"not valid YAML: {exc}", file=name, rule="yaml") from None
    if not isinstance(data, dict):
        raise SpecError("a spec must be a YAML mapping with `system` and `tables`", file=name, rule="spec")
    try:
        return SourceSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(
            f"invalid spec: {_describe(exc)}; fix the spec file", file=name, rule="spec"
        ) from None


def load_spec(path: Path) -> SourceSpec:
    """Load one spec file.

    Raises:
        SpecError: the file cannot be read or the spec is invalid (the message names the file).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read the spec: {exc.strerror}", file=str(path), rule="spec") from None
    return parse_spec(text, str(path))


def load_specs(paths: Sequence[Path] | None = None) -> list[SourceSpec]:
    """Load mapping specs: the given files, or every spec shipped with medspace.

    Args:
        paths: Spec files to load; ``None`` loads the package's ``data/specs/*.yaml``.

    Returns:
        The specs, sorted by system name.

    Raises:
        SpecError: a spec is invalid, or two specs name the same system.

    Example:
        >>> [spec.system for spec in load_specs()]
        ['emr', 'his', 'insurance', 'lis', 'pacs', 'ris', 'surgery']
    """
    specs: list[tuple[str, SourceSpec]] = []
    if paths is None:
        folder = resources.files("medspace.sources").joinpath("data", "specs")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith((".yaml", ".yml")):
                specs.append((entry.name, parse_spec(entry.read_text(encoding="utf-8"), entry.name)))
    else:
        specs = [(str(p), load_spec(p)) for p in paths]
    seen: dict[str, str] = {}
    for name, spec in specs:
        if spec.system in seen:
            raise SpecError(
                f"system {spec.system!r} is also defined in {seen[spec.system]}; keep one spec per system",
                file=name,
                rule="spec",
            )
        seen[spec.system] = name
    return sorted((s for _, s in specs), key=lambda s: s.system)
