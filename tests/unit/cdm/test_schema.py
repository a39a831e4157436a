"""The CDM schema generated from the OHDSI specification CSVs, checked against the CSVs read independently."""

from __future__ import annotations

import csv
from importlib import resources

import duckdb
import pyarrow as pa
import pytest

from medspace.cdm import cdm_schema, duckdb_ddl


def spec_rows(name: str) -> list[dict[str, str]]:
    path = resources.files("medspace.cdm").joinpath("data", "omop-cdm-5.4", name)
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


FIELD_ROWS = spec_rows("OMOP_CDMv5.4_Field_Level.csv")
TABLE_ROWS = spec_rows("OMOP_CDMv5.4_Table_Level.csv")


def test_every_table_and_field_of_the_spec() -> None:
    schema = cdm_schema()
    assert schema.table_names == tuple(r["cdmTableName"].lower() for r in TABLE_ROWS)
    expected = [(r["cdmTableName"].lower(), r["cdmFieldName"].strip('"').lower()) for r in FIELD_ROWS]
    assert [(t.name, f.name) for t in schema.tables for f in t.fields] == sorted(
        expected, key=lambda tf: schema.table_names.index(tf[0])
    )
    assert len(expected) == 432


def test_flags_and_foreign_keys_follow_the_spec() -> None:
    schema = cdm_schema()
    for row in FIELD_ROWS:
        field = schema[row["cdmTableName"]].field(row["cdmFieldName"].strip('"'))
        assert field.required == (row["isRequired"] == "Yes")
        assert field.primary_key == (row["isPrimaryKey"] == "Yes")
        fk = None if row["fkTableName"] == "NA" else (row["fkTableName"].lower(), row["fkFieldName"].lower())
        assert (None if field.fk_table is None else (field.fk_table, field.fk_field)) == fk


@pytest.mark.parametrize(
    ("table", "field", "arrow_type"),
    [
        ("person", "person_id", pa.int64()),
        ("measurement", "value_as_number", pa.float64()),
        ("visit_occurrence", "visit_start_date", pa.date32()),
        ("visit_occurrence", "visit_start_datetime", pa.timestamp("us")),
        ("concept", "concept_name", pa.string()),
        ("note", "note_text", pa.string()),  # varchar(MAX)
        ("note_nlp", "offset", pa.string()),  # quoted in the spec: a reserved word
    ],
)
def test_arrow_types(table: str, field: str, arrow_type: pa.DataType) -> None:
    schema = cdm_schema()[table].arrow_schema()
    assert schema.field(field).type == arrow_type
    assert schema.field(field).nullable == (not cdm_schema()[table].field(field).required)


def test_varchar_lengths() -> None:
    assert cdm_schema()["concept"].field("concept_name").max_length == 255
    assert cdm_schema()["note"].field("note_text").max_length is None


def test_ddl_creates_every_table_with_not_null_for_required_fields() -> None:
    con = duckdb.connect()
    con.execute(duckdb_ddl(primary_keys=True))
    for table in cdm_schema().tables:
        described = {str(r[0]): r for r in con.execute(f"DESCRIBE {table.name}").fetchall()}
        assert list(described) == list(table.field_names)
        for f in table.fields:
            # DESCRIBE: column_name, column_type, null ('YES'/'NO'), key, ...
            assert (described[f.name][2] == "NO") == (f.required or f.primary_key)
    con.close()


def test_ddl_loads_the_arrow_schema_without_casts() -> None:
    con = duckdb.connect()
    con.execute(duckdb_ddl(["person"]))
    empty = cdm_schema()["person"].arrow_schema().empty_table()
    con.register("incoming", empty)
    con.execute("INSERT INTO person SELECT * FROM incoming")
    con.close()


def test_unknown_table_is_refused() -> None:
    with pytest.raises(KeyError, match="no table"):
        duckdb_ddl(["patients"])
