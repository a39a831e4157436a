"""Mapping specs load and resolve their references, and a wrong one fails at load time naming its file."""

from __future__ import annotations

from pathlib import Path

import pytest

from medspace.core import SpecError
from medspace.sources import (
    CsvFormat,
    NdjsonFormat,
    SourceSpec,
    XlsxFormat,
    load_spec,
    load_specs,
    parse_spec,
)

EXPECTED = {
    "his": {"patients", "registrations", "admissions", "transfers", "orders", "prescriptions", "bills"},
    "lis": {"requests", "specimens", "results"},
    "emr": {"front_sheets", "notes"},
    "ris": {"exams"},
    "pacs": {"studies"},
    "surgery": {"operations"},
    "insurance": {"settlements"},
}

MINIMAL = """
system: demo
tables:
  - name: people
    files: demo/people.csv
    format: {kind: csv, encoding: utf-8}
    primary_key: [person_no]
    columns:
      - {name: person_no, source: ID}
      - {name: born, source: DOB, type: date, formats: ["%Y%m%d"]}
"""


def test_every_shipped_spec_loads_with_the_expected_tables() -> None:
    specs = load_specs()
    assert {s.system: {t.name for t in s.tables} for s in specs} == EXPECTED


def test_formats_are_a_discriminated_union() -> None:
    specs = {s.system: s for s in load_specs()}
    assert isinstance(specs["ris"].table("exams").format, CsvFormat)
    assert specs["ris"].table("exams").format.encoding == "gb18030"  # type: ignore[union-attr]
    assert isinstance(specs["pacs"].table("studies").format, NdjsonFormat)
    assert isinstance(specs["insurance"].table("settlements").format, XlsxFormat)


def test_specs_are_frozen() -> None:
    spec = parse_spec(MINIMAL, "demo.yaml")
    with pytest.raises(ValueError):
        spec.system = "other"  # type: ignore[misc]


def test_a_new_vendor_is_one_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    [spec] = load_specs([path])
    assert isinstance(spec, SourceSpec)
    assert spec.table("people").column("born").type == "date"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (("primary_key: [person_no]", "primary_key: [person_number]"), "primary key 'person_number'"),
        (("type: date", "type: dat"), "columns.1.type"),
        (("{name: person_no, source: ID}", "{name: person_no, source: ID, colour: red}"), "colour"),
        (("kind: csv", "kind: tsv"), "format"),
        ((', formats: ["%Y%m%d"]', ""), "needs `formats`"),
        (('formats: ["%Y%m%d"]', 'formats: ["%Y%m%d %Z"]'), "unsupported directives %Z"),
        (("source: ID}", "source: ID, code_system: icd-11}"), "unknown code system"),
        (("source: ID}", "source: ID, unit_column: unit}"), "unit_column 'unit'"),
        (("source: ID}", "source: ID, pattern: '^(\\d+)$'}"), "(?P<value>"),
        (("encoding: utf-8", "encoding: utf-9"), "unknown encoding"),
    ],
)
def test_a_typo_fails_at_load_naming_the_spec_file(
    tmp_path: Path, change: tuple[str, str], words: str
) -> None:
    assert change[0] in MINIMAL
    path = tmp_path / "typo.yaml"
    path.write_text(MINIMAL.replace(change[0], change[1]), encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.file == str(path)
    assert str(path) in str(caught.value)
    assert words in str(caught.value)


def test_a_bad_json_path_fails_at_load() -> None:
    text = MINIMAL.replace("kind: csv, encoding: utf-8", "kind: ndjson").replace(
        "source: ID}", "source: 'a..b'}"
    )
    with pytest.raises(SpecError, match="a name is missing"):
        parse_spec(text, "demo.yaml")


def test_two_specs_for_one_system_are_refused(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(MINIMAL, encoding="utf-8")
    with pytest.raises(SpecError, match="also defined in"):
        load_specs([tmp_path / "a.yaml", tmp_path / "b.yaml"])


def test_malformed_yaml_names_the_file() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec("system: [unclosed", "broken.yaml")
    assert caught.value.file == "broken.yaml"
