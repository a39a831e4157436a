"""Column roles: which columns of a table identify a patient, directly or in combination, and which do not.

De-identification starts by sorting every column (GB/T 37964-2019's "identify" step): a **direct identifier**
names one person on its own (a name, a resident ID, a phone number, a hospital number); a
**quasi-identifier** does so only in combination with others (birth date, sex, region, age); a **sensitive**
attribute is what a release must not reveal about a person (the diagnosis); everything else is
**insensitive**. Each column also gets an `IdentifierKind`, finer than the role, which decides the treatment a
de-identification profile gives it.

`propose_roles` proposes both from two kinds of evidence. The column's name is matched against OMOP CDM v5.4
field names, the canonical names of medspace's staged tables, the pinyin initials Chinese hospital systems
use (XM 姓名, SFZH 身份证号) and Chinese column names. A sample of the values is checked against value rules
(a valid GB 11643 resident ID, a mainland mobile number, a Chinese personal name, an address). Strong value
evidence wins over the name, because a column called ``remark`` full of resident IDs is a direct identifier
whatever it is called. Proposals are only proposals: a de-identification profile confirms or overrides them.

Reasons and evidence hold counts and shares only, never a value from the table.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medspace.core import InputError, check_resident_id, region_codes
from medspace.privacy._address import STREET_MARKERS, address_units, clean_address
from medspace.privacy._text_lexicon import lexicon

__all__ = [
    "HIPAA_IDENTIFIERS",
    "KIND_ROLES",
    "ColumnRole",
    "IdentifierKind",
    "RoleProposal",
    "propose_roles",
]


class ColumnRole(StrEnum):
    """What a column is to re-identification (GB/T 37964-2019's categories, as ARX names them)."""

    #: Identifies a person on its own; removed or pseudonymised before anything else.
    DIRECT_IDENTIFIER = "direct_identifier"
    #: Identifies a person in combination with other columns; generalised until the privacy models hold.
    QUASI_IDENTIFIER = "quasi_identifier"
    #: What must not be learnt about a person; l-diversity and t-closeness protect it.
    SENSITIVE = "sensitive"
    #: Neither; kept as it is.
    INSENSITIVE = "insensitive"


class IdentifierKind(StrEnum):
    """What a column holds, at the grain a de-identification profile assigns treatments to.

    The direct-identifier kinds follow HIPAA Safe Harbor's 18 identifiers (45 CFR 164.514(b)(2)(i)) with the
    Chinese equivalents; see `HIPAA_IDENTIFIERS` for the mapping.
    """

    # --- direct identifiers -----------------------------------------------------------------------------
    #: The product's person key: OMOP ``person_id``/``person_source_value``, the link stage's person id.
    #: Keeps the rows of one person together, so it is pseudonymised rather than removed.
    PERSON_KEY = "person_key"
    #: A patient's name, or a relative's, employer's or contact's (HIPAA (A)).
    NAME = "name"
    #: A clinician's or staff member's name (doctor, surgeon, reporter). Not a patient identifier under
    #: HIPAA, but it identifies a person and, in a small department, narrows down the patient.
    STAFF_NAME = "staff_name"
    #: Resident identity number, GB 11643 (also the social security number; HIPAA (G)).
    RESIDENT_ID = "resident_id"
    #: Telephone or fax number (HIPAA (D), (E)).
    PHONE = "phone"
    #: E-mail address (HIPAA (F)).
    EMAIL = "email"
    #: A number the hospital gives a patient: 住院号, 门诊号, 病案号, a system's patient ID (HIPAA (H)).
    HOSPITAL_NUMBER = "hospital_number"
    #: Medical insurance number, 医保卡号 / 参保人员编号 (HIPAA (I)).
    INSURANCE_NUMBER = "insurance_number"
    #: Settlement, bill or invoice number (HIPAA (J)).
    ACCOUNT_NUMBER = "account_number"
    #: Number of an event record a source system assigned (visit serial, lab request, accession number,
    #: OMOP ``*_occurrence_id``): looked up in that system, it leads to the patient (HIPAA (R)).
    RECORD_KEY = "record_key"
    #: Certificate or licence number: passport, driving licence, a clinician's licence (HIPAA (K)).
    CERTIFICATE_NUMBER = "certificate_number"
    #: Vehicle identifier or licence plate (HIPAA (L)).
    VEHICLE_ID = "vehicle_id"
    #: Device identifier or serial number, e.g. OMOP ``unique_device_id`` (HIPAA (M)).
    DEVICE_ID = "device_id"
    #: Web address (HIPAA (N)).
    URL = "url"
    #: IP address (HIPAA (O)).
    IP_ADDRESS = "ip_address"
    #: Biometric identifier: fingerprint, voiceprint, iris (HIPAA (P)).
    BIOMETRIC = "biometric"
    #: Full-face photograph (HIPAA (Q)).
    PHOTO = "photo"
    #: Street address, or any address text below province level (HIPAA (B)).
    ADDRESS = "address"
    #: Latitude and longitude (HIPAA (B)).
    GEO_COORDINATES = "geo_coordinates"
    #: Any other unique code: a column of distinct code-like values nothing else explains (HIPAA (R)).
    OTHER_UNIQUE_CODE = "other_unique_code"
    #: Free text (notes, findings, remarks) that may mention any identifier; scrubbed by the text scrubber.
    FREE_TEXT = "free_text"
    # --- quasi-identifiers ------------------------------------------------------------------------------
    #: Full birth date or datetime.
    BIRTH_DATE = "birth_date"
    #: Year of birth alone (OMOP ``year_of_birth``); implies an age, so HIPAA groups those over 89.
    BIRTH_YEAR = "birth_year"
    #: Month or day of birth held apart from the year (OMOP ``month_of_birth``, ``day_of_birth``).
    BIRTH_DATE_PART = "birth_date_part"
    #: Any other date or datetime of an event: admission, discharge, operation, death (HIPAA (C)).
    DATE = "date"
    #: Age in whole years (HIPAA (C): ages over 89).
    AGE = "age"
    #: Sex or gender (GB/T 2261.1).
    SEX = "sex"
    #: Administrative region (GB/T 2260 code, or province, city or county name).
    REGION = "region"
    #: Postcode (HIPAA (B): ZIP code).
    POSTCODE = "postcode"
    #: Ethnicity or nationality (GB/T 3304 民族, OMOP race and ethnicity).
    ETHNICITY = "ethnicity"
    #: Occupation (GB/T 6565).
    OCCUPATION = "occupation"
    #: Marital status (GB/T 2261.2).
    MARITAL_STATUS = "marital_status"
    # --- sensitive and insensitive ----------------------------------------------------------------------
    #: Diagnosis code or name: the health status GB/T 39725-2020 protects.
    DIAGNOSIS = "diagnosis"
    #: Other clinical facts: procedures, drugs, lab tests and results.
    CLINICAL = "clinical"
    #: Nothing identifying found.
    OTHER = "other"


_K = IdentifierKind
_R = ColumnRole

#: The role a column of each kind has unless a profile says otherwise.
KIND_ROLES: dict[IdentifierKind, ColumnRole] = {
    **{
        kind: _R.DIRECT_IDENTIFIER
        for kind in (
            _K.PERSON_KEY, _K.NAME, _K.STAFF_NAME, _K.RESIDENT_ID, _K.PHONE, _K.EMAIL, _K.HOSPITAL_NUMBER,
            _K.INSURANCE_NUMBER, _K.ACCOUNT_NUMBER, _K.RECORD_KEY, _K.CERTIFICATE_NUMBER, _K.VEHICLE_ID,
            _K.DEVICE_ID, _K.URL, _K.IP_ADDRESS, _K.BIOMETRIC, _K.PHOTO, _K.ADDRESS, _K.GEO_COORDINATES,
            _K.OTHER_UNIQUE_CODE, _K.FREE_TEXT,
        )
    },
    **{
        kind: _R.QUASI_IDENTIFIER
        for kind in (
            _K.BIRTH_DATE, _K.BIRTH_YEAR, _K.BIRTH_DATE_PART, _K.DATE, _K.AGE, _K.SEX, _K.REGION,
            _K.POSTCODE, _K.ETHNICITY, _K.OCCUPATION, _K.MARITAL_STATUS,
        )
    },
    _K.DIAGNOSIS: _R.SENSITIVE,
    _K.CLINICAL: _R.INSENSITIVE,
    _K.OTHER: _R.INSENSITIVE,
}  # fmt: skip

#: HIPAA Safe Harbor's 18 identifiers (45 CFR 164.514(b)(2)(i)(A)-(R)) and the kinds that hold each.
HIPAA_IDENTIFIERS: dict[str, tuple[IdentifierKind, ...]] = {
    "(A) names": (_K.NAME,),
    "(B) geographic subdivisions smaller than a state": (
        _K.ADDRESS, _K.REGION, _K.POSTCODE, _K.GEO_COORDINATES,
    ),
    "(C) all elements of dates except the year; ages over 89": (
        _K.BIRTH_DATE, _K.BIRTH_DATE_PART, _K.BIRTH_YEAR, _K.DATE, _K.AGE,
    ),
    "(D) telephone numbers": (_K.PHONE,),
    "(E) fax numbers": (_K.PHONE,),
    "(F) email addresses": (_K.EMAIL,),
    "(G) social security numbers": (_K.RESIDENT_ID,),
    "(H) medical record numbers": (_K.HOSPITAL_NUMBER,),
    "(I) health plan beneficiary numbers": (_K.INSURANCE_NUMBER,),
    "(J) account numbers": (_K.ACCOUNT_NUMBER,),
    "(K) certificate/license numbers": (_K.CERTIFICATE_NUMBER,),
    "(L) vehicle identifiers and serial numbers": (_K.VEHICLE_ID,),
    "(M) device identifiers and serial numbers": (_K.DEVICE_ID,),
    "(N) web URLs": (_K.URL,),
    "(O) IP addresses": (_K.IP_ADDRESS,),
    "(P) biometric identifiers": (_K.BIOMETRIC,),
    "(Q) full-face photographs": (_K.PHOTO,),
    "(R) any other unique identifying number, characteristic or code": (
        _K.PERSON_KEY, _K.RECORD_KEY, _K.OTHER_UNIQUE_CODE,
    ),
}  # fmt: skip


Basis = Literal["name", "values", "name_and_values", "type", "default", "derived"]


@dataclass(frozen=True)
class RoleProposal:
    """A proposed role and kind for one column, with why.

    Attributes:
        table: The table's name, if known.
        column: The column's name.
        role: The proposed role.
        kind: The proposed kind.
        basis: What decided it: the column ``name``, the ``values``, both agreeing (``name_and_values``), the
            column's ``type`` (a date column), nothing (``default``), or ``derived`` for a column the
            direct-identifier step made (facts derived from a resident ID).
        reason: One sentence for the de-identification report; names and counts, never values.
        matched: Share of the sampled non-null values that met the kind's value rule; None when the kind
            has no value rule or nothing was sampled.
        sampled: How many non-null values were sampled.

    Example:
        >>> p = propose_roles(pa.table({"XM": ["张伟", "李娜"]}), table_name="patients")[0]
        >>> print(p.role, p.kind, p.basis, p.matched)
        direct_identifier name name_and_values 1.0
    """

    table: str | None
    column: str
    role: ColumnRole
    kind: IdentifierKind
    basis: Basis
    reason: str
    matched: float | None = None
    sampled: int = 0

    @property
    def qualified_name(self) -> str:
        """``table.column``, or the column alone when the table is not known."""
        return f"{self.table}.{self.column}" if self.table else self.column


# --- evidence from column names -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _NameRule:
    """Column names that indicate a kind: whole names, snake_case words, endings, or Chinese substrings."""

    kind: IdentifierKind
    source: str  # where the names come from, for the reason text
    names: frozenset[str] = frozenset()
    words: frozenset[str] = frozenset()
    endings: tuple[str, ...] = ()
    cjk: tuple[str, ...] = ()
    tables: frozenset[str] | None = None

    def matches(self, table: str | None, name: str, words: frozenset[str]) -> bool:
        if self.tables is not None and table not in self.tables:
            return False
        return (
            name in self.names
            or bool(self.words & words)
            or name.endswith(self.endings)
            or any(part in name for part in self.cjk)
        )


def _rule(
    kind: IdentifierKind,
    source: str,
    names: str = "",
    *,
    words: str = "",
    endings: str = "",
    cjk: str = "",
    tables: str | None = None,
) -> _NameRule:
    """A name rule from space-separated lists (keeps the table below readable)."""
    return _NameRule(
        kind,
        source,
        frozenset(names.split()),
        frozenset(words.split()),
        tuple(endings.split()),
        tuple(cjk.split()),
        frozenset(tables.split()) if tables is not None else None,
    )


_OMOP = "OMOP CDM v5.4 field names"
_STAGED = "staged-source and export column names"

# OMOP CDM v5.4 tables that hold vocabularies and metadata, not patients: every column is insensitive.
_OMOP_REFERENCE_TABLES = frozenset(
    {
        "concept", "vocabulary", "domain", "concept_class", "concept_relationship", "relationship",
        "concept_synonym", "concept_ancestor", "source_to_concept_map", "drug_strength", "cdm_source",
        "metadata", "cohort_definition",
    }
)  # fmt: skip

# Order matters: the first rule that matches decides, so specific names come before general words and the
# generic record-key endings (``_id``, ``_no``) come after every named kind. Names are compared lower-cased,
# with spaces, hyphens and dots turned into underscores. Pinyin initials are those of the staged HIS export
# (sources/data/specs/his.yaml: XM, SFZH, LXDH, JTDZ, ZYH, CSRQ, XB, BRID) and their common variants.
_NAME_RULES: tuple[_NameRule, ...] = (
    # OMOP tables whose columns mean something else than the same name elsewhere.
    _rule(_K.ADDRESS, _OMOP, "address_1 address_2 city county state location_source_value",
          tables="location"),
    _rule(_K.POSTCODE, _OMOP, "zip", tables="location"),
    _rule(_K.GEO_COORDINATES, _OMOP, "latitude longitude", tables="location"),
    _rule(_K.STAFF_NAME, _OMOP, "provider_name provider_source_value", tables="provider"),
    _rule(_K.CERTIFICATE_NUMBER, _OMOP, "npi dea", tables="provider"),
    # A provider's year of birth and gender describe the clinician, not a patient.
    _rule(_K.OTHER, _OMOP, "year_of_birth gender_concept_id gender_source_value gender_source_concept_id",
          tables="provider"),
    _rule(_K.OTHER, _OMOP, "care_site_name care_site_source_value place_of_service_source_value",
          tables="care_site"),
    # medspace's lineage columns on every staged table (sources stage): file, row and system of origin.
    _rule(_K.OTHER, "medspace lineage column names",
          "_source_system _source_file _source_row source_file source_row"),
    # OMOP keys, concepts and source values.
    _rule(_K.PERSON_KEY, _OMOP, "person_id person_source_value subject_id"),
    _rule(_K.OTHER, _OMOP, "provider_id care_site_id measurement_time"),
    _rule(_K.REGION, _OMOP, "location_id"),
    _rule(_K.SEX, _OMOP, "gender_concept_id gender_source_concept_id gender_source_value"),
    _rule(_K.ETHNICITY, _OMOP,
          "race_concept_id race_source_concept_id race_source_value ethnicity_concept_id "
          "ethnicity_source_concept_id ethnicity_source_value"),
    _rule(_K.DIAGNOSIS, _OMOP,
          "condition_concept_id condition_source_concept_id condition_source_value cause_concept_id "
          "cause_source_concept_id cause_source_value"),
    _rule(_K.RECORD_KEY, _OMOP, "visit_source_value specimen_source_id"),
    _rule(_K.STAFF_NAME, _OMOP, "provider_source_value"),
    _rule(_K.ADDRESS, _OMOP, "location_source_value"),
    _rule(_K.CLINICAL, _OMOP,
          "drug_source_value procedure_source_value measurement_source_value observation_source_value "
          "device_source_value specimen_source_value value_source_value value_as_string value_as_number "
          "range_low range_high quantity days_supply refills sig stop_reason"),
    # OMOP domain names (cost_domain_id holds "Visit", "Drug", ...), not keys.
    _rule(_K.OTHER, _OMOP, "cost_domain_id domain_id"),
    _rule(_K.OTHER, _OMOP, endings="_concept_id _source_value"),
    # Direct identifiers, most specific first.
    _rule(_K.RESIDENT_ID, _STAGED,
          "resident_id resident_id_number id_card idcard id_card_no id_no id_number identity_no "
          "identity_number citizen_id national_id ssn social_security_number sfzh sfzhm zjhm",
          cjk="身份证 证件号 公民身份号码 社会保障号"),
    _rule(_K.INSURANCE_NUMBER, _STAGED,
          "insured_id insurance_no insurance_number insurance_id health_plan_id member_id beneficiary_id "
          "medical_insurance_no ybkh ybh",
          cjk="医保卡号 医保号 医保编号 参保人员编号 参保号 社保卡号 个人编号"),
    _rule(_K.ACCOUNT_NUMBER, _STAGED,
          "settlement_id settlement_no bill_id bill_no account_no account_number account_id invoice_no "
          "invoice_number receipt_no",
          words="invoice", cjk="清单流水号 结算流水号 结算号 结算编号 发票号 收据号 账号 帐号"),
    # Vehicles before certificates: a licence plate is not a licence.
    _rule(_K.VEHICLE_ID, _STAGED, words="plate vehicle vin", cjk="车牌 车架号"),
    _rule(_K.CERTIFICATE_NUMBER, _STAGED, "licence_no license_no",
          words="passport licence license certificate",
          cjk="护照 驾驶证 执业证 资格证 军官证 许可证"),
    _rule(_K.DEVICE_ID, _STAGED, "unique_device_id device_serial serial_number device_id",
          words="udi imei", cjk="设备序列号 设备编号"),
    _rule(_K.URL, _STAGED, words="url uri website homepage", cjk="网址 链接 主页"),
    _rule(_K.IP_ADDRESS, _STAGED, "ip ip_address ip_addr ipaddress client_ip", words="ip", cjk="ip地址"),
    _rule(_K.EMAIL, _STAGED, "e_mail", words="email mail", cjk="邮箱 电子邮件"),
    _rule(_K.PHONE, _STAGED, "lxdh sjhm sjh dh lxfs",
          words="phone telephone tel mobile cellphone fax", cjk="电话 手机 传真 联系方式"),
    _rule(_K.BIOMETRIC, _STAGED, words="fingerprint voiceprint iris retina biometric palmprint",
          cjk="指纹 声纹 虹膜 掌纹 视网膜 生物特征"),
    _rule(_K.PHOTO, _STAGED, words="photo portrait face headshot avatar", cjk="照片 头像 人脸 相片"),
    # Staff before patients: "doctor_name" names a doctor, and 医生姓名 contains 姓名.
    _rule(_K.STAFF_NAME, _STAGED, "ysxm hsxm",
          words="doctor physician surgeon nurse reporter reviewer author operator anaesthetist "
          "anesthetist clinician pharmacist verifier recorder",
          cjk="医生 医师 护士 大夫 操作员 审核人 报告人 记录人 主刀 术者 麻醉师 药师 开单"),
    _rule(_K.NAME, _STAGED,
          "name xm hzxm brxm patient_name full_name first_name last_name given_name family_name "
          "surname contact_name contact_person guardian guardian_name spouse_name relative_name "
          "emergency_contact employer employer_name work_unit",
          cjk="姓名 患者名 病人名 联系人 监护人 配偶 工作单位 单位名称 家属"),
    _rule(_K.HOSPITAL_NUMBER, _STAGED,
          "patient_id patient_no patientid patientno brid bah zyh mzh blh jzkh mrn medical_record_no "
          "medical_record_number inpatient_no outpatient_no inpatient_number outpatient_number card_no "
          "visit_card_no empi empi_id",
          words="mrn empi", endings="_patient_id _patient_no",
          cjk="住院号 门诊号 病案号 病历号 患者编号 病人编号 患者id 病人id 登记号 就诊卡号 诊疗卡号 "
          "健康卡号 档案号 患者主索引"),
    # Geography.
    _rule(_K.GEO_COORDINATES, _STAGED, words="latitude longitude lat lng lon gps coordinates",
          cjk="经度 纬度 坐标"),
    _rule(_K.POSTCODE, _STAGED, "zip zipcode zip_code postcode post_code postal_code yzbm",
          cjk="邮编 邮政编码"),
    _rule(_K.ADDRESS, _STAGED, "addr jtdz xzz hkdz",
          words="address street residence domicile", cjk="地址 住址 户籍 居住地 现住 门牌"),
    _rule(_K.REGION, _STAGED,
          "region region_code province city county district area_code division_code xzqh birthplace "
          "native_place 省 市 县 区",
          words="province city county district region", cjk="省份 城市 区县 县区 籍贯 出生地 行政区划"),
    # Birth, age and the other quasi-identifiers.
    _rule(_K.BIRTH_YEAR, _STAGED, "year_of_birth birth_year yob", cjk="出生年份"),
    _rule(_K.BIRTH_DATE_PART, _STAGED, "month_of_birth day_of_birth birth_month", cjk="出生月份"),
    _rule(_K.BIRTH_DATE, _STAGED,
          "birth_date birthdate birthday date_of_birth dob birth_datetime birth_time csrq",
          cjk="出生日期 出生时间 生日 出生年月"),
    # Ages in years only: an age in months or days belongs to an infant and must not be top-coded at 89.
    _rule(_K.AGE, _STAGED, "age age_years age_in_years nl", cjk="年龄"),
    _rule(_K.SEX, _STAGED, "sex gender xb", words="sex gender", cjk="性别"),
    _rule(_K.ETHNICITY, _STAGED, "ethnicity ethnic_group race nation nationality mz",
          words="ethnicity ethnic race nationality", cjk="民族 国籍"),
    _rule(_K.OCCUPATION, _STAGED, "occupation job profession", words="occupation profession",
          cjk="职业 工种"),
    _rule(_K.MARITAL_STATUS, _STAGED, "hyzk", words="marital marriage", cjk="婚姻"),
    # Clinical content before free text ("value_text" is a lab result, not a note).
    _rule(_K.DIAGNOSIS, _STAGED, "pathology_code external_cause_code",
          words="diagnosis diagnoses diag icd", cjk="诊断 疾病"),
    _rule(_K.FREE_TEXT, _STAGED,
          "note_text text content findings impression remark remarks comment comments memo notes "
          "narrative description note_title title",
          words="remark remarks comment comments memo narrative findings impression",
          cjk="备注 说明 记录 病程 主诉 现病史 既往史 所见 提示 意见 描述 小结 诊疗经过 内容"),
    _rule(_K.OTHER_UNIQUE_CODE, _STAGED, "uuid guid unique_id unique_code", cjk="唯一标识 唯一码"),
    # Dates come after birth dates, and before the generic key endings ("procedure_date_1").
    _rule(_K.DATE, _STAGED, "date datetime time",
          words="date datetime", endings="_date _datetime _time _at _dt", cjk="日期 时间 时刻"),
    _rule(_K.RECORD_KEY, _STAGED,
          "visit_serial request_no barcode accession_no study_uid record_key ghxh jzlsh cfh yzxh sfxh zkxh",
          words="barcode accession uid serial", endings="_id _no _uid _serial _number _barcode _ref _key",
          cjk="流水号 申请单号 检查号 条码 单号 编号 序号"),
    _rule(_K.CLINICAL, _STAGED,
          "value value_text result unit reference_range flag",
          words="procedure drug measurement observation specimen item exam modality operation anaesthesia "
          "anesthesia dose prescription"),
)  # fmt: skip


def _normalise(name: str) -> str:
    # Spaces, hyphens and dots separate words in export headers as underscores do in snake_case (no standard).
    return re.sub(r"[\s\-.]+", "_", name.strip().lower())


def _name_kind(table: str | None, column: str) -> tuple[IdentifierKind, str] | None:
    if table is not None and table.lower() in _OMOP_REFERENCE_TABLES:
        return _K.OTHER, f"{table} is an OMOP vocabulary or metadata table"
    name = _normalise(column)
    words = frozenset(name.split("_"))
    qualified = table.lower() if table is not None else None
    for rule in _NAME_RULES:
        if rule.matches(qualified, name, words):
            return rule.kind, f"its name is among the {rule.source} for {rule.kind}"
    return None


# --- evidence from values -----------------------------------------------------------------------------------

# Mainland mobile numbers: 11 digits starting 13-19, optionally after the country code 86 (ITU-T E.164; the
# MIIT numbering plan 电信网编号计划 allocates 13x-19x to mobile networks).
_MOBILE = r"(?:\+?86[\s-]?)?1[3-9]\d{9}"
# Fixed lines (same numbering plan): trunk prefix 0, an area code (10 for Beijing, 2x for the other large
# cities, 3-9xx elsewhere), then a 7-8 digit local number, which never starts with 0 or 1.
_LANDLINE = r"0(?:10|2\d|[3-9]\d{2})[\s-]?[2-8]\d{6,7}"
_PHONE = re.compile(rf"(?:{_MOBILE}|{_LANDLINE})")
_PHONE_IN_TEXT = re.compile(rf"(?<![0-9])(?:{_MOBILE})(?![0-9])")
# Resident ID candidates inside text (GB 11643-1999: 17 digits, then a digit or X); each is then checked.
_RESIDENT_ID_IN_TEXT = re.compile(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])")
# E-mail addresses, the dot-atom form of RFC 5322 section 3.4.1, simplified.
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
# Web addresses with a scheme or a www. host (RFC 3986 section 3).
_URL = re.compile(r"(?:https?|ftp)://\S+|www\.[A-Za-z0-9\-]+\.\S+", re.IGNORECASE)
# Dotted-quad IPv4 addresses (RFC 791), each part 0-255.
_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)")
# Chinese personal names: CJK Unified Ideographs (Unicode block U+4E00-U+9FFF), or two parts joined by
# the middle dot (间隔号, GB/T 15834-2011) that separates the parts of transliterated minority names
# (买买提·艾力).
_CJK_WORD = re.compile(r"[\u4e00-\u9fff]{2,4}")
_DOTTED_NAME = re.compile(r"[\u4e00-\u9fff]{1,8}[·•・][\u4e00-\u9fff]{1,8}")
# Sex as GB/T 2261.1 names it in Chinese, or as exports abbreviate it.
_SEX_VALUES = frozenset(
    {"男", "女", "男性", "女性", "未知", "未说明", "未知的性别", "未说明的性别", "m", "f", "male", "female"}
)
# A code: letters, digits and separators, 6-64 long. No standard fixes hospital numbers (住院号, 门诊号:
# 6-12 alphanumerics, no checksum) or system keys; this is their common shape.
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-_.]{5,63}")
# Prose: CJK Unified Ideographs (U+4E00-U+9FFF) or whitespace between words.
_PROSE = re.compile(r"[\u4e00-\u9fff]|\S\s+\S")

#: Share of sampled values that must meet a value rule before it decides the kind.
_SHARE = 0.5
#: Names are checked harder (a dictionary of surnames alone gives false hits on clinical words).
_NAME_SHARE = 0.8
#: Average length, in characters, from which a text column counts as free text.
_FREE_TEXT_LENGTH = 30


@functools.cache
def _region_prefixes() -> frozenset[str]:
    """County codes (GB/T 2260) and the prefecture (``NNNN00``) and province (``NN0000``) codes above them."""
    counties = region_codes()
    return counties | {c[:4] + "00" for c in counties} | {c[:2] + "0000" for c in counties}


def _is_resident_id(value: str) -> bool:
    return check_resident_id(value).valid


def _is_personal_name(value: str) -> bool:
    if _DOTTED_NAME.fullmatch(value):
        return True
    if not _CJK_WORD.fullmatch(value):
        return False
    lx = lexicon()
    if any(value.startswith(word) for word in lx.not_names if len(word) <= len(value)):
        return False
    if value[:2] in lx.compound_surnames:
        return 3 <= len(value) <= 4
    return value[0] in lx.surnames and len(value) <= 3


def _is_address(value: str) -> bool:
    units = address_units(value)
    found = sum(part is not None for part in (units.province, units.prefecture, units.county))
    rest = clean_address(value)[units.end :]  # end counts in the cleaned address
    return found >= 2 or (found == 1 and STREET_MARKERS.search(rest) is not None)


def _is_sex(value: str) -> bool:
    return value.lower() in _SEX_VALUES


def _is_region_code(value: str) -> bool:
    return value in _region_prefixes()


Strength = Literal["decisive", "strong", "medium", "weak"]


@dataclass(frozen=True)
class _ValueRule:
    kind: IdentifierKind
    test: Callable[[str], object]
    describe: str  # "valid GB 11643 resident IDs"
    # decisive: overrides any column name (a checksum, a birth date and a region code leave no doubt);
    # strong: overrides a name that does not already say "direct identifier" (a barcode column of 11-digit
    # numbers stays a record key even if its values look like phone numbers); medium: overrides only a vague
    # name (unknown, or free text such as remark), because a surname list alone mistakes clinical words
    # for names (阴性 starts with the surname 阴); weak: fills in for a name that says nothing.
    strength: Strength
    share: float = _SHARE
    integers: bool = False  # also applies to integer columns


_VALUE_RULES: tuple[_ValueRule, ...] = (
    _ValueRule(_K.RESIDENT_ID, _is_resident_id, "valid GB 11643 resident IDs", "decisive"),
    _ValueRule(_K.PHONE, _PHONE.fullmatch, "phone numbers", "strong", integers=True),
    _ValueRule(_K.EMAIL, _EMAIL.fullmatch, "e-mail addresses", "strong"),
    _ValueRule(_K.URL, _URL.fullmatch, "web addresses", "strong"),
    _ValueRule(_K.IP_ADDRESS, _IPV4.fullmatch, "IPv4 addresses", "strong"),
    _ValueRule(_K.NAME, _is_personal_name, "Chinese personal names", "medium", _NAME_SHARE),
    _ValueRule(_K.ADDRESS, _is_address, "Chinese addresses", "strong"),
    _ValueRule(_K.REGION, _is_region_code, "GB/T 2260 region codes", "weak", 0.9, integers=True),
    _ValueRule(_K.SEX, _is_sex, "sex codes", "weak", 0.95),
)

# Value evidence that agrees with a name-based kind: a doctor's column full of names is still staff names.
_COMPATIBLE: dict[IdentifierKind, frozenset[IdentifierKind]] = {
    _K.NAME: frozenset({_K.NAME, _K.STAFF_NAME}),
    _K.ADDRESS: frozenset({_K.ADDRESS, _K.REGION}),
    _K.FREE_TEXT: frozenset({_K.FREE_TEXT, _K.ADDRESS}),
}

# Kinds whose own value rule is reported as evidence when the name decided.
_RULE_OF_KIND = {rule.kind: rule for rule in _VALUE_RULES}


def _sample(values: pa.ChunkedArray, size: int) -> list[str]:
    """Up to ``size`` non-null, non-blank values as text, spread evenly over the column (deterministic)."""
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    if not (
        pa.types.is_string(values.type)
        or pa.types.is_large_string(values.type)
        or pa.types.is_integer(values.type)
    ):
        return []
    present = pc.drop_null(values)
    if len(present) > size:
        # Evenly spaced rather than random: proposals must not change between runs.
        present = present.take(pa.array(np.linspace(0, len(present) - 1, size).astype(np.int64)))
    text = [str(v).strip() for v in present.to_pylist()]
    return [v for v in text if v]


def _applies(rule: _ValueRule, values: pa.ChunkedArray) -> bool:
    return rule.integers or not pa.types.is_integer(values.type)


def _share(values: list[str], test: Callable[[str], object]) -> float:
    return sum(1 for v in values if test(v)) / len(values) if values else 0.0


def _embedded_identifiers(values: list[str]) -> float:
    """Share of values that contain a resident ID or a mobile number inside longer text."""

    def has(value: str) -> bool:
        if _PHONE.fullmatch(value) or len(value) <= 11:
            return False
        if _PHONE_IN_TEXT.search(value):
            return True
        return any(_is_resident_id(m.upper()) for m in _RESIDENT_ID_IN_TEXT.findall(value))

    return _share(values, has)


def _percent(share: float) -> str:
    # Floor, so that 99.9 % is never printed as 100 %.
    return f"{math.floor(share * 1000) / 10:g}%"


def _propose_column(
    table_name: str | None, column: str, values: pa.ChunkedArray, sample_size: int
) -> RoleProposal:
    by_name = _name_kind(table_name, column)
    sample = _sample(values, sample_size)
    n = len(sample)

    def proposal(kind: IdentifierKind, basis: Basis, reason: str, matched: float | None) -> RoleProposal:
        return RoleProposal(table_name, column, KIND_ROLES[kind], kind, basis, reason, matched, n)

    # Value evidence, the first rule met winning.
    found: tuple[_ValueRule, float] | None = None
    if n:
        for rule in _VALUE_RULES:
            if not _applies(rule, values):
                continue
            share = _share(sample, rule.test)
            distinct = len({v for v in sample if rule.test(v)})
            # A single repeated name-shaped word is a category, not a register of people.
            if share >= rule.share and (rule.kind is not _K.NAME or distinct >= max(2, 0.05 * n) or n < 4):
                found = (rule, share)
                break
    embedded = _embedded_identifiers(sample) if n and found is None else 0.0
    long_text = (
        bool(n)
        and sum(len(v) for v in sample) / n >= _FREE_TEXT_LENGTH
        # Prose has CJK characters or spaces; long codes, paths and hashes have neither.
        and _share(sample, _PROSE.search) >= _SHARE
    )

    name_kind = by_name[0] if by_name else None
    name_reason = by_name[1] if by_name else ""
    # Names that say nothing specific: free-text names (remark, 备注) and names no rule knows. A name a rule
    # calls "other" (an OMOP concept id, a vocabulary table's column) is specific: it says "not identifying".
    vague_name = name_kind in (None, _K.FREE_TEXT)
    direct_name = name_kind is not None and KIND_ROLES[name_kind] is _R.DIRECT_IDENTIFIER and not vague_name
    sampled = f"of {n} sampled values"

    if found is not None:
        rule, share = found
        evidence = f"{_percent(share)} {sampled} are {rule.describe}"
        if name_kind is not None and name_kind in _COMPATIBLE.get(rule.kind, frozenset({rule.kind})):
            return proposal(name_kind, "name_and_values", f"{name_reason}, and {evidence}", share)
        overrides = {
            "decisive": True,
            "strong": not direct_name,
            "medium": vague_name,
            "weak": name_kind is None,
        }[rule.strength]
        if overrides:
            overridden = f" (its name suggested {name_kind})" if name_kind is not None else ""
            return proposal(rule.kind, "values", f"{evidence}{overridden}", share)
        if name_kind is not None:
            return proposal(name_kind, "name", f"{name_reason}; {evidence}", share)
    if embedded > 0 and not direct_name and name_kind not in _COMPATIBLE[_K.FREE_TEXT]:
        overridden = f" (its name suggested {name_kind})" if name_kind is not None else ""
        return proposal(
            _K.FREE_TEXT,
            "values",
            f"{_percent(embedded)} {sampled} contain a resident ID or mobile number{overridden}",
            embedded,
        )
    if name_kind is not None:
        own = _RULE_OF_KIND.get(name_kind)
        if own is not None and n and _applies(own, values):
            share = _share(sample, own.test)
            return proposal(
                name_kind, "name", f"{name_reason}; {_percent(share)} {sampled} are {own.describe}", share
            )
        return proposal(name_kind, "name", name_reason, None)
    if long_text:
        return proposal(_K.FREE_TEXT, "values", f"the {n} sampled values are long text", None)
    if pa.types.is_date(values.type) or pa.types.is_timestamp(values.type):
        return proposal(_K.DATE, "type", "it is a date column", None)
    if n >= 20 and pa.types.is_string(values.type):
        codes = _share(sample, _CODE.fullmatch)
        if codes >= 0.9 and len(set(sample)) == n:
            return proposal(
                _K.OTHER_UNIQUE_CODE,
                "values",
                f"{_percent(codes)} {sampled} are codes and every sampled value is distinct",
                codes,
            )
    return proposal(_K.OTHER, "default", "nothing identifying in its name or sampled values", None)


def propose_roles(
    table: pa.Table, *, table_name: str | None = None, sample_size: int = 1000
) -> list[RoleProposal]:
    """Propose a role and kind for every column of a table, from its name and a sample of its values.

    Names are matched against OMOP CDM v5.4 fields (``table_name`` tells OMOP tables apart: ``city`` in
    ``location`` is an address part), staged source columns, pinyin initials and Chinese column names. Value
    rules then check up to ``sample_size`` non-null values spread evenly over the column: resident IDs
    (GB 11643 checksum, birth date and region), phone numbers, e-mail and web addresses, IP addresses,
    Chinese personal names, addresses, region codes and sex codes, plus resident IDs or mobile numbers
    inside longer text. Valid resident IDs override any name. Other strong evidence (phones, e-mail, web and
    IP addresses, addresses, embedded identifiers) overrides any name that does not already say "direct
    identifier", so a column called ``remark`` or ``diagnosis`` full of phone numbers is a phone column,
    while a barcode column whose numbers happen to look like phones stays a record key. Personal names
    override only vague names (unknown ones, ``remark``, 备注), since a surname list alone takes clinical
    words for names. Weak evidence (region and sex codes, distinct codes, long prose) only fills in for a
    name that says nothing.

    Args:
        table: The table; only the sample of each column is read.
        table_name: The table's name, e.g. ``"person"`` or ``"his_patients"``; enables table-specific rules.
        sample_size: How many values per column to check.

    Returns:
        One proposal per column, in the table's column order.

    Raises:
        InputError: If ``sample_size`` is below 1.

    Example:
        >>> t = pa.table({"remark": ["11010519491231002X"], "diagnosis_code": ["E11.9"]})
        >>> [(p.column, p.kind.value, p.basis) for p in propose_roles(t)]
        [('remark', 'resident_id', 'values'), ('diagnosis_code', 'diagnosis', 'name')]
    """
    if sample_size < 1:
        raise InputError(f"sample_size must be at least 1, got {sample_size}", field="sample_size")
    return [
        _propose_column(table_name, name, table.column(i), sample_size)
        for i, name in enumerate(table.column_names)
    ]
