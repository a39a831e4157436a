"""A CDM imported from outside (Synthea27Nj, OHDSI's OMOP export) is de-identified like one medspace built,
and what is released stays valid OMOP: the specification's types in every column, checked by DQD's own
datatype checks on the release."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import reference_data
from medspace.cdm import cdm_schema, import_omop
from medspace.privacy import ProductKey, deidentify_workspace, load_profile
from medspace.quality import run_checks


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    ws = tmp_path_factory.mktemp("deid-omop")
    import_omop(reference_data.synthea_zip(), ws)
    key = ProductKey.generate()
    out = deidentify_workspace(ws, load_profile("gbt39725-level3"), key).folder
    return ws, out


def test_every_table_of_the_import_is_released_including_cohort_and_note_nlp(
    release: tuple[Path, Path],
) -> None:
    ws, out = release
    imported = {p.stem for p in (ws / "cdm").glob("*.parquet")} - {"quarantine"}
    released = {p.stem for p in out.glob("*.parquet")}
    assert {"cohort", "note_nlp", "person", "condition_occurrence"} <= released
    assert imported - {"manifest"} <= released | {"quarantine"}


def test_released_columns_keep_the_omop_types(release: tuple[Path, Path]) -> None:
    _, out = release
    schema = cdm_schema()
    wrong = []
    for path in sorted(out.glob("*.parquet")):
        if path.stem not in schema:
            continue
        spec = schema[path.stem]
        for field in pq.read_schema(path):
            known = field.name in spec.field_names and not pa.types.is_null(field.type)
            if known and field.type != spec.field(field.name).arrow_type:
                wrong.append(f"{path.stem}.{field.name}: {field.type}")
    assert wrong == []
    person = pq.read_table(out / "person.parquet")
    assert pa.types.is_integer(person.schema.field("year_of_birth").type)


def test_dqd_finds_no_datatype_failure_in_the_release(release: tuple[Path, Path], tmp_path: Path) -> None:
    _, out = release
    ws = tmp_path / "released"
    shutil.copytree(out, ws / "cdm", ignore=shutil.ignore_patterns("*.json", "*.html"))
    results = run_checks(ws)
    type_checks = [r for r in results.results if r.check_name == "cdmDatatype"]
    assert type_checks, "DQD ran no cdmDatatype check on the release"
    assert [r.cdm_field_name for r in type_checks if r.status == "failed"] == []


def test_dqd_datatype_check_fails_on_a_generalised_string_year(
    release: tuple[Path, Path], tmp_path: Path
) -> None:
    """The check above can fail: a year of birth written as ARX's band string is caught."""
    _, out = release
    ws = tmp_path / "broken"
    shutil.copytree(out, ws / "cdm", ignore=shutil.ignore_patterns("*.json", "*.html"))
    person = pq.read_table(ws / "cdm" / "person.parquet")
    bands = pa.array(["1960-1979"] * person.num_rows, pa.string())
    person = person.set_column(person.column_names.index("year_of_birth"), "year_of_birth", bands)
    pq.write_table(person, ws / "cdm" / "person.parquet")
    failed = [
        r.cdm_field_name
        for r in run_checks(ws).results
        if r.check_name == "cdmDatatype" and r.status == "failed"
    ]
    assert [f.lower() for f in failed] == ["year_of_birth"]
