"""The direct-identifier step: pseudonyms, per-person date shifts, years, top-coded ages, cut addresses and
resident-ID facts, each re-checked by an independent computation."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medspace.core import ConfigError, InputError, check_resident_id, make_resident_id, resident_id_sex
from medspace.privacy._direct import cut_address, treat_direct_identifiers
from medspace.privacy._keys import ProductKey
from medspace.privacy._profile import (
    ColumnPlan,
    DeriveResidentIdFacts,
    Generalise,
    Keep,
    Pseudonymise,
    Remove,
    ScrubText,
    ShiftDate,
    TopCodeAge,
    TreatmentModel,
    TruncateAddress,
    YearOnly,
    load_profile,
    plan_columns,
)
from medspace.privacy._roles import HIPAA_IDENTIFIERS, KIND_ROLES, IdentifierKind, propose_roles

K = IdentifierKind
KEY = ProductKey.from_hex("00" * 32)
OTHER_KEY = ProductKey.from_hex("11" * 32)
TODAY = dt.date(2025, 6, 30)


def plan(column: str, kind: IdentifierKind, treatment: TreatmentModel, table: str | None = "t") -> ColumnPlan:
    return ColumnPlan(table, column, KIND_ROLES[kind], kind, treatment, None, "profile", "test")


def treat(
    table: pa.Table, plans: Sequence[ColumnPlan], key: ProductKey = KEY, **options: Any
) -> tuple[pa.Table, Any]:
    options.setdefault("today", TODAY)
    return treat_direct_identifiers(table, plans, key=key, **options)


def keep_plans(table: pa.Table, *columns: str) -> list[ColumnPlan]:
    return [plan(c, K.OTHER, Keep()) for c in columns]


# --- pseudonyms ------------------------------------------------------------------------------------------


def test_pseudonyms_are_deterministic_per_key_and_differ_between_keys() -> None:
    table = pa.table({"hn": ["ZY001", "ZY002", "ZY001", None]})
    plans = [plan("hn", K.HOSPITAL_NUMBER, Pseudonymise())]
    first, reports = treat(table, plans)
    again, _ = treat(table, plans)
    other, _ = treat(table, plans, key=OTHER_KEY)
    values = first.column("hn").to_pylist()
    assert values == again.column("hn").to_pylist()
    assert values[0] == values[2] == KEY.pseudonym("ZY001")
    assert values[0] != values[1]
    assert values[3] is None
    assert len(values[0]) == 24
    assert not set(values[:3]) & set(other.column("hn").to_pylist())
    assert (reports[0].rows, reports[0].changed, reports[0].nulled) == (3, 3, 0)


def test_integer_keys_stay_int64_and_join_across_tables() -> None:
    person = pa.table({"person_id": pa.array([1, 2, 2**62], pa.int64())})
    visits = pa.table({"person_id": pa.array([2, 2, 1], pa.int32())})
    plans = [plan("person_id", K.PERSON_KEY, Pseudonymise())]
    p, _ = treat(person, plans)
    v, _ = treat(visits, plans)
    assert p.column("person_id").type == pa.int64()
    ids = p.column("person_id").to_pylist()
    assert all(0 <= i < 2**63 for i in ids)
    assert ids[0] == KEY.pseudonym_int("1")
    assert v.column("person_id").to_pylist() == [ids[1], ids[1], ids[0]]


def test_pseudonym_length_follows_the_treatment() -> None:
    table = pa.table({"hn": pa.array(["a"]).dictionary_encode()})
    out, _ = treat(table, [plan("hn", K.HOSPITAL_NUMBER, Pseudonymise(length=40))])
    assert out.column("hn").to_pylist() == [KEY.pseudonym("a", length=40)]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=60, unique=True))
def test_pseudonymise_is_injective_on_distinct_text(values: list[str]) -> None:
    out, _ = treat(pa.table({"k": values}), [plan("k", K.RECORD_KEY, Pseudonymise())])
    pseudonyms = out.column("k").to_pylist()
    assert len(set(pseudonyms)) == len(values)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), min_size=1, max_size=60, unique=True))
def test_pseudonymise_is_injective_on_distinct_integers(values: list[int]) -> None:
    out, _ = treat(pa.table({"k": pa.array(values, pa.int64())}), [plan("k", K.RECORD_KEY, Pseudonymise())])
    pseudonyms = out.column("k").to_pylist()
    assert len(set(pseudonyms)) == len(values)
    assert all(0 <= p < 2**63 for p in pseudonyms)


# --- date shifting ---------------------------------------------------------------------------------------


def visits_table() -> pa.Table:
    persons, starts, admitted = [], [], []
    for person in range(40):
        for visit in range(4):
            persons.append(f"P{person:04d}")
            day = dt.date(2020, 1, 1) + dt.timedelta(days=37 * person + 101 * visit)
            starts.append(day)
            admitted.append(dt.datetime.combine(day, dt.time(8 + visit, 15, 30)))
    return pa.table(
        {
            "person_id": persons,
            "start": pa.array(starts, pa.date32()),
            "admitted_at": pa.array(admitted, pa.timestamp("ms")),
            "end": pa.array([d + dt.timedelta(days=3) for d in starts], pa.date64()),
        }
    )


def shift_plans() -> list[ColumnPlan]:
    return [
        plan("person_id", K.PERSON_KEY, Pseudonymise()),
        plan("start", K.DATE, ShiftDate()),
        plan("admitted_at", K.DATE, ShiftDate()),
        plan("end", K.DATE, ShiftDate()),
    ]


def test_date_shifts_keep_every_interval_within_a_person() -> None:
    table = visits_table()
    out, reports = treat(table, shift_plans(), person_column="person_id", date_shift_days=365)
    persons = table.column("person_id").to_pylist()
    for column in ("start", "admitted_at", "end"):
        before = table.column(column).to_pylist()
        after = out.column(column).to_pylist()
        # Brute force: every pair of rows of one person, every pair of columns, the same difference.
        for i, j in itertools.combinations(range(len(persons)), 2):
            if persons[i] == persons[j]:
                assert after[i] - after[j] == before[i] - before[j]
        for person, b, a in zip(persons, before, after, strict=True):
            expected = KEY.date_offset_days(person, 365)
            assert (a - b) == dt.timedelta(days=expected)
            assert 1 <= abs(expected) <= 365
    # The offset is the person's, not the row's or the column's: start and admitted_at move together.
    starts, admitted = out.column("start").to_pylist(), out.column("admitted_at").to_pylist()
    assert all(a.date() == s for a, s in zip(admitted, starts, strict=True))
    offsets = {KEY.date_offset_days(p, 365) for p in set(persons)}
    assert len(offsets) > 20  # persons move differently
    assert out.column("person_id").to_pylist()[0] == KEY.pseudonym("P0000")
    assert [r.changed for r in reports[1:]] == [160, 160, 160]


def test_the_same_person_moves_the_same_way_in_every_table() -> None:
    a = pa.table({"person_id": [5, 6], "d": pa.array([dt.date(2024, 1, 1)] * 2)})
    b = pa.table({"person_id": pa.array(["5"]), "d": pa.array([dt.date(2024, 1, 1)])})
    plans = [plan("person_id", K.PERSON_KEY, Keep()), plan("d", K.DATE, ShiftDate())]
    out_a, _ = treat(a, plans, person_column="person_id", date_shift_days=30)
    out_b, _ = treat(b, plans, person_column="person_id", date_shift_days=30)
    assert out_a.column("d")[0] == out_b.column("d")[0]


def test_dates_without_a_person_are_withdrawn_and_nulls_stay_null() -> None:
    table = pa.table(
        {"pid": ["A", None, "B"], "d": pa.array([dt.date(2024, 1, 1), dt.date(2024, 1, 2), None])}
    )
    plans = [plan("pid", K.PERSON_KEY, Keep()), plan("d", K.DATE, ShiftDate())]
    out, reports = treat(table, plans, person_column="pid", date_shift_days=10)
    values = out.column("d").to_pylist()
    assert values[0] is not None and values[1] is None and values[2] is None
    assert (reports[1].rows, reports[1].changed, reports[1].nulled) == (2, 2, 1)


def test_shifting_needs_a_person_column_and_a_shift() -> None:
    table = visits_table()
    with pytest.raises(ConfigError, match="person_column"):
        treat(table, shift_plans(), date_shift_days=30)
    with pytest.raises(ConfigError, match="date_shift_days"):
        treat(table, shift_plans(), person_column="person_id")
    with pytest.raises(ConfigError, match="not in the table"):
        treat(table, shift_plans(), person_column="nobody", date_shift_days=30)


def test_dates_held_as_text_are_refused() -> None:
    table = pa.table({"pid": ["A"], "d": ["2024-01-01"]})
    plans = [plan("pid", K.PERSON_KEY, Keep()), plan("d", K.DATE, ShiftDate())]
    with pytest.raises(InputError, match="not a date") as caught:
        treat(table, plans, person_column="pid", date_shift_days=10)
    assert caught.value.field == "d"


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=5),
            st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1)),
        ),
        min_size=1,
        max_size=30,
    ),
    max_days=st.integers(min_value=1, max_value=3650),
    secret=st.binary(min_size=16, max_size=32),
)
def test_shift_date_preserves_intervals_for_any_dates_and_offsets(
    rows: list[tuple[int, dt.datetime]], max_days: int, secret: bytes
) -> None:
    key = ProductKey(secret)
    persons = [p for p, _ in rows]
    moments = [m.replace(microsecond=m.microsecond // 1000 * 1000) for _, m in rows]
    table = pa.table({"pid": persons, "at": pa.array(moments, pa.timestamp("ms"))})
    plans = [plan("pid", K.PERSON_KEY, Keep()), plan("at", K.DATE, ShiftDate())]
    out, _ = treat(table, plans, key=key, person_column="pid", date_shift_days=max_days)
    shifted = out.column("at").to_pylist()
    for i, j in itertools.combinations(range(len(rows)), 2):
        if persons[i] == persons[j]:
            assert shifted[i] - shifted[j] == moments[i] - moments[j]
    for person, before, after in zip(persons, moments, shifted, strict=True):
        delta = (after - before).days
        assert delta == key.date_offset_days(str(person), max_days)
        assert 1 <= abs(delta) <= max_days


# --- years and ages ----------------------------------------------------------------------------------------


def test_year_only_keeps_the_year_and_groups_the_oldest_births() -> None:
    births = [dt.date(1920, 5, 1), dt.date(1935, 6, 30), dt.date(1936, 1, 1), dt.date(1990, 2, 3), None]
    table = pa.table({"b": pa.array(births, pa.date32()), "d": pa.array(births, pa.date32())})
    plans = [
        plan("b", K.BIRTH_DATE, YearOnly(aggregate_ages_above=89)),
        plan("d", K.DATE, YearOnly(output="first_of_year")),
    ]
    out, _ = treat(table, plans)
    # Reference year 2025: born in 1935 or earlier may be 90 or older, so one category, written 1935.
    assert out.column("b").to_pylist() == [1935, 1935, 1936, 1990, None]
    assert out.column("d").type == pa.date32()
    assert out.column("d").to_pylist() == [dt.date(y, 1, 1) for y in (1920, 1935, 1936, 1990)] + [None]


def test_year_only_on_timestamps_keeps_their_type_when_asked() -> None:
    table = pa.table({"t": pa.array([dt.datetime(2024, 7, 8, 9, 10)], pa.timestamp("us"))})
    out, _ = treat(table, [plan("t", K.DATE, YearOnly(output="first_of_year"))])
    assert out.column("t").type == pa.timestamp("us")
    assert out.column("t").to_pylist() == [dt.datetime(2024, 1, 1)]


def test_ages_over_89_are_grouped() -> None:
    table = pa.table(
        {
            "age": pa.array([12, 89, 90, 104, None], pa.int64()),
            "age_f": pa.array([89.0, 89.5, 95.0, 3.0, None]),
            "age_text": ["45岁", "95岁", "3月", "九十五岁", "91"],
            "yob": pa.array([1930, 1935, 1936, 2000, None], pa.int32()),
        }
    )
    plans = [
        plan("age", K.AGE, TopCodeAge()),
        plan("age_f", K.AGE, TopCodeAge()),
        plan("age_text", K.AGE, TopCodeAge()),
        plan("yob", K.BIRTH_YEAR, TopCodeAge()),
    ]
    out, reports = treat(table, plans)
    assert out.column("age").to_pylist() == [12, 89, 90, 90, None]
    assert out.column("age_f").to_pylist() == [89.0, 90.0, 90.0, 3.0, None]
    assert out.column("age_text").to_pylist() == ["45岁", "90+", "3月", None, "90+"]
    assert out.column("yob").to_pylist() == [1935, 1935, 1936, 2000, None]
    assert out.column("yob").type == pa.int32()
    # 90 is already the category, so only 104 changes; unreadable text is withdrawn.
    assert [(r.changed, r.nulled) for r in reports] == [(1, 0), (2, 0), (3, 1), (1, 0)]


# --- addresses --------------------------------------------------------------------------------------------


ADDRESS_CUTS = [
    # (address, district, city, province)
    ("江苏省南京市玄武区中山路18号3栋", "江苏省南京市玄武区", "江苏省南京市", "江苏省"),
    ("上海市浦东新区张江路12弄3号", "上海市浦东新区", "上海市", "上海市"),
    ("上海浦东新区张江路12弄3号", "上海浦东新区", "上海", "上海"),
    ("北京市市辖区东城区王府井大街1号", "北京市东城区", "北京市", "北京市"),
    (
        "广西壮族自治区南宁市青秀区民族大道",
        "广西壮族自治区南宁市青秀区",
        "广西壮族自治区南宁市",
        "广西壮族自治区",
    ),
    (
        "内蒙古自治区锡林郭勒盟锡林浩特市额尔敦路",
        "内蒙古自治区锡林郭勒盟锡林浩特市",
        "内蒙古自治区锡林郭勒盟",
        "内蒙古自治区",
    ),
    ("江苏省苏州市昆山市玉山镇XX路1号", "江苏省苏州市昆山市", "江苏省苏州市", "江苏省"),
    ("四川省凉山彝族自治州西昌市长安路", "四川省凉山彝族自治州西昌市", "四川省凉山彝族自治州", "四川省"),
    # No district: keep what is there, never the street.
    ("辽宁省济南市金平陈路z座", "辽宁省济南市", "辽宁省济南市", "辽宁省"),
    ("湖北省仙桃市钱沟路", "湖北省仙桃市", "湖北省仙桃市", "湖北省"),
    # No province: the city or district is kept at those levels; the province is unknown, so nothing.
    ("南京市玄武区中山路18号", "南京市玄武区", "南京市", None),
    ("浦东新区张江路12弄3号", "浦东新区", None, None),
    # No administrative unit at all.
    ("中山路18号", None, None, None),
    # GB/T 2260 region codes.
    ("310115", "310115", "310100", "310000"),
]


@pytest.mark.parametrize(("address", "district", "city", "province"), ADDRESS_CUTS)
def test_addresses_are_cut_at_each_level(
    address: str, district: str | None, city: str | None, province: str | None
) -> None:
    assert cut_address(address, "district") == district
    assert cut_address(address, "city") == city
    assert cut_address(address, "province") == province


def test_truncate_address_on_a_table_counts_changes() -> None:
    table = pa.table(
        {
            "address": ["上海市浦东新区张江路12弄3号", "上海市", "中山路18号", None],
            "region": pa.array([310115, 110105, 12, None], pa.int64()),
        }
    )
    plans = [
        plan("address", K.ADDRESS, TruncateAddress(level="district")),
        plan("region", K.REGION, TruncateAddress(level="province")),
    ]
    out, reports = treat(table, plans)
    assert out.column("address").to_pylist() == ["上海市浦东新区", "上海市", None, None]
    assert out.column("region").to_pylist() == [310000, 110000, None, None]
    assert [(r.rows, r.changed, r.nulled) for r in reports] == [(3, 2, 1), (3, 3, 1)]


# --- resident IDs -----------------------------------------------------------------------------------------


def test_resident_id_facts_match_the_core_checks() -> None:
    ids = [
        make_resident_id("110105", dt.date(1949, 12, 31), 2),
        make_resident_id("440305", dt.date(2001, 1, 9), 457),
        make_resident_id("310115", dt.date(1980, 5, 17), 13),
        "110105194912310021",  # wrong check character
        "11010519491231002x",  # lower-case x is not in GB 11643
        None,
    ]
    table = pa.table({"before": [1] * 6, "resident_id": ids, "after": [2] * 6})
    plans = [
        plan("before", K.OTHER, Keep()),
        plan("resident_id", K.RESIDENT_ID, DeriveResidentIdFacts()),
        plan("after", K.OTHER, Keep()),
    ]
    out, reports = treat(table, plans)
    assert out.column_names == [
        "before",
        "resident_id_region",
        "resident_id_birth_year",
        "resident_id_sex",
        "after",
    ]
    for i, value in enumerate(ids):
        facts = [out.column(c)[i].as_py() for c in out.column_names[1:4]]
        if value is not None and check_resident_id(value, TODAY).valid:
            assert facts == [value[:4] + "00", int(value[6:10]), resident_id_sex(value)]
        else:
            assert facts == [None, None, None]
    report = reports[1]
    assert (report.rows, report.changed, report.nulled) == (5, 5, 2)
    assert report.outputs == ("resident_id_region", "resident_id_birth_year", "resident_id_sex")
    assert [p.kind for p in report.derived] == [K.REGION, K.BIRTH_YEAR, K.SEX]
    assert {p.basis for p in report.derived} == {"derived"}


def test_resident_id_facts_keep_only_what_the_profile_allows() -> None:
    table = pa.table({"sfzh": [make_resident_id("110105", dt.date(1949, 12, 31), 2)]})
    out, _ = treat(table, [plan("sfzh", K.RESIDENT_ID, DeriveResidentIdFacts(keep=("sex",)))])
    assert out.column_names == ["sfzh_sex"]
    assert out.column("sfzh_sex").to_pylist() == ["F"]
    out, reports = treat(table, [plan("sfzh", K.RESIDENT_ID, DeriveResidentIdFacts(keep=()))])
    assert (out.column_names, out.num_rows) == ([], 1)  # the rows are still counted
    assert reports[0].outputs == ()


# --- the step as a whole ----------------------------------------------------------------------------------


def test_remove_blank_and_deferred_treatments() -> None:
    table = pa.table({"a": ["x", None], "b": [1, 2], "c": ["note", "note"], "d": ["M", "F"]})
    plans = [
        plan("a", K.NAME, Remove()),
        plan("b", K.BIRTH_DATE_PART, Remove(blank=True)),
        plan("c", K.FREE_TEXT, ScrubText()),
        plan("d", K.SEX, Generalise()),
    ]
    out, reports = treat(table, plans)
    assert out.column_names == ["b", "c", "d"]
    assert out.column("b").to_pylist() == [None, None]
    assert out.column("b").type == pa.int64()
    assert out.column("c").equals(table.column("c"))
    assert [(r.action, r.changed, r.deferred, r.outputs) for r in reports] == [
        ("remove", 1, False, ()),
        ("remove", 2, False, ("b",)),
        ("scrub_text", 0, True, ("c",)),
        ("generalise", 0, True, ("d",)),
    ]


def test_every_column_needs_exactly_one_plan() -> None:
    table = pa.table({"a": [1], "b": [2]})
    with pytest.raises(ConfigError, match="no plan for columns b"):
        treat(table, keep_plans(table, "a"))
    with pytest.raises(ConfigError, match="two plans"):
        treat(table, keep_plans(table, "a", "a", "b"))
    with pytest.raises(ConfigError, match="does not have: c"):
        treat(table, keep_plans(table, "a", "b", "c"))
    with pytest.raises(ConfigError, match="one table"):
        treat(table, [plan("a", K.OTHER, Keep(), "t1"), plan("b", K.OTHER, Keep(), "t2")])


def test_reports_and_errors_hold_no_values() -> None:
    resident_id = make_resident_id("110105", dt.date(1949, 12, 31), 2)
    table = pa.table({"sfzh": [resident_id], "name": ["张伟"], "phone": ["13812345678"], "d": ["2024-01-01"]})
    plans = [
        plan("sfzh", K.RESIDENT_ID, DeriveResidentIdFacts()),
        plan("name", K.NAME, Remove()),
        plan("phone", K.PHONE, Pseudonymise()),
    ]
    _, reports = treat(table.drop_columns(["d"]), plans)
    text = repr(reports)
    for value in (resident_id, "张伟", "13812345678"):
        assert value not in text
    with pytest.raises(InputError) as caught:
        treat(table, [*plans, plan("d", K.DATE, YearOnly())])
    assert "2024" not in str(caught.value)


def hipaa_table() -> pa.Table:
    """One column of every kind HIPAA Safe Harbor names, with plausible values."""
    n = 3
    birth = [dt.date(1930, 2, 3), dt.date(1975, 8, 9), dt.date(2001, 12, 24)]
    columns: dict[str, pa.Array] = {
        "person_id": pa.array([11, 12, 13]),
        "name": pa.array(["张伟", "李娜", "欧阳修"]),
        "address": pa.array(["上海市浦东新区张江路12弄3号", "江苏省南京市玄武区中山路18号", "浦东新区XX路"]),
        "region_code": pa.array(["310115", "320102", "440305"]),
        "zip": pa.array(["201203", "210018", "518057"]),
        "latitude": pa.array([31.2, 32.0, 22.5]),
        "birth_date": pa.array(birth, pa.date32()),
        "month_of_birth": pa.array([2, 8, 12]),
        "year_of_birth": pa.array([1930, 1975, 2001]),
        "admitted_at": pa.array([dt.datetime(2024, 1, 2, 3, 4)] * n, pa.timestamp("us")),
        "age": pa.array([95, 49, 23]),
        "phone": pa.array(["13812345678", "15900001111", "0105551234"]),
        "email": pa.array(["a@example.com", "b@example.com", "c@example.com"]),
        "resident_id": pa.array([make_resident_id("110105", b, 3) for b in birth]),
        "inpatient_no": pa.array(["ZY1", "ZY2", "ZY3"]),
        "insurance_no": pa.array(["YB1", "YB2", "YB3"]),
        "account_no": pa.array(["AC1", "AC2", "AC3"]),
        "licence_no": pa.array(["L1", "L2", "L3"]),
        "license_plate": pa.array(["沪A12345", "苏A12345", "粤B12345"]),
        "unique_device_id": pa.array(["D1", "D2", "D3"]),
        "url": pa.array(["http://a.cn", "http://b.cn", "http://c.cn"]),
        "ip_address": pa.array(["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
        "fingerprint": pa.array(["f1", "f2", "f3"]),
        "photo": pa.array(["p1.jpg", "p2.jpg", "p3.jpg"]),
        "visit_occurrence_id": pa.array([101, 102, 103]),
        "uuid": pa.array(["u1", "u2", "u3"]),
    }
    return pa.table(columns)


def test_after_hipaa_no_column_of_an_identifier_kind_is_left_in_clear() -> None:
    table = hipaa_table()
    profile = load_profile("hipaa-safe-harbor")
    plans = plan_columns(propose_roles(table, table_name="records"), profile)
    # The table holds every HIPAA identifier kind, each proposed from the column's name and values.
    kinds = {p.kind for p in plans}
    for identifier, identifier_kinds in HIPAA_IDENTIFIERS.items():
        assert kinds & set(identifier_kinds), identifier
    out, reports = treat_direct_identifiers(table, plans, key=ProductKey.generate(), today=TODAY)
    by_column = {r.column: r for r in reports}
    hipaa_kinds = {k for ks in HIPAA_IDENTIFIERS.values() for k in ks}
    for column in table.column_names:
        report = by_column[column]
        assert report.kind in hipaa_kinds, column
        assert not report.deferred
        before = table.column(column).to_pylist()
        if column not in out.column_names or report.kind is K.BIRTH_DATE_PART:
            assert column not in out.column_names or out.column(column).null_count == len(before)
            continue
        after = out.column(column).to_pylist()
        if report.kind in (K.PERSON_KEY, K.RECORD_KEY):
            assert not set(after) & set(before)
        elif report.kind in (K.DATE, K.BIRTH_DATE):
            assert all(isinstance(v, int) for v in after)  # the year alone
            assert min(after) >= TODAY.year - 90
        elif report.kind in (K.AGE, K.BIRTH_YEAR):
            assert max(after) <= 90 if report.kind is K.AGE else min(after) >= TODAY.year - 90
        elif report.kind in (K.ADDRESS, K.REGION):
            # Province level or nothing: a province code, or a province name (上海市 is one).
            assert all(v is None or v.endswith("0000") or v in ("上海市", "江苏省") for v in after)
        else:
            pytest.fail(f"{column} ({report.kind}) is still in the table")
