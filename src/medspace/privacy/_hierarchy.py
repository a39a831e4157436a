"""Generalisation hierarchies for quasi-identifiers: what each value becomes at each level of coarsening.

A hierarchy is a table with one row per original value (the leaf) and one column per level, level 0 being the
value itself and the last level a single value, ``*``, for full suppression of the attribute. This is ARX's
model and its CSV format (one row per leaf, levels separated by ``;``), so hierarchies built in ARX load here
unchanged. Built-in builders cover the quasi-identifiers of a hospital: age bands, dates, GB/T 2260 region
codes, GB/T 6565 occupations, masked codes and plain suppression.

A hierarchy must be functional: two leaves that share a value at level i share it at every level above i.
Full-domain generalisation and its lattice search rely on this, so it is checked when a hierarchy is made.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from medspace.core import InputError, SpecError

#: The value every hierarchy ends in: the attribute fully suppressed.
SUPPRESSED = "*"
#: How a missing value appears as a leaf (ARX writes the same).
NULL_LEAF = "NULL"


@dataclass(frozen=True)
class Hierarchy:
    """The generalisation hierarchy of one quasi-identifier.

    Example:
        >>> h = Hierarchy("sex", (("M", "*"), ("F", "*")))
        >>> h.height, h.generalise("F", 1)
        (2, '*')
    """

    column: str
    rows: tuple[tuple[str, ...], ...]
    _leaf_index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.rows:
            raise SpecError(f"the hierarchy of {self.column!r} has no values", field=self.column)
        height = len(self.rows[0])
        for number, row in enumerate(self.rows, start=1):
            if len(row) != height:
                raise SpecError(
                    f"row {number} of the hierarchy of {self.column!r} has {len(row)} levels, "
                    f"the first row has {height}; every value needs every level",
                    row=number,
                    field=self.column,
                )
        index: dict[str, int] = {}
        for number, row in enumerate(self.rows, start=1):
            if row[0] in index:
                raise SpecError(
                    f"the hierarchy of {self.column!r} lists a value twice (row {number})",
                    row=number,
                    field=self.column,
                )
            index[row[0]] = number - 1
        object.__setattr__(self, "_leaf_index", index)
        self._check_functional()

    def _check_functional(self) -> None:
        # Each value at level i must determine its value at level i + 1; then it determines every level above.
        for level in range(1, self.height - 1):
            parent: dict[str, str] = {}
            for number, row in enumerate(self.rows, start=1):
                seen = parent.setdefault(row[level], row[level + 1])
                if seen != row[level + 1]:
                    raise SpecError(
                        f"the hierarchy of {self.column!r} is not a tree: at level {level} one group is "
                        f"generalised to two different groups at level {level + 1} (row {number}); "
                        "full-domain generalisation needs each group to have one parent",
                        row=number,
                        field=self.column,
                    )

    @property
    def height(self) -> int:
        """Number of levels, counting level 0 (the original values)."""
        return len(self.rows[0])

    @property
    def leaves(self) -> list[str]:
        return [row[0] for row in self.rows]

    def generalise(self, value: str, level: int) -> str:
        """The value ``value`` becomes at ``level``."""
        return self.rows[self._leaf_index[value]][level]

    def codes(self) -> tuple[list[NDArray[np.int32]], list[int]]:
        """Integer codes of every leaf at every level, and the number of distinct values per level.

        Codes at a level are dense (0..size-1), which lets the lattice search count equivalence classes with
        integer arithmetic instead of strings.
        """
        return _codes(self.rows)

    def missing_leaves(self, values: Iterable[str]) -> list[str]:
        """Values that the hierarchy does not cover."""
        return sorted({v for v in values if v not in self._leaf_index})

    def lookup(self, leaves: pa.Array, level: int) -> pa.Array:
        """Generalise an Arrow array of leaf strings to ``level``."""
        if level == 0:
            return leaves
        positions = pc.index_in(leaves, value_set=pa.array(self.leaves, pa.string()))
        return pc.take(pa.array([row[level] for row in self.rows], pa.string()), positions)

    @classmethod
    def from_arx_csv(cls, path: Path, column: str, *, delimiter: str = ";") -> Hierarchy:
        """Read a hierarchy in ARX's CSV format: one row per value, its generalisations left to right."""
        try:
            with path.open(encoding="utf-8-sig", newline="") as f:
                rows = tuple(
                    tuple(cell.strip() for cell in r) for r in csv.reader(f, delimiter=delimiter) if r
                )
        except OSError as err:
            raise SpecError(f"cannot read the hierarchy file: {err.strerror}", file=str(path)) from err
        try:
            return cls(column, rows)
        except SpecError as err:
            raise SpecError(str(err.args[0]), file=str(path), row=err.row, field=column) from err

    def to_arx_csv(self, path: Path, *, delimiter: str = ";") -> None:
        """Write the hierarchy in ARX's CSV format."""
        with path.open("w", encoding="utf-8", newline="") as f:
            csv.writer(f, delimiter=delimiter, lineterminator="\n").writerows(self.rows)


def _codes(rows: tuple[tuple[str, ...], ...]) -> tuple[list[NDArray[np.int32]], list[int]]:
    codes: list[NDArray[np.int32]] = []
    sizes: list[int] = []
    for level in range(len(rows[0])):
        _, inverse = np.unique(np.array([r[level] for r in rows], dtype=object), return_inverse=True)
        codes.append(inverse.astype(np.int32))
        sizes.append(int(inverse.max()) + 1)
    return codes, sizes


def leaf_strings(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The leaf strings of a column: integers and decimals as written, dates ISO, missing as ``NULL``."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_timestamp(values.type):
        values = pc.cast(values, pa.date32())
    if pa.types.is_floating(values.type) and pc.all(pc.equal(pc.floor(values), values)).as_py() is not False:
        values = pc.cast(values, pa.int64())
    strings = pc.cast(values, pa.string())
    return pc.fill_null(strings, NULL_LEAF)


# --- specs: how a profile asks for a hierarchy (data, no engine) --------------------------------------------


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BandsSpec(_Spec):
    """Numbers (ages, say) in bands of growing width; each width must divide the next so bands nest."""

    kind: Literal["bands"] = "bands"
    widths: tuple[int, ...] = (5, 10, 20)

    @model_validator(mode="after")
    def _nested(self) -> BandsSpec:
        for narrow, wide in zip(self.widths, self.widths[1:], strict=False):
            if narrow < 1 or wide % narrow:
                raise ValueError(f"band widths must be positive and each divide the next, got {self.widths}")
        return self


class DateSpec(_Spec):
    """Dates coarsened through month, quarter, year and decade (any increasing subset)."""

    kind: Literal["date"] = "date"
    levels: tuple[Literal["month", "quarter", "year", "decade"], ...] = ("month", "year")

    @model_validator(mode="after")
    def _increasing(self) -> DateSpec:
        order = ["month", "quarter", "year", "decade"]
        ranks = [order.index(level) for level in self.levels]
        if ranks != sorted(set(ranks)):
            raise ValueError(f"date levels must grow coarser without repeats, got {self.levels}")
        return self


class RegionSpec(_Spec):
    """GB/T 2260 administrative division codes: county, then prefecture, then province."""

    kind: Literal["region"] = "region"


class OccupationSpec(_Spec):
    """Occupations, grouped into the eight major groups of GB/T 6565-2015."""

    kind: Literal["occupation"] = "occupation"


class MaskSpec(_Spec):
    """Codes masked from the right, ``step`` characters per level (postcodes, ward codes)."""

    kind: Literal["mask"] = "mask"
    step: int = Field(1, ge=1)


class SuppressSpec(_Spec):
    """Only two levels: the value, or ``*`` (sex, ethnicity and other short categorical values)."""

    kind: Literal["suppress"] = "suppress"


class ArxCsvSpec(_Spec):
    """A hierarchy written in ARX's CSV format, for example one made in ARX's hierarchy wizard."""

    kind: Literal["arx_csv"] = "arx_csv"
    path: Path
    delimiter: str = ";"


HierarchySpec = Annotated[
    BandsSpec | DateSpec | RegionSpec | OccupationSpec | MaskSpec | SuppressSpec | ArxCsvSpec,
    Field(discriminator="kind"),
]


def build_hierarchy(spec: HierarchySpec, column: str, values: Iterable[str]) -> Hierarchy:
    """Build the hierarchy ``spec`` asks for, covering every value of ``column``.

    Args:
        spec: What kind of hierarchy, with its parameters.
        column: The quasi-identifier's column name.
        values: The column's leaf strings (see :func:`leaf_strings`); duplicates are fine.

    Returns:
        The hierarchy, one row per distinct value.

    Raises:
        InputError: If a value cannot be generalised by this kind of hierarchy (a non-number for bands, a
            malformed date or region code), naming the column.

    Example:
        >>> build_hierarchy(BandsSpec(widths=(5, 10)), "age", ["23", "47"]).rows
        (('23', '20-24', '20-29', '*'), ('47', '45-49', '40-49', '*'))
    """
    leaves = sorted(set(values))
    if isinstance(spec, ArxCsvSpec):
        hierarchy = Hierarchy.from_arx_csv(spec.path, column, delimiter=spec.delimiter)
        missing = hierarchy.missing_leaves(leaves)
        if missing:
            raise InputError(
                f"{len(missing)} values of {column!r} are not in the hierarchy file; add them to it",
                file=str(spec.path),
                field=column,
            )
        return hierarchy
    makers: dict[type, Callable[[Any, str, str], tuple[str, ...]]] = {
        BandsSpec: _bands_row,
        DateSpec: _date_row,
        RegionSpec: _region_row,
        OccupationSpec: _occupation_row,
        MaskSpec: _mask_row,
        SuppressSpec: _suppress_row,
    }
    make = makers[type(spec)]
    middles = {leaf: make(spec, column, leaf) for leaf in leaves if leaf != NULL_LEAF}
    height = 2 + max((len(m) for m in middles.values()), default=0)
    rows = []
    for leaf in leaves:
        # A missing value stays missing until the attribute is suppressed altogether; a shorter row (a short
        # code under masking) keeps its coarsest group until the top, which keeps the hierarchy a tree.
        levels = (leaf, *middles.get(leaf, ()))
        rows.append(levels + (levels[-1],) * (height - 1 - len(levels)) + (SUPPRESSED,))
    return Hierarchy(column, tuple(rows))


def _bands_row(spec: Any, column: str, leaf: str) -> tuple[str, ...]:
    try:
        number = int(leaf)
    except ValueError:
        raise InputError(
            f"bands need whole numbers; {column!r} holds a value that is not one", field=column
        ) from None
    return tuple(f"{number // w * w}-{number // w * w + w - 1}" for w in spec.widths)


def _date_row(spec: Any, column: str, leaf: str) -> tuple[str, ...]:
    try:
        day = dt.date.fromisoformat(leaf[:10])
    except ValueError:
        raise InputError(
            f"date hierarchies need ISO dates; {column!r} holds a value that is not one", field=column
        ) from None
    label = {
        "month": f"{day.year}-{day.month:02d}",
        "quarter": f"{day.year}-Q{(day.month - 1) // 3 + 1}",
        "year": str(day.year),
        "decade": f"{day.year // 10 * 10}s",
    }
    return tuple(label[level] for level in spec.levels)


def _region_row(spec: Any, column: str, leaf: str) -> tuple[str, ...]:
    # GB/T 2260: digits 1-2 province, 3-4 prefecture (city), 5-6 county (district).
    if len(leaf) != 6 or not leaf.isdigit():
        raise InputError(
            f"region hierarchies need 6-digit GB/T 2260 codes; {column!r} holds a value that is not one",
            field=column,
        )
    return (leaf[:4] + "00", leaf[:2] + "0000")


@functools.cache
def _occupation_groups() -> dict[str, str]:
    text = (Path(__file__).parent / "data" / "occupations.yaml").read_text(encoding="utf-8")
    groups: dict[str, list[str]] = yaml.safe_load(text)
    return {name: group for group, names in groups.items() for name in names}


def _occupation_row(spec: Any, column: str, leaf: str) -> tuple[str, ...]:
    groups = _occupation_groups()
    return (groups.get(leaf, "不便分类的其他从业人员"),)


def _mask_row(spec: Any, column: str, leaf: str) -> tuple[str, ...]:
    kept = range(len(leaf) - spec.step, 0, -spec.step)
    return tuple(leaf[:n] + SUPPRESSED * (len(leaf) - n) for n in kept)


def _suppress_row(spec: Any, column: str, leaf: str) -> tuple[str, ...]:
    return ()


def hierarchy_for(
    column: str, values: pa.Array | pa.ChunkedArray, spec: HierarchySpec
) -> tuple[Hierarchy, pa.Array]:
    """Leaf strings of a column and the hierarchy over them, in one step."""
    leaves = leaf_strings(values)
    return build_hierarchy(spec, column, pc.unique(leaves).to_pylist()), leaves
