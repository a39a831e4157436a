"""Generalisation hierarchies: the built-in builders, ARX's CSV format, and the checks on loading."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import TypeAdapter, ValidationError

from medspace.core import InputError, SpecError
from medspace.privacy import (
    NULL_LEAF,
    ArxCsvSpec,
    BandsSpec,
    DateSpec,
    Hierarchy,
    HierarchySpec,
    MaskSpec,
    OccupationSpec,
    RegionSpec,
    SuppressSpec,
    build_hierarchy,
    leaf_strings,
)


def test_bands_nest() -> None:
    h = build_hierarchy(BandsSpec(widths=(5, 10, 20)), "age", ["0", "47", "89", "90"])
    assert h.rows[1] == ("47", "45-49", "40-49", "40-59", "*")
    assert h.height == 5


def test_bands_must_divide_each_other() -> None:
    with pytest.raises(ValidationError, match="divide"):
        BandsSpec(widths=(5, 8))


def test_dates_through_month_quarter_and_year() -> None:
    h = build_hierarchy(
        DateSpec(levels=("month", "quarter", "year")), "admitted", ["2024-05-06", "2023-12-31"]
    )
    assert h.rows == (
        ("2023-12-31", "2023-12", "2023-Q4", "2023", "*"),
        ("2024-05-06", "2024-05", "2024-Q2", "2024", "*"),
    )


def test_date_levels_must_grow_coarser() -> None:
    with pytest.raises(ValidationError, match="coarser"):
        DateSpec(levels=("year", "month"))


def test_region_codes_go_county_prefecture_province() -> None:
    h = build_hierarchy(RegionSpec(), "region", ["310105"])
    assert h.rows == (("310105", "310100", "310000", "*"),)
    with pytest.raises(InputError, match="6-digit"):
        build_hierarchy(RegionSpec(), "region", ["31010"])


def test_occupations_group_by_gb_t_6565_major_group() -> None:
    h = build_hierarchy(OccupationSpec(), "occupation", ["医生", "教师", "学生", "宇航员"])
    groups = {row[0]: row[1] for row in h.rows}
    assert groups["医生"] == groups["教师"] == "专业技术人员"
    assert groups["学生"] == "无职业或不在业"
    assert groups["宇航员"] == "不便分类的其他从业人员"


def test_masking_codes_of_different_lengths_stays_a_tree() -> None:
    h = build_hierarchy(MaskSpec(step=1), "ward", ["1234", "12"])
    assert h.rows == (("12", "1*", "1*", "1*", "*"), ("1234", "123*", "12**", "1***", "*"))


def test_missing_values_stay_missing_until_suppressed() -> None:
    leaves = leaf_strings(pa.array([3, None, 41]))
    assert leaves.to_pylist() == ["3", NULL_LEAF, "41"]
    h = build_hierarchy(BandsSpec(widths=(10,)), "age", leaves.to_pylist())
    assert h.generalise(NULL_LEAF, 1) == NULL_LEAF
    assert h.generalise(NULL_LEAF, 2) == "*"


def test_sex_is_kept_or_suppressed() -> None:
    assert build_hierarchy(SuppressSpec(), "sex", ["M", "F"]).rows == (("F", "*"), ("M", "*"))


def test_arx_csv_round_trip(tmp_path: Path) -> None:
    h = build_hierarchy(BandsSpec(widths=(5, 10)), "age", ["23", "47"])
    path = tmp_path / "age.csv"
    h.to_arx_csv(path)
    assert path.read_text().splitlines()[0] == "23;20-24;20-29;*"
    spec = TypeAdapter(HierarchySpec).validate_python({"kind": "arx_csv", "path": str(path)})
    assert isinstance(spec, ArxCsvSpec)
    assert build_hierarchy(spec, "age", ["23"]) == Hierarchy.from_arx_csv(path, "age") == h


def test_arx_csv_must_cover_the_values(tmp_path: Path) -> None:
    path = tmp_path / "age.csv"
    path.write_text("23;20-29;*\n")
    with pytest.raises(InputError, match="not in the hierarchy file") as err:
        build_hierarchy(ArxCsvSpec(path=path), "age", ["23", "99"])
    assert err.value.file == str(path)


def test_a_hierarchy_that_is_not_a_tree_is_refused_with_its_row(tmp_path: Path) -> None:
    path = tmp_path / "ward.csv"
    path.write_text("A1;A;*\nA2;A;*\nB1;A;X\n")
    with pytest.raises(SpecError, match="not a tree") as err:
        Hierarchy.from_arx_csv(path, "ward")
    assert (err.value.file, err.value.row) == (str(path), 3)


def test_rows_need_every_level() -> None:
    with pytest.raises(SpecError, match="row 2"):
        Hierarchy("ward", (("A1", "A", "*"), ("A2", "*")))


def test_codes_are_dense_per_level() -> None:
    h = Hierarchy("ward", (("A1", "A", "*"), ("A2", "A", "*"), ("B1", "B", "*")))
    codes, sizes = h.codes()
    assert sizes == [3, 2, 1]
    assert codes[1].tolist() == [0, 0, 1]
