"""Converting lab results to each test's canonical unit, one value at a time, over Arrow arrays, or as an Ibis
expression that runs on DuckDB or Spark.

Labs report the same test in different units (glucose in mmol/L or mg/dL, HbA1c in % or mmol/mol; domain.md
§1.5). The CDM keeps the source value and unit and stores the value in the test's canonical unit
(``lab_tests.csv``), using the factors and offsets of ``unit_conversions.csv`` (`conversion_rows` gives them
as a lookup table). A result whose test or unit has no known conversion keeps its value as reported, with its
unit and unit concept 0, and is counted by status (`UNIT_STATUSES`), never turned into a null.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from medspace.cdm._mappings import Mappings, UnitConversion, load_mappings
from medspace.core import InputError

if TYPE_CHECKING:
    import ibis.expr.types as ir


def normalise_unit(unit: str) -> str:
    """A unit as the mapping tables write it: trimmed, micro sign as ``u``, ``l`` as ``L``.

    Example:
        >>> normalise_unit(" µmol/l ")
        'umol/L'
    """
    text = unit.strip().replace("µ", "u").replace("μ", "u")
    return text[:-1] + "L" if text.endswith("/l") else text


def _conversions(test: str, mappings: Mappings) -> dict[str, tuple[float, float]]:
    """Each unit -> (factor, offset) to the canonical unit, for one test; the canonical unit is (1, 0)."""
    lab = mappings.lab_tests.get(test)
    if lab is None:
        raise InputError(
            f"unknown lab test {test!r}; add it to cdm/data/mappings/lab_tests.csv", field="test"
        )
    out = {lab.unit: (1.0, 0.0)}
    conv: UnitConversion
    for (t, from_unit, to_unit), conv in mappings.unit_conversions.items():
        if t == test and to_unit == lab.unit:
            out[from_unit] = (conv.factor, conv.offset)
    return out


def to_canonical(test: str, value: float, unit: str, *, mappings: Mappings | None = None) -> float:
    """Convert one result of a lab test to the test's canonical unit.

    Args:
        test: The LIS local item code (``GLU``, ``HBA1C``, ...).
        value: The result as reported.
        unit: The unit it was reported in (``mg/dL``, ``µmol/L``, ...).
        mappings: The mapping tables; the shipped ones if None.

    Returns:
        The value in the canonical unit of ``lab_tests.csv``.

    Raises:
        InputError: The test is unknown, or no conversion from ``unit`` exists for it.

    Example:
        >>> round(to_canonical("GLU", 126.0, "mg/dL"), 2)
        6.99
        >>> round(to_canonical("HBA1C", 48.0, "mmol/mol"), 2)
        6.54
    """
    table = _conversions(test, mappings or load_mappings())
    factor_offset = table.get(normalise_unit(unit))
    if factor_offset is None:
        raise InputError(
            f"no conversion for test {test} from unit {unit!r}; known units: {', '.join(sorted(table))}",
            field="unit",
            rule="unit_conversion",
        )
    factor, offset = factor_offset
    return value * factor + offset


def to_canonical_arrow(
    test: str,
    values: pa.Array | pa.ChunkedArray,
    units: pa.Array | pa.ChunkedArray | str,
    *,
    strict: bool = True,
    mappings: Mappings | None = None,
) -> pa.Array | pa.ChunkedArray:
    """Vectorised `to_canonical` over Arrow arrays of one test's results.

    Args:
        test: The LIS local item code.
        values: Numeric results.
        units: The unit of each result, or one unit for all.
        strict: Raise on a unit with no conversion; if False, such results become null (for the caller to
            quarantine).
        mappings: The mapping tables; the shipped ones if None.

    Returns:
        float64 values in the canonical unit; nulls stay null.

    Raises:
        InputError: ``strict`` and a unit has no conversion (the message lists the units, not values).

    Example:
        >>> to_canonical_arrow("CREA", pa.array([1.0, 88.4]), pa.array(["mg/dL", "umol/L"])).to_pylist()
        [88.4, 88.4]
    """
    table = _conversions(test, mappings or load_mappings())
    numbers = pc.cast(values, pa.float64())
    if isinstance(units, str):
        units = pa.array([units] * len(numbers), pa.string())
    normalised = pc.utf8_trim_whitespace(pc.cast(units, pa.string()))
    normalised = pc.replace_substring(pc.replace_substring(normalised, "µ", "u"), "μ", "u")
    normalised = pc.replace_substring_regex(normalised, "/l$", "/L")
    known = pa.array(sorted(table), pa.string())
    unknown = pc.and_(pc.invert(pc.is_in(normalised, value_set=known)), pc.is_valid(normalised))
    if strict and pc.any(unknown).as_py():
        bad = sorted({u for u in pc.filter(normalised, unknown).to_pylist() if u is not None})
        raise InputError(
            f"no conversion for test {test} from unit(s) {bad}; known units: {', '.join(sorted(table))}",
            field="unit",
            rule="unit_conversion",
        )
    factor = pa.scalar(None, pa.float64())
    offset = pa.scalar(None, pa.float64())
    for unit, (f, o) in table.items():
        hit = pc.equal(normalised, unit)
        factor = pc.if_else(hit, f, factor)
        offset = pc.if_else(hit, o, offset)
    return pc.add(pc.multiply(numbers, factor), offset)


def to_canonical_ibis(
    test: ir.StringValue, value: ir.NumericValue, unit: ir.StringValue, *, mappings: Mappings | None = None
) -> ir.FloatingValue:
    """An Ibis expression converting results of any test to their canonical units; runs on DuckDB and Spark.

    Results whose (test, unit) pair has no conversion become null, for the caller to quarantine.

    Args:
        test: Column of LIS local item codes.
        value: Column of numeric results.
        unit: Column of units as reported (trimmed; ``µ`` and ``/l`` spellings are normalised).
        mappings: The mapping tables; the shipped ones if None.

    Returns:
        A float64 expression.

    Example:
        >>> import ibis
        >>> t = ibis.memtable({"test": ["GLU", "GLU"], "value": [5.0, 90.09], "unit": ["mmol/L", "mg/dL"]})
        >>> expr = to_canonical_ibis(t.test, t.value, t.unit).round(3).name("canonical")
        >>> ibis.duckdb.connect().execute(t.select(expr))["canonical"].tolist()
        [5.0, 5.0]
    """
    import ibis

    chosen = mappings or load_mappings()
    # A regex, not .strip(): Ibis 12 compiles strip() for Spark as trim() of the letters t, n, r, v and f
    # (the whitespace escapes lose their backslash), which turns "fL" into "L" (seen with pyspark 4.0.5).
    cleaned = unit.re_replace(r"^\s+|\s+$", "").re_replace("[µμ]", "u").re_replace("/l$", "/L")
    number = value.cast("float64")
    branches = []
    for code in sorted(chosen.lab_tests):
        for from_unit, (factor, offset) in sorted(_conversions(code, chosen).items()):
            branches.append(((test == code) & (cleaned == from_unit), number * factor + offset))
    return ibis.cases(*branches, else_=ibis.null("float64"))


#: How a measurement's value relates to its test's canonical unit (manifest: measurements by unit status).
UNIT_STATUSES = ("canonical", "converted", "unknown_unit", "no_value")


def conversion_rows(mappings: Mappings | None = None) -> list[dict[str, object]]:
    """Every (test, unit) with a known route to the test's canonical unit, as rows for a lookup join.

    Each row: ``test``, ``unit`` (normalised as `normalise_unit` writes it), ``factor``, ``offset`` and
    ``status`` (``canonical`` for the canonical unit itself, else ``converted``). A join on this table does
    what `to_canonical_ibis` does, and says which results it could not convert (no row: ``unknown_unit``).

    Example:
        >>> [r for r in conversion_rows() if r["test"] == "GLU"][0]["status"]
        'converted'
    """
    chosen = mappings or load_mappings()
    rows: list[dict[str, object]] = []
    for code in sorted(chosen.lab_tests):
        canonical = chosen.lab_tests[code].unit
        for unit, (factor, offset) in sorted(_conversions(code, chosen).items()):
            status = "canonical" if unit == canonical else "converted"
            rows.append({"test": code, "unit": unit, "factor": factor, "offset": offset, "status": status})
    return rows
