"""Importing existing OMOP CDMs: counts re-checked independently (csv module, DuckDB on the source file)."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from medspace.cdm import QUARANTINE_SCHEMA, ImportReport, cdm_schema, import_omop
from medspace.core import InputError
from readers import output_bytes


@pytest.fixture(scope="module")
def synthea_import(synthea_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ImportReport, Path]:
    workspace = tmp_path_factory.mktemp("synthea")
    return import_omop(synthea_zip, workspace), workspace


@pytest.fixture(scope="module")
def gibleed_import(gibleed: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ImportReport, Path]:
    workspace = tmp_path_factory.mktemp("gibleed")
    return import_omop(gibleed, workspace), workspace


def test_synthea_row_counts_table_by_table(
    synthea_import: tuple[ImportReport, Path],
    synthea_zip: Path,
    synthea_csv: Callable[[str], list[dict[str, str]]],
) -> None:
    report, workspace = synthea_import
    with zipfile.ZipFile(synthea_zip) as archive:
        names = [n for n in archive.namelist() if n.endswith(".csv") and "__MACOSX" not in n]
    assert len(names) == 39
    for name in names:
        table = Path(name).stem.lower()
        expected = len(synthea_csv(name))
        counts = report.table(table)
        assert (counts.rows_read, counts.rows_imported, counts.rows_quarantined) == (expected, expected, 0), (
            table
        )
        assert pq.read_metadata(workspace / "cdm" / f"{table}.parquet").num_rows == expected
    assert report.table("measurement").rows_imported == 10_040
    assert report.table("visit_occurrence").rows_imported == 1_791


def test_synthea_parquet_has_the_official_schema(synthea_import: tuple[ImportReport, Path]) -> None:
    _, workspace = synthea_import
    for table in cdm_schema().tables:
        path = workspace / "cdm" / f"{table.name}.parquet"
        assert pq.read_schema(path).equals(table.arrow_schema(), check_metadata=True), table.name


def test_synthea_values_survive(
    synthea_import: tuple[ImportReport, Path], synthea_csv: Callable[[str], list[dict[str, str]]]
) -> None:
    _, workspace = synthea_import
    person = pq.read_table(workspace / "cdm" / "person.parquet").to_pylist()
    source = synthea_csv("PERSON.csv")
    assert [p["person_id"] for p in person] == [int(r["person_id"]) for r in source]
    assert {(p["gender_source_value"], p["gender_concept_id"]) for p in person} == {("M", 8507), ("F", 8532)}
    assert str(person[0]["birth_datetime"]) == source[0]["birth_datetime"]
    concept = pq.read_table(workspace / "cdm" / "concept.parquet", columns=["standard_concept"])
    # Empty quoted strings ("") are missing values, as OMOP expects for non-standard concepts.
    assert "" not in concept.column(0).to_pylist()


def test_gibleed_row_counts_and_header_rows(gibleed_import: tuple[ImportReport, Path], gibleed: Path) -> None:
    report, workspace = gibleed_import
    con = duckdb.connect(str(gibleed), read_only=True)
    tables = [str(r[0]) for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
    quarantine = pq.read_table(workspace / "cdm" / "quarantine.parquet").to_pylist()
    header_rows = {q["table"] for q in quarantine if q["rule"] == "header_row"}
    for name in tables:
        if name not in cdm_schema():
            assert f"eunomia.duckdb:{name}" in report.skipped
            continue
        total = int(con.execute(f'SELECT count(*) FROM "{name}"').fetchall()[0][0])
        counts = report.table(name)
        assert counts.rows_read == total
        assert counts.rows_imported + counts.rows_quarantined == total
        # Independently: a table whose columns are DuckDB's generic column0, column1, ... holds its header
        # as its only row.
        columns = [str(c) for c in con.sql(f'SELECT * FROM "{name}" LIMIT 0').columns]
        generic = all(c.startswith("column") for c in columns)
        assert (name in header_rows) == generic, name
        if generic:
            assert (total, counts.rows_imported, counts.rows_quarantined) == (1, 0, 1)
        assert pq.read_metadata(workspace / "cdm" / f"{name}.parquet").num_rows == counts.rows_imported
    con.close()
    assert report.table("person").rows_imported == 2_694
    assert report.table("condition_occurrence").rows_imported == 65_332
    assert len(header_rows) >= 15


def test_gibleed_quirks_are_reported(gibleed_import: tuple[ImportReport, Path]) -> None:
    report, workspace = gibleed_import
    quarantine = pq.read_table(workspace / "cdm" / "quarantine.parquet")
    assert quarantine.schema.equals(QUARANTINE_SCHEMA)
    rules = {(q["table"], q["rule"]) for q in quarantine.to_pylist()}
    assert ("care_site", "header_row") in rules
    # CDM v5.3 lacks cdm_source.cdm_version_concept_id, required in v5.4: its one row cannot conform.
    assert ("cdm_source", "required") in rules
    assert {q["table"] for q in quarantine.to_pylist()} <= {
        t.table for t in report.tables if t.rows_quarantined
    }
    # Upper-case names map to the spec's lower case, and v5.3 names renamed in v5.4 are carried over.
    visits = report.table("visit_occurrence")
    assert visits.renamed_columns["DISCHARGE_TO_CONCEPT_ID"] == "discharged_to_concept_id"
    assert visits.missing_fields == ()
    manifest = json.loads((workspace / "cdm" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["tables"]["care_site"]["rows_quarantined"] == 1
    assert manifest["rows_quarantined"] == report.rows_quarantined


@pytest.mark.slow
def test_reimport_is_byte_identical(
    synthea_import: tuple[ImportReport, Path], synthea_zip: Path, tmp_path: Path
) -> None:
    _, first = synthea_import
    import_omop(synthea_zip, tmp_path)
    import_omop(synthea_zip, tmp_path)  # over an existing CDM too
    names = sorted(p.name for p in (first / "cdm").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "cdm").iterdir())
    for name in names:
        assert output_bytes(first / "cdm" / name) == output_bytes(tmp_path / "cdm" / name), name


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_bad_values_are_quarantined_with_row_and_field(tmp_path: Path) -> None:
    source = tmp_path / "src"
    write(
        source,
        "death.csv",
        "PERSON_ID,Death_Date,death_datetime,cause_source_value,extra\n"
        "1,2020-01-31,2020-01-31 10:00:00,x,a\n"
        "2,31/01/2020,,y,b\n"
        "3.5,,,,c\n"
        "4,20200131,,,d\n",
    )
    report = import_omop(source, tmp_path / "ws")
    death = report.table("death")
    assert (death.rows_read, death.rows_imported, death.rows_quarantined) == (4, 2, 2)
    assert death.ignored_columns == ("extra",)
    quarantine = pq.read_table(tmp_path / "ws" / "cdm" / "quarantine.parquet").to_pylist()
    found = sorted((q["row"], q["field"], q["rule"]) for q in quarantine)
    assert found == [
        (2, "death_date", "type"),
        (3, "death_date", "required"),
        (3, "person_id", "type"),
    ]
    assert json.loads(quarantine[0]["raw"])["Death_Date"] == "31/01/2020"
    rows = pq.read_table(tmp_path / "ws" / "cdm" / "death.parquet").to_pylist()
    assert [(r["person_id"], str(r["death_date"])) for r in rows] == [(1, "2020-01-31"), (4, "2020-01-31")]


def test_a_failed_import_leaves_the_previous_cdm_intact(tmp_path: Path) -> None:
    good = tmp_path / "good"
    write(
        good,
        "person.csv",
        "person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id\n1,8507,1970,0,0\n",
    )
    import_omop(good, tmp_path / "ws")
    before = (tmp_path / "ws" / "cdm" / "person.parquet").read_bytes()
    bad = tmp_path / "bad"
    write(
        bad,
        "person.csv",
        "person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id\n2,8532,1980,0,0\n",
    )
    # Two columns holding one field (the v5.3 and v5.4 names) fail the import after person was written.
    write(
        bad,
        "visit_occurrence.csv",
        "visit_occurrence_id,discharge_to_concept_id,discharged_to_concept_id\n1,0,0\n",
    )
    with pytest.raises(InputError, match="both hold CDM field discharged_to_concept_id") as err:
        import_omop(bad, tmp_path / "ws")
    assert err.value.file == "bad/visit_occurrence.csv"
    assert (tmp_path / "ws" / "cdm" / "person.parquet").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "ws").iterdir()) == [".runs", "cdm", "medspace.duckdb"]
    # the failed run's folder is gone; only the run cdm points to is left
    assert [p.resolve() for p in (tmp_path / "ws/.runs").iterdir()] == [(tmp_path / "ws/cdm").resolve()]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: write(p, "notes.txt", "hello"), "unknown kind of OMOP source"),
        (lambda p: write(p / "empty", "readme.csv", "a\n1\n").parent, "no OMOP CDM v5.4 table"),
    ],
)
def test_unusable_sources_are_refused(tmp_path: Path, make: object, message: str) -> None:
    source = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(InputError, match=message):
        import_omop(source, tmp_path / "ws")
    assert not (tmp_path / "ws" / "cdm").exists()


def test_one_table_twice_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "src", "PERSON.csv", "person_id\n1\n")
    write(tmp_path / "src" / "more", "person.csv", "person_id\n2\n")
    with pytest.raises(InputError, match="two files hold table person"):
        import_omop(tmp_path / "src", tmp_path / "ws")
