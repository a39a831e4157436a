"""The OMOP CDM v5.4 schema as typed models, generated from the official OHDSI specification CSVs.

The two CSVs under ``data/omop-cdm-5.4/`` (copied unchanged from OHDSI/CommonDataModel ``inst/csv``) are the
only source of table and field definitions: nothing here types a table by hand, so following a new CDM
release means replacing the two files. The models are engine-neutral; the pyarrow schema of a table is
derived here too because Parquet is the workspace's storage format, while DuckDB DDL lives in ``_duckdb.py``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, model_validator

from medspace.core import SpecError

#: The CDM version the shipped specification describes.
CDM_VERSION = "5.4"

_SPEC_FOLDER = "omop-cdm-5.4"
_TABLE_FILE = "OMOP_CDMv5.4_Table_Level.csv"
_FIELD_FILE = "OMOP_CDMv5.4_Field_Level.csv"

#: Logical types of CDM fields, after reading the spec's ``cdmDatatype`` column.
CdmType = Literal["integer", "float", "date", "datetime", "varchar"]

# The spec writes ``integer``, once ``Integer``, ``float``, ``date``, ``datetime`` and ``varchar(n)`` or
# ``varchar(MAX)``; ``bigint`` appears in other CDM releases and is accepted for them.
_DATATYPE = re.compile(r"^(?P<base>integer|bigint|float|date|datetime|varchar)(?:\((?P<size>\d+|max)\))?$")

# Integers are int64, not int32: OMOP identifiers outgrow 32 bits in large databases (concept ids already
# reach 2 billion), and one integer width keeps joins between tables free of casts.
_ARROW_TYPES: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "float": pa.float64(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us"),
    "varchar": pa.string(),
}


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CdmField(_Frozen):
    """One field (column) of a CDM table, as the OHDSI field-level specification defines it.

    Example:
        >>> f = cdm_schema()["person"].field("gender_concept_id")
        >>> (f.datatype, f.required, f.fk_table, f.fk_field)
        ('integer', True, 'concept', 'concept_id')
    """

    name: str
    #: The spec's datatype as written, e.g. ``varchar(50)``.
    spec_datatype: str
    datatype: CdmType
    #: Maximum length of a varchar field; None for ``varchar(MAX)`` and non-text fields.
    max_length: int | None = None
    required: bool
    primary_key: bool
    fk_table: str | None = None
    fk_field: str | None = None
    fk_domain: str | None = None

    @model_validator(mode="after")
    def _foreign_key_complete(self) -> CdmField:
        if (self.fk_table is None) != (self.fk_field is None):
            raise SpecError(f"foreign key of field {self.name} names only one of table and field")
        return self

    @property
    def arrow_type(self) -> pa.DataType:
        """The pyarrow type this field has in the workspace's Parquet files."""
        return _ARROW_TYPES[self.datatype]


class CdmTable(_Frozen):
    """One CDM table with its fields in specification order.

    Example:
        >>> t = cdm_schema()["visit_occurrence"]
        >>> (t.schema_name, t.primary_key, t.fields[0].name)
        ('CDM', ('visit_occurrence_id',), 'visit_occurrence_id')
    """

    name: str
    #: ``CDM`` (clinical and health-system tables), ``VOCAB`` (vocabulary) or ``RESULTS`` (cohorts).
    schema_name: Literal["CDM", "VOCAB", "RESULTS"]
    required: bool
    description: str
    fields: tuple[CdmField, ...]

    @model_validator(mode="after")
    def _fields_unique(self) -> CdmTable:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise SpecError(f"table {self.name} defines a field twice")
        if not names:
            raise SpecError(f"table {self.name} has no fields in the field-level specification")
        return self

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def primary_key(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.primary_key)

    def field(self, name: str) -> CdmField:
        """The field called ``name`` (case-insensitive).

        Raises:
            KeyError: The table has no such field.
        """
        wanted = name.lower()
        for f in self.fields:
            if f.name == wanted:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")

    def arrow_schema(self) -> pa.Schema:
        """The pyarrow schema of this table: fields in spec order, required fields not nullable.

        Example:
            >>> cdm_schema()["death"].arrow_schema().field("death_date").type
            DataType(date32[day])
        """
        return pa.schema(
            [pa.field(f.name, f.arrow_type, nullable=not f.required) for f in self.fields],
            metadata={b"omop_cdm_version": CDM_VERSION.encode(), b"omop_cdm_table": self.name.encode()},
        )


class CdmSchema(_Frozen):
    """All tables of the CDM, by lower-case name, in specification order.

    Example:
        >>> s = cdm_schema()
        >>> (s.version, "person" in s, s["concept"].schema_name)
        ('5.4', True, 'VOCAB')
    """

    version: str
    tables: tuple[CdmTable, ...]

    @model_validator(mode="after")
    def _foreign_keys_resolve(self) -> CdmSchema:
        by_name = {t.name: t for t in self.tables}
        for table in self.tables:
            for f in table.fields:
                if f.fk_table is None or f.fk_field is None:
                    continue
                target = by_name.get(f.fk_table)
                if target is None or f.fk_field not in target.field_names:
                    raise SpecError(
                        f"{table.name}.{f.name} refers to {f.fk_table}.{f.fk_field}, which the spec lacks",
                        file=_FIELD_FILE,
                    )
        return self

    def __getitem__(self, name: str) -> CdmTable:
        wanted = name.lower()
        for t in self.tables:
            if t.name == wanted:
                return t
        raise KeyError(f"OMOP CDM {self.version} has no table {name!r}")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(t.name == name.lower() for t in self.tables)

    def __len__(self) -> int:
        return len(self.tables)

    @property
    def table_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tables)

    def arrow_schemas(self) -> Mapping[str, pa.Schema]:
        """The pyarrow schema of every table, by table name."""
        return {t.name: t.arrow_schema() for t in self.tables}


def _read_spec(name: str) -> list[dict[str, str]]:
    text = resources.files("medspace.cdm").joinpath("data", _SPEC_FOLDER, name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _na(value: str) -> str | None:
    value = value.strip()
    return None if value in ("", "NA") else value


def _yes(value: str, *, file: str, row: int, column: str) -> bool:
    value = value.strip()
    if value not in ("Yes", "No"):
        raise SpecError(f"expected Yes or No, found {value!r}", file=file, row=row, field=column)
    return value == "Yes"


def _parse_field(row: dict[str, str], line: int) -> CdmField:
    spec_datatype = row["cdmDatatype"].strip()
    match = _DATATYPE.match(spec_datatype.lower())
    if match is None:
        raise SpecError(
            f"unknown datatype {spec_datatype!r}; expected integer, float, date, datetime or varchar(n)",
            file=_FIELD_FILE,
            row=line,
            field="cdmDatatype",
        )
    base = "integer" if match["base"] == "bigint" else match["base"]
    size = match["size"]
    fk_table = _na(row["fkTableName"])
    fk_field = _na(row["fkFieldName"])
    return CdmField(
        # The spec quotes SQL reserved words (note_nlp's "offset"); the field's name is the bare word.
        name=row["cdmFieldName"].strip().strip('"').lower(),
        spec_datatype=spec_datatype,
        datatype=base,  # type: ignore[arg-type]  # the regex admits only CdmType names
        max_length=int(size) if size is not None and size != "max" else None,
        required=_yes(row["isRequired"], file=_FIELD_FILE, row=line, column="isRequired"),
        primary_key=_yes(row["isPrimaryKey"], file=_FIELD_FILE, row=line, column="isPrimaryKey"),
        fk_table=fk_table.lower() if fk_table else None,
        fk_field=fk_field.lower() if fk_field else None,
        fk_domain=_na(row["fkDomain"]),
    )


@cache
def cdm_schema() -> CdmSchema:
    """The OMOP CDM v5.4 schema, generated from the shipped OHDSI specification CSVs (loaded once).

    Returns:
        Every table of the specification (clinical, health-system, vocabulary and results tables) with its
        fields in specification order.

    Raises:
        SpecError: The shipped specification is malformed (an unknown datatype, a dangling foreign key).

    Example:
        >>> s = cdm_schema()
        >>> len(s), s["person"].primary_key
        (39, ('person_id',))
    """
    fields: dict[str, list[CdmField]] = {}
    # Line numbers count the header as line 1; multi-line quoted cells make them approximate, which is
    # acceptable for a file that ships with the package.
    for line, row in enumerate(_read_spec(_FIELD_FILE), start=2):
        fields.setdefault(row["cdmTableName"].strip().lower(), []).append(_parse_field(row, line))
    tables: list[CdmTable] = []
    for line, row in enumerate(_read_spec(_TABLE_FILE), start=2):
        name = row["cdmTableName"].strip().lower()
        if name not in fields:
            raise SpecError(f"table {name} has no fields", file=_FIELD_FILE, row=line)
        tables.append(
            CdmTable(
                name=name,
                schema_name=row["schema"].strip(),  # type: ignore[arg-type]  # validated by pydantic
                required=_yes(row["isRequired"], file=_TABLE_FILE, row=line, column="isRequired"),
                description=row["tableDescription"].strip(),
                fields=tuple(fields.pop(name)),
            )
        )
    if fields:
        raise SpecError(
            f"fields for tables missing from the table-level spec: {sorted(fields)}", file=_FIELD_FILE
        )
    return CdmSchema(version=CDM_VERSION, tables=tuple(tables))
