"""Unit conversion: the factors of domain.md §1.5, round trips (Hypothesis), and three routes that agree."""

from __future__ import annotations

import math

import ibis
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medspace.cdm import load_mappings, normalise_unit, to_canonical, to_canonical_arrow, to_canonical_ibis
from medspace.core import InputError

CONVERSIONS = sorted(load_mappings().unit_conversions)


@pytest.mark.parametrize(
    ("test", "value", "unit", "expected"),
    [
        ("GLU", 18.0182, "mg/dL", 1.0),
        ("GLU", 5.5, "mmol/L", 5.5),
        ("TC", 38.67, "mg/dL", 1.0),
        ("TG", 88.5, "mg/dL", 1.0),
        ("CREA", 1.0, "mg/dL", 88.4),
        ("CREA", 1.0, "µmol/L", 1.0),
        ("UA", 1.0, "mg/dL", 59.48),
        ("HBA1C", (6.5 - 2.15) * 10.929, "mmol/mol", 6.5),
        ("K", 4.1, " mmol/l ", 4.1),
    ],
)
def test_domain_factors(test: str, value: float, unit: str, expected: float) -> None:
    assert to_canonical(test, value, unit) == pytest.approx(expected, rel=1e-12)


@given(key=st.sampled_from(CONVERSIONS), value=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_there_and_back_is_the_identity(key: tuple[str, str, str], value: float) -> None:
    conversions = load_mappings().unit_conversions
    there = conversions[key]
    back = conversions[(key[0], key[2], key[1])]
    assert back.apply(there.apply(value)) == pytest.approx(value, rel=1e-9, abs=1e-9)


@given(
    key=st.sampled_from([k for k in CONVERSIONS if k[2] == load_mappings().lab_tests[k[0]].unit]),
    value=st.floats(min_value=0, max_value=1e5, allow_nan=False),
)
def test_to_canonical_inverts_the_forward_conversion(key: tuple[str, str, str], value: float) -> None:
    test, alt_unit, canonical = key
    forward = load_mappings().unit_conversions[(test, canonical, alt_unit)]
    assert to_canonical(test, forward.apply(value), alt_unit) == pytest.approx(value, rel=1e-9, abs=1e-9)


def test_unknown_unit_or_test_is_refused() -> None:
    with pytest.raises(InputError, match="no conversion for test GLU from unit 'g/L'") as err:
        to_canonical("GLU", 1.0, "g/L")
    assert err.value.rule == "unit_conversion"
    with pytest.raises(InputError, match="unknown lab test"):
        to_canonical("XYZ", 1.0, "mmol/L")


def test_arrow_agrees_with_scalar() -> None:
    values = pa.array([126.0, 7.0, None, 100.0])
    units = pa.array(["mg/dL", "mmol/L", "mg/dL", "mg/dL "])
    result = to_canonical_arrow("GLU", values, units).to_pylist()
    assert result[0] == pytest.approx(to_canonical("GLU", 126.0, "mg/dL"))
    assert result[1] == 7.0
    assert result[2] is None
    assert result[3] == pytest.approx(100 / 18.0182)
    with pytest.raises(InputError, match="g/L"):
        to_canonical_arrow("GLU", pa.array([1.0]), pa.array(["g/L"]))
    assert to_canonical_arrow("GLU", pa.array([1.0]), "g/L", strict=False).to_pylist() == [None]


def test_ibis_on_duckdb_agrees_with_scalar() -> None:
    tests = ["GLU", "HBA1C", "CREA", "UA", "K", "GLU"]
    values = [126.0, 48.0, 1.2, 6.0, 4.1, 1.0]
    units = ["mg/dL", "mmol/mol", "mg/dL", "mg/dL", "mmol/L", "g/L"]
    t = ibis.memtable({"test": tests, "value": values, "unit": units})
    frame = ibis.duckdb.connect().execute(t.select(c=to_canonical_ibis(t.test, t.value, t.unit)))
    out: list[float | None] = list(frame["c"])
    for i in range(5):
        assert out[i] == pytest.approx(to_canonical(tests[i], values[i], units[i]))
    last = out[5]
    assert last is None or math.isnan(last)


def test_normalise_unit() -> None:
    assert normalise_unit("μmol/l") == "umol/L"
    assert normalise_unit("mg/dL") == "mg/dL"
