"""Site mappings load, resolve their references, and a wrong one fails at load time naming its file, the
line and the field; the shipped synthetic-hospital site maps every column the seven old per-system specs
staged."""

from __future__ import annotations

from pathlib import Path

import pytest

from medspace.core import SpecError
from medspace.sources import (
    DEFAULT_SITE,
    CsvFormat,
    NdjsonFormat,
    XlsxFormat,
    load_site,
    parse_site,
)
from medspace.sources._site import fields_read

# Every source column (or JSON path) that the seven per-system specs this site replaces read
# (git show 3bdb67b:src/medspace/sources/data/specs/).
OLD_SOURCES = {
    "his.patients": ["BRID", "XM", "XB", "CSRQ", "SFZH", "LXDH", "JTDZ", "ZYH", "JDRQ"],
    "his.registrations": [
        "GHXH",
        "BRID",
        "XM",
        "GHLB",
        "JZLX",
        "KSDM",
        "KSMC",
        "YSXM",
        "GHRQ",
        "GHSJ",
        "GHF",
        "ZT",
        "THSJ",
        "ZDDM",
        "ZDMC",
    ],
    "his.admissions": [
        "JZLSH",
        "ZYH",
        "ZYCS",
        "BRID",
        "XM",
        "RYKS",
        "CYKS",
        "RYRQ",
        "CYRQ",
        "ZT",
        "ZHBZ",
        "CYFS",
        "ZYTS",
        "ZFY",
    ],
    "his.transfers": ["ZKXH", "ZYH", "ZYCS", "ZCKS", "ZRKS", "ZKSJ"],
    "his.orders": ["YZXH", "ZYH", "ZYCS", "YZLB", "YZLX", "YZNR", "YPBM", "KSSJ", "TZSJ"],
    "his.prescriptions": ["CFH", "GHXH", "BRID", "YPBM", "YPMC", "GG", "SL", "DJ", "JE", "KFSJ"],
    "his.bills": ["SFXH", "JZLSH", "BRID", "MZZY", "FYLB", "JE", "SFSJ"],
    "lis.requests": [
        "RequestNo",
        "PatientNo",
        "PatientName",
        "Sex",
        "Age",
        "PatientType",
        "VisitSerial",
        "InpatientNo",
        "DeptName",
        "ClinicalDiagnosis",
        "OrderTime",
        "Doctor",
    ],
    "lis.specimens": ["BarCode", "RequestNo", "SpecimenType", "TubeType", "CollectTime", "ReceiveTime"],
    "lis.results": [
        "BarCode",
        "RequestNo",
        "ItemCode",
        "ItemName",
        "Result",
        "Unit",
        "RefRange",
        "Flag",
        "ReportTime",
        "Reviewer",
        "ReviewTime",
        "LabSite",
    ],
    "emr.front_sheets": [
        "A48",
        "A49",
        "A11",
        "A12C",
        "A13",
        "A20",
        "A26",
        "A47",
        "A46C",
        "B11C",
        "B12",
        "B13C",
        "B15",
        "B16C",
        "B20",
        "B34C",
        "B38",
        "C03C",
        "C04N",
        "C09C",
        "C12C",
        "C06x01C",
        "C07x01N",
        "C06x02C",
        "C07x02N",
        "C06x03C",
        "C07x03N",
        "C14x01C",
        "C15x01N",
        "C16x01",
        "C17x01",
        "C18x01",
        "C14x02C",
        "C15x02N",
        "C16x02",
        "C17x02",
        "C18x02",
        "C14x03C",
        "C15x03N",
        "C16x03",
        "C17x03",
        "C18x03",
        "C14x04C",
        "C15x04N",
        "C16x04",
        "C17x04",
        "C18x04",
        "C14x05C",
        "C15x05N",
        "C16x05",
        "C17x05",
        "C18x05",
        "D01",
        "D09",
        "D11",
        "D12",
        "D13",
        "D14",
        "D15",
        "D16",
        "D17",
    ],
    "emr.notes": [
        "id",
        "subject.identifier.value",
        "context.encounter[0].identifier.value",
        "type.coding[0].code",
        "type.coding[0].display",
        "content[0].attachment.title",
        "date",
        "author[0].display",
        "content[0].attachment.text",
    ],
    "ris.exams": [
        "检查号",
        "申请单号",
        "就诊流水号",
        "患者姓名",
        "性别",
        "年龄",
        "检查项目",
        "检查类别",
        "申请科室",
        "申请时间",
        "检查时间",
        "报告时间",
        "客观所见",
        "主观提示",
        "报告医生",
        "审核医生",
    ],
    "pacs.studies": [
        '"0020000D".Value[0]',
        '"00080050".Value[0]',
        '"00100020".Value[0]',
        '"00100010".Value[0].Alphabetic',
        '"00100030".Value[0]',
        '"00100040".Value[0]',
        '"00080020".Value[0]',
        '"00080030".Value[0]',
        '"00080060".Value[0]',
        '"00081030".Value[0]',
        '"00080080".Value[0]',
        '"00201208".Value[0]',
    ],
    "surgery.operations": [
        "OPER_NO",
        "SS_PATIENT_ID",
        "INP_NO",
        "VISIT_ID",
        "PATIENT_NAME",
        "SEX",
        "DEPT_CODE",
        "THEATRE",
        "SESSION_NO",
        "SEQ_IN_SESSION",
        "OPER_CODE",
        "OPER_NAME",
        "OPER_GRADE",
        "MINIMALLY_INVASIVE",
        "INTERVENTIONAL",
        "DAY_SURGERY",
        "URGENCY",
        "ANES_METHOD",
        "ANES_START",
        "OPER_START",
        "OPER_END",
        "ANES_END",
        "OUT_ROOM_TIME",
        "BLOOD_LOSS_ML",
        "TRANSFUSION_ML",
        "DESTINATION",
        "SURGEON",
    ],
    "insurance.settlements": [
        "清单流水号",
        "参保人员编号",
        "姓名",
        "性别",
        "出生日期",
        "险种类型",
        "住院号",
        "入院日期",
        "出院日期",
        "主要诊断编码",
        "主要诊断名称",
        "主要手术编码",
        "医疗总费用",
        "统筹基金支付",
        "个人自付",
        "结算日期",
    ],
}

#: Fields staged but read by no map, with why: the patient index holds the name.
NOT_CARRIED = {"his.registrations": {"name"}, "his.admissions": {"name"}}

MINIMAL = """\
site: demo
model: 1
patient_index: clinic
precedence: [clinic]
code_systems:
  local_dx: {description: the clinic's diagnosis codes}
systems:
  clinic:
    tables:
      people:
        files: clinic/people.csv
        format: {kind: csv, encoding: utf-8}
        key: [person_no]
        fields:
          - {name: person_no, source: ID}
          - {name: born, source: DOB, type: date, formats: ["%Y%m%d"]}
          - {name: "dx_{i}", source: "DX{i}", repeat: {i: [1, 2]}}
maps:
  - to: patient
    from: clinic.people
    columns:
      record_key: person_no
      patient_key: person_no
      birth_date: born
  - to: diagnosis
    from: clinic.people
    unpivot: {i: [1, 2]}
    skip_if_null: "dx_{i}"
    columns:
      record_key: "person_no || ':{i}'"
      code: "dx_{i}"
      code_system: "'local_dx'"
"""


def test_the_shipped_site_loads_with_the_expected_raw_tables() -> None:
    site = load_site(DEFAULT_SITE)
    tables = {f"{system}.{t.name}" for system, t in site.raw_tables()}
    assert tables == set(OLD_SOURCES)
    assert site.patient_index == "his" and site.identifiers.inpatient_no == "per_patient"
    assert set(site.precedence) == set(site.systems)


def test_the_shipped_site_reads_every_column_the_old_specs_staged() -> None:
    site = load_site(DEFAULT_SITE)
    read = fields_read(site)
    for reference, sources in OLD_SOURCES.items():
        table = site.raw_table(reference)
        by_source = {s: c.name for c in table.columns for s in c.sources}
        assert set(sources) <= set(by_source), reference
        unread = {by_source[s] for s in sources} - read.get(reference, set())
        assert unread == NOT_CARRIED.get(reference, set()), reference


def test_repeat_expands_fields_and_formats_are_a_discriminated_union() -> None:
    site = load_site(DEFAULT_SITE)
    front = site.raw_table("emr.front_sheets")
    assert front.column("procedure_code_5").source == "C14x05C"
    assert front.column("cost_d17").source == "D17"
    assert isinstance(site.raw_table("ris.exams").format, CsvFormat)
    assert site.raw_table("ris.exams").format.encoding == "gb18030"  # type: ignore[union-attr]
    assert isinstance(site.raw_table("pacs.studies").format, NdjsonFormat)
    assert isinstance(site.raw_table("insurance.settlements").format, XlsxFormat)
    [lookup, _] = next(m for m in site.maps if m.to == "lab_result").lookups
    assert lookup.on == {"barcode": "barcode"}  # `on:` is a key, not YAML 1.1's boolean


def test_sites_are_frozen() -> None:
    site = parse_site(MINIMAL, "demo.yaml")
    with pytest.raises(ValueError):
        site.site = "other"  # type: ignore[misc]


def test_a_site_file_loads_by_path(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    site = load_site(path)
    assert [c.name for c in site.raw_table("clinic.people").columns] == ["person_no", "born", "dx_1", "dx_2"]
    assert load_site(str(path)) == site


@pytest.mark.parametrize(
    ("old", "new", "words", "line_of"),
    [
        ("key: [person_no]", "key: [person_number]", "key 'person_number'", "people:"),
        ("type: date", "type: dat", "fields.1.type", "name: born"),
        ("source: ID}", "source: ID, colour: red}", "colour", "colour"),
        ("kind: csv", "kind: tsv", "format", "kind: tsv"),
        (', formats: ["%Y%m%d"]', "", "needs `formats`", "name: born"),
        ('formats: ["%Y%m%d"]', 'formats: ["%Y%m%d %Z"]', "unsupported directives %Z", "name: born"),
        ("encoding: utf-8", "encoding: utf-9", "unknown encoding", "utf-9"),
        ("repeat: {i: [1, 2]}", "repeat: {i: [2, 1]}", "repeat takes one variable", "repeat"),
        ("code_system: \"'local_dx'\"", "code_system: \"'icd-11'\"", "'icd-11' is not declared", "icd-11"),
        ("birth_date: born", "birth_date: borne", "'borne' is not a field", "borne"),
        ("birth_date: born", "birth_dt: born", "'birth_dt' is not a column", "birth_dt"),
        ("from: clinic.people", "from: clinic.persons", "not a raw table", "clinic.persons"),
        ("to: patient", "to: patients", "not a table of the hospital model", "to: patients"),
        ("      record_key: person_no\n", "", "requires patient.record_key", "    columns:"),
        ("patient_key: person_no", "patient_key: (SELECT 1)", "may not hold a query", "(SELECT 1)"),
        (
            "patient_key: person_no",
            'patient_key: "person_no ||"',
            "not a valid SQL expression",
            "person_no ||",
        ),
        ("patient_index: clinic", "patient_index: lab", "not one of the site's systems", "patient_index"),
        ("model: 1", "model: 2", "model version 2", "model: 2"),
        (
            'skip_if_null: "dx_{i}"',
            'skip_if_null: "dx_{i}"\n    where: "dx_{i} <> \'X\'"',
            "`where` and `excluded_because` go together",
            "to: diagnosis",
        ),
    ],
)
def test_a_mistake_fails_at_load_naming_file_line_and_field(
    tmp_path: Path, old: str, new: str, words: str, line_of: str
) -> None:
    assert old in MINIMAL
    text = MINIMAL.replace(old, new, 1)
    path = tmp_path / "typo.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_site(path)
    line = next(i for i, t in enumerate(text.splitlines(), start=1) if line_of in t)
    error = caught.value
    assert error.file == str(path) and str(path) in str(error)
    assert words in str(error)
    assert error.row == line, str(error)
    assert f"line {line}" in str(error)
    assert error.field


def test_a_bad_json_path_fails_at_load() -> None:
    text = MINIMAL.replace("kind: csv, encoding: utf-8", "kind: ndjson").replace(
        "source: ID}", "source: 'a..b'}"
    )
    with pytest.raises(SpecError, match="a name is missing") as caught:
        parse_site(text, "demo.yaml")
    assert caught.value.row == 15


def test_malformed_yaml_and_repeated_keys_name_the_file_and_line() -> None:
    with pytest.raises(SpecError) as caught:
        parse_site("site: [unclosed\nmodel: 1\n", "broken.yaml")
    assert caught.value.file == "broken.yaml" and caught.value.row is not None
    with pytest.raises(SpecError, match="appears twice") as twice:
        parse_site(MINIMAL.replace("model: 1\n", "model: 1\nmodel: 1\n"), "twice.yaml")
    assert twice.value.row == 3


def test_an_unknown_site_name_lists_the_shipped_ones() -> None:
    with pytest.raises(SpecError, match="synthetic-hospital"):
        load_site("no-such-hospital")
