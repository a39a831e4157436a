"""Match specs: shipped specs load, bad specs and bad records are refused with a named error."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from medspace.core import InputError, SpecError
from medspace.link import MatchSpec, load_match_spec, match_records


@pytest.mark.parametrize("name", ["person_cn", "febrl"])
def test_shipped_specs_load(name: str) -> None:
    assert isinstance(load_match_spec(name), MatchSpec)


def test_without_drops_comparisons_and_rules_on_the_column() -> None:
    spec = load_match_spec("person_cn").without("resident_id", "phone")
    assert {"resident_id", "phone"}.isdisjoint(spec.input_columns)
    assert spec.training.em_blocking  # rules on other columns stay


def test_invalid_spec_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("comparisons: [{kind: soundex, column: name}]\nblocking: []\n", encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_match_spec(path)
    assert info.value.file == str(path)


def test_unknown_spec_name_is_refused() -> None:
    with pytest.raises(SpecError, match="no match spec named"):
        load_match_spec("nope")


def test_records_without_a_compared_column_are_refused() -> None:
    records = pa.table({"record_id": ["a"], "source": ["his"], "name": ["张伟"]})
    with pytest.raises(InputError) as info:
        match_records(records, "person_cn")
    assert info.value.field == "sex"


def test_repeated_record_ids_are_refused() -> None:
    spec = load_match_spec("person_cn")
    columns = {c: [None, None] for c in spec.input_columns}
    records = pa.table({"record_id": ["a", "a"], "source": ["his", "emr"], **columns})
    with pytest.raises(InputError, match="repeat"):
        match_records(records, spec)
