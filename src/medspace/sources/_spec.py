"""Raw tables: how one export table of a source system is read into typed fields.

A site mapping (`medspace.sources.load_site`) declares, per system, its raw tables: the export files (a glob
relative to the export folder), how they are encoded (CSV with an encoding, NDJSON, an XLSX sheet), the key,
and per field where its value comes from, its type, the input formats accepted, value mappings and null
tokens. Everything a table refers to (key fields, JSON paths, regular expressions, date formats) is checked
when the mapping is loaded, so a typo fails there and never half-way through staging a hospital's data.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medspace.sources._jsonpath import JsonPath, parse_json_path

ColumnType = Literal["string", "int", "float", "bool", "date", "timestamp"]

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
    """One field of a raw table and how it is read from the source.

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
    """One raw table of a system, read from one or more export files of the same layout.

    In a site file its key is written ``key`` and its fields ``fields``; ``name`` is the table's name in
    the system's ``tables`` mapping.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    files: str
    format: FileFormat
    primary_key: list[str] = Field(alias="key")
    null_tokens: list[str] = Field(default_factory=lambda: [""])
    columns: list[ColumnSpec] = Field(alias="fields")
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
            raise ValueError(f"table {self.name!r}: fields defined twice: {', '.join(duplicated)}")
        if not self.primary_key:
            raise ValueError(f"table {self.name!r}: key needs at least one field")
        for key in self.primary_key:
            if key not in names:
                raise ValueError(f"table {self.name!r}: key {key!r} is not one of its fields")
        for column in self.columns:
            if isinstance(self.format, NdjsonFormat):
                for path in column.sources:
                    parse_json_path(path)  # raises ValueError with the position of the mistake
        return self

    def export_files(self, exports: Path) -> list[Path]:
        """The files of the export folder ``exports`` that ``files`` matches, sorted. Symbolic links are
        listed too, so that reading refuses one leading outside the folder by name instead of skipping it.
        """
        return sorted(p for p in Path(exports).glob(self.files) if p.is_symlink() or p.is_file())

    def column(self, name: str) -> ColumnSpec:
        """The field named ``name``."""
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def json_paths(self) -> dict[str, JsonPath]:
        """For NDJSON tables: every source path of the table, parsed."""
        return {path: parse_json_path(path) for column in self.columns for path in column.sources}
