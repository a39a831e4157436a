"""Column roles proposed from names and values: OMOP tables, staged source tables, Chinese and pinyin column
names, and columns whose values contradict their names."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest

from medspace.core import InputError, make_resident_id
from medspace.privacy._address import address_units
from medspace.privacy._roles import (
    HIPAA_IDENTIFIERS,
    KIND_ROLES,
    ColumnRole,
    IdentifierKind,
    propose_roles,
)

K = IdentifierKind

RESIDENT_IDS = [
    make_resident_id("110105", dt.date(1949, 12, 31), 2),
    make_resident_id("310115", dt.date(1980, 5, 17), 13),
    make_resident_id("440305", dt.date(2001, 1, 9), 456),
]
PHONES = ["13812345678", "15900001111", "+8618622223333"]
NAMES = ["张伟", "李娜", "欧阳修", "王秀英"]
ADDRESSES = ["上海市浦东新区张江路12弄3号", "江苏省南京市玄武区中山路18号", "广东省深圳市南山区科技园1栋"]
NOTE = "患者因反复胸闷气短三年入院，查体：血压一百四十比九十毫米汞柱，心肺未见明显异常。"


def propose_one(column: str, values: pa.Array | list[Any], table_name: str | None = None) -> Any:
    (proposal,) = propose_roles(pa.table({column: values}), table_name=table_name)
    return proposal


OMOP_COLUMNS = [
    ("person", "person_id", [1, 2, 3], K.PERSON_KEY),
    ("person", "person_source_value", ["P00000001", "P00000002"], K.PERSON_KEY),
    ("person", "year_of_birth", [1950, 1987], K.BIRTH_YEAR),
    ("person", "month_of_birth", [3, 11], K.BIRTH_DATE_PART),
    ("person", "day_of_birth", [9, 28], K.BIRTH_DATE_PART),
    ("person", "birth_datetime", pa.array([dt.datetime(1950, 3, 9)]), K.BIRTH_DATE),
    ("person", "gender_concept_id", [8507, 8532], K.SEX),
    ("person", "gender_source_value", ["男", "女"], K.SEX),
    ("person", "race_concept_id", [0], K.ETHNICITY),
    ("person", "ethnicity_source_value", ["汉族"], K.ETHNICITY),
    ("person", "location_id", [1, 2], K.REGION),
    ("person", "provider_id", [7], K.OTHER),
    ("location", "address_1", ["张江路12弄3号"], K.ADDRESS),
    ("location", "city", ["上海市"], K.ADDRESS),
    ("location", "county", ["浦东新区"], K.ADDRESS),
    ("location", "zip", ["201203"], K.POSTCODE),
    ("location", "latitude", [31.2], K.GEO_COORDINATES),
    ("provider", "provider_name", ["张伟"], K.STAFF_NAME),
    ("provider", "npi", ["1234567893"], K.CERTIFICATE_NUMBER),
    ("provider", "year_of_birth", [1970], K.OTHER),
    ("visit_occurrence", "visit_occurrence_id", [1, 2], K.RECORD_KEY),
    ("visit_occurrence", "visit_source_value", ["V0001"], K.RECORD_KEY),
    ("visit_occurrence", "visit_start_date", pa.array([dt.date(2024, 1, 2)]), K.DATE),
    ("visit_occurrence", "visit_end_datetime", pa.array([dt.datetime(2024, 1, 9, 10)]), K.DATE),
    ("condition_occurrence", "condition_concept_id", [201826], K.DIAGNOSIS),
    ("condition_occurrence", "condition_source_value", ["E11.900"], K.DIAGNOSIS),
    ("drug_exposure", "drug_concept_id", [19078461], K.OTHER),
    ("drug_exposure", "drug_source_value", ["XA10BAA"], K.CLINICAL),
    ("measurement", "measurement_time", ["10:30"], K.OTHER),
    ("death", "death_date", pa.array([dt.date(2024, 3, 1)]), K.DATE),
    ("death", "cause_source_value", ["I21.9"], K.DIAGNOSIS),
    ("note", "note_text", [NOTE], K.FREE_TEXT),
    ("device_exposure", "unique_device_id", ["UDI-01-2233"], K.DEVICE_ID),
    # Names a rule calls "other" are not overridden by weak evidence: long prose, region-code-like numbers.
    ("concept", "concept_name", ["Type 2 diabetes mellitus without complication"] * 3, K.OTHER),
    ("measurement", "unit_concept_id", [110105, 110105, 310115], K.OTHER),
]


@pytest.mark.parametrize(("table", "column", "values", "kind"), OMOP_COLUMNS)
def test_omop_columns(table: str, column: str, values: Any, kind: IdentifierKind) -> None:
    proposal = propose_one(column, values, table)
    assert proposal.kind is kind
    assert proposal.role is KIND_ROLES[kind]
    assert proposal.table == table


SOURCE_COLUMNS = [
    # Staged tables (sources/data/specs).
    ("his_patients", "his_patient_id", ["0000123", "0000456"], K.HOSPITAL_NUMBER),
    ("his_patients", "name", NAMES, K.NAME),
    ("his_patients", "resident_id", RESIDENT_IDS, K.RESIDENT_ID),
    ("his_patients", "phone", PHONES, K.PHONE),
    ("his_patients", "address", ADDRESSES, K.ADDRESS),
    ("his_patients", "inpatient_no", ["ZY2024000123"], K.HOSPITAL_NUMBER),
    ("his_patients", "birth_date", pa.array([dt.date(1980, 5, 17)]), K.BIRTH_DATE),
    ("his_registrations", "visit_serial", ["GH0001"], K.RECORD_KEY),
    ("his_registrations", "doctor", NAMES, K.STAFF_NAME),
    ("his_registrations", "diagnosis_name", ["高血压", "2型糖尿病"], K.DIAGNOSIS),
    ("his_bills", "bill_id", ["SF0001"], K.ACCOUNT_NUMBER),
    ("lis_requests", "age_years", [45, 91], K.AGE),
    ("lis_results", "value_text", ["阴性"], K.CLINICAL),
    ("ris_exams", "findings", [NOTE], K.FREE_TEXT),
    ("emr_notes", "author", NAMES, K.STAFF_NAME),
    ("insurance_settlements", "settlement_id", ["QD0001"], K.ACCOUNT_NUMBER),
    ("link_events", "record_key", ["his:patients:1"], K.RECORD_KEY),
    ("his_patients", "_source_file", ["his/patients.csv"], K.OTHER),
    # Raw HIS export names (pinyin initials).
    (None, "XM", NAMES, K.NAME),
    (None, "SFZH", RESIDENT_IDS, K.RESIDENT_ID),
    (None, "LXDH", PHONES, K.PHONE),
    (None, "JTDZ", ADDRESSES, K.ADDRESS),
    (None, "ZYH", ["ZY0001"], K.HOSPITAL_NUMBER),
    (None, "BRID", ["0000123"], K.HOSPITAL_NUMBER),
    (None, "CSRQ", pa.array([dt.date(1980, 5, 17)]), K.BIRTH_DATE),
    (None, "XB", ["男", "女"], K.SEX),
    # Chinese column names.
    (None, "姓名", NAMES, K.NAME),
    (None, "患者姓名", NAMES, K.NAME),
    (None, "身份证号", RESIDENT_IDS, K.RESIDENT_ID),
    (None, "联系电话", PHONES, K.PHONE),
    (None, "手机号码", PHONES, K.PHONE),
    (None, "住院号", ["ZY0001"], K.HOSPITAL_NUMBER),
    (None, "门诊号", ["MZ0001"], K.HOSPITAL_NUMBER),
    (None, "病案号", ["BA0001"], K.HOSPITAL_NUMBER),
    (None, "家庭地址", ADDRESSES, K.ADDRESS),
    (None, "出生日期", pa.array([dt.date(1980, 5, 17)]), K.BIRTH_DATE),
    (None, "性别", ["男", "女"], K.SEX),
    (None, "年龄", [45, 67], K.AGE),
    (None, "职业", ["教师"], K.OCCUPATION),
    (None, "民族", ["汉族"], K.ETHNICITY),
    (None, "婚姻状况", ["已婚"], K.MARITAL_STATUS),
    (None, "邮政编码", ["200120"], K.POSTCODE),
    (None, "主要诊断名称", ["高血压"], K.DIAGNOSIS),
    (None, "报告医生", NAMES, K.STAFF_NAME),
    (None, "医保卡号", ["YB12345678"], K.INSURANCE_NUMBER),
    (None, "入院日期", pa.array([dt.date(2024, 1, 2)]), K.DATE),
    (None, "备注", [NOTE], K.FREE_TEXT),
]


@pytest.mark.parametrize(("table", "column", "values", "kind"), SOURCE_COLUMNS)
def test_source_columns(table: str | None, column: str, values: Any, kind: IdentifierKind) -> None:
    assert propose_one(column, values, table).kind is kind


MISLEADING = [
    # Valid resident IDs decide whatever the column is called.
    ("remark", RESIDENT_IDS, K.RESIDENT_ID),
    ("insured_id", RESIDENT_IDS, K.RESIDENT_ID),
    ("col_7", RESIDENT_IDS, K.RESIDENT_ID),
    # Other strong evidence overrides names that do not already say "direct identifier".
    ("col_7", PHONES, K.PHONE),
    ("diagnosis_code", PHONES, K.PHONE),
    ("备注", NAMES, K.NAME),
    ("field_a", ADDRESSES, K.ADDRESS),
    ("contact", ["a.li@example.com", "wang@hospital.cn"], K.EMAIL),
    ("misc", ["复诊请联系13812345678", "无"], K.FREE_TEXT),
    ("misc", [f"身份证{RESIDENT_IDS[0]}已核对", "无"], K.FREE_TEXT),
    # Weak evidence fills in for a name that says nothing.
    ("col_9", ["310115", "110105", "440305"], K.REGION),
    ("col_9", ["男", "女", "女"], K.SEX),
    ("col_9", [NOTE, NOTE + "复查。"], K.FREE_TEXT),
    ("col_9", [f"AB{i:08d}X" for i in range(25)], K.OTHER_UNIQUE_CODE),
]


@pytest.mark.parametrize(("column", "values", "kind"), MISLEADING)
def test_values_override_misleading_or_unknown_names(
    column: str, values: list[str], kind: IdentifierKind
) -> None:
    proposal = propose_one(column, values)
    assert proposal.kind is kind
    assert proposal.basis == "values"


def test_a_key_column_whose_numbers_look_like_phones_stays_a_key() -> None:
    proposal = propose_one("barcode", ["13800000001", "13800000002", "13800000003"])
    assert proposal.kind is K.RECORD_KEY
    assert proposal.matched == 1.0  # the evidence is still reported


@pytest.mark.parametrize(
    "values",
    [
        ["11010519491231002" + c for c in "0123456789" if c != "X"][:3],  # wrong check characters
        ["11010519491332002X"],  # no 13th month
        ["99999919491231002X"],  # no such region (and a wrong check character)
    ],
)
def test_invalid_resident_ids_do_not_count(values: list[str]) -> None:
    proposal = propose_one("col_3", values)
    assert proposal.kind is not K.RESIDENT_ID


@pytest.mark.parametrize("values", [["高血压", "高血压", "高血压"], ["心内科", "呼吸科"], ["血清", "全血"]])
def test_clinical_words_are_not_names(values: list[str]) -> None:
    assert propose_one("category", values).kind is not K.NAME


def test_reasons_hold_no_values() -> None:
    columns = {
        "name": NAMES[:3],
        "remark": RESIDENT_IDS,
        "phone": PHONES,
        "address": ADDRESSES,
        "misc": ["复诊请联系13812345678", "无", "无"],
    }
    for proposal in propose_roles(pa.table(columns)):
        for value in columns[proposal.column]:
            assert value not in proposal.reason
        for number in ("13812345678", *RESIDENT_IDS):
            assert number not in proposal.reason


def test_proposals_sample_evenly_and_are_deterministic() -> None:
    table = pa.table({"phone": [f"138{i:08d}" for i in range(5000)], "n": list(range(5000))})
    first = propose_roles(table, sample_size=100)
    assert first == propose_roles(table, sample_size=100)
    assert first[0].sampled == 100
    assert first[0].kind is K.PHONE


def test_nulls_and_blanks_are_not_sampled() -> None:
    proposal = propose_one("col_1", ["", None, " ", RESIDENT_IDS[0]])
    assert proposal.sampled == 1
    assert proposal.kind is K.RESIDENT_ID


def test_sample_size_must_be_positive() -> None:
    with pytest.raises(InputError, match="sample_size"):
        propose_roles(pa.table({"a": [1]}), sample_size=0)


def test_every_kind_has_a_role_and_hipaa_lists_18_identifiers() -> None:
    assert set(KIND_ROLES) == set(IdentifierKind)
    assert len(HIPAA_IDENTIFIERS) == 18
    for kinds in HIPAA_IDENTIFIERS.values():
        for kind in kinds:
            assert KIND_ROLES[kind] in (ColumnRole.DIRECT_IDENTIFIER, ColumnRole.QUASI_IDENTIFIER)


@pytest.mark.parametrize(
    ("address", "units"),
    [
        ("江苏省苏州市昆山市玉山镇XX路1号", ("江苏省", "苏州市", "昆山市")),
        ("上海市浦东新区张江路12弄3号", ("上海市", None, "浦东新区")),
        ("上海浦东新区张江路12弄3号", ("上海", None, "浦东新区")),
        ("北京市市辖区东城区王府井大街1号", ("北京市", None, "东城区")),
        ("重庆市万州区沙龙路二段", ("重庆市", None, "万州区")),
        ("内蒙古自治区锡林郭勒盟锡林浩特市额尔敦路", ("内蒙古自治区", "锡林郭勒盟", "锡林浩特市")),
        ("新疆维吾尔自治区伊犁哈萨克自治州伊宁市解放路", ("新疆维吾尔自治区", "伊犁哈萨克自治州", "伊宁市")),
        ("西藏自治区阿里地区噶尔县狮泉河镇", ("西藏自治区", "阿里地区", "噶尔县")),
        ("四川省凉山彝族自治州西昌市长安路", ("四川省", "凉山彝族自治州", "西昌市")),
        ("浙江省温州市鹿城区人民路", ("浙江省", "温州市", "鹿城区")),
        ("北京市通州区新华大街", ("北京市", None, "通州区")),
        ("山东省济南市市中区经十路", ("山东省", "济南市", "市中区")),
        ("广东广州天河区体育西路", ("广东", "广州", "天河区")),
        ("中国 广东省 深圳市 南山区 科技园", ("广东省", "深圳市", "南山区")),
        ("湖北省仙桃市钱沟路", ("湖北省", "仙桃市", None)),
        # No district: the street is never taken for one.
        ("辽宁省济南市金平陈路z座", ("辽宁省", "济南市", None)),
        ("山东省青岛市杭州路10号", ("山东省", "青岛市", None)),
        ("济南市阳光小区5号", (None, "济南市", None)),
        ("上海市黄浦区XX市场", ("上海市", None, "黄浦区")),
        ("中山路18号", (None, None, None)),
    ],
)
def test_address_units(address: str, units: tuple[str | None, str | None, str | None]) -> None:
    found = address_units(address)
    assert (found.province, found.prefecture, found.county) == units
