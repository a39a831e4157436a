"""Mappings from the hospital's Chinese code systems and local codes to OMOP concepts, loaded from CSV files.

The mappings are data (STYLE.md §4): ``data/mappings/*.csv``, one file per kind, each row validated into a
frozen model when the files load, and cross-file references (a unit conversion's test and units, a drifted
discharge mode's canonical code) resolved then, so a typo fails at start-up rather than mid-ETL. Concept id
0 is OMOP's "no matching concept" and is used wherever a concept could not be verified.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medspace.core import SpecError

_FOLDER = "mappings"

Match = Literal["equivalent", "broader", "none"]

# ICD-10 category or subcategory (WHO ICD-10: letter, two digits, optional point and one or two characters,
# the Chinese editions' `x` placeholder included), e.g. I10, E11.9, W01.
_ICD10 = re.compile(r"^[A-Z][0-9]{2}(\.[0-9x]{1,2})?$")
# ICD-9-CM volume 3 procedure code: two digits, optional point and one or two digits, e.g. 06.2, 13.41.
_ICD9CM3 = re.compile(r"^[0-9]{2}(\.[0-9]{1,2})?$")
# LOINC code: digits, a hyphen and the mod-10 check digit (LOINC Users' Guide §12), e.g. 4548-4.
_LOINC = re.compile(r"^[0-9]{1,7}-[0-9]$")


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class _ConceptMatch(_Row):
    @model_validator(mode="after")
    def _match_agrees_with_concept(self) -> Any:
        concept = self.concept_id()
        match = getattr(self, "match", None)
        if match is not None and (match == "none") != (concept == 0):
            raise ValueError(f"match {match!r} does not agree with concept id {concept}")
        return self

    def concept_id(self) -> int:
        raise NotImplementedError  # pragma: no cover - every subclass names its concept field


class DiagnosisCode(_ConceptMatch):
    """One diagnosis code as an edition writes it, with its common ICD-10 code and OMOP concepts."""

    code: str
    edition: Literal["clinical", "nhsa", "legacy"]
    icd10: str
    name: str
    kind: Literal["diagnosis", "external_cause"]
    condition_concept_id: int = Field(ge=0)
    icd10_concept_id: int = Field(ge=0)
    match: Match
    note: str = ""

    @field_validator("icd10")
    @classmethod
    def _icd10_shape(cls, value: str) -> str:
        if not _ICD10.match(value):
            raise ValueError(f"not an ICD-10 code: {value!r}")
        return value

    def concept_id(self) -> int:
        return self.condition_concept_id


class ProcedureCode(_ConceptMatch):
    """One procedure code as an edition writes it, with its common ICD-9-CM-3 code and OMOP concepts."""

    code: str
    edition: Literal["clinical", "nhsa"]
    icd9cm3: str
    name: str
    procedure_concept_id: int = Field(ge=0)
    icd9cm3_concept_id: int = Field(ge=0)
    match: Match
    note: str = ""

    @model_validator(mode="after")
    def _common_code_is_prefix(self) -> ProcedureCode:
        if not _ICD9CM3.match(self.icd9cm3):
            raise ValueError(f"not an ICD-9-CM-3 code: {self.icd9cm3!r}")
        # Edition codes extend the common code: 13.41 -> 13.4100x001; 43.7 -> 43.7x00x003.
        if not self.code.startswith(self.icd9cm3):
            raise ValueError(f"edition code {self.code} does not extend ICD-9-CM-3 code {self.icd9cm3}")
        return self

    def concept_id(self) -> int:
        return self.procedure_concept_id


class LabTestMapping(_Row):
    """A LIS local item code with its LOINC code, OMOP measurement concept and canonical unit."""

    code: str
    name: str
    loinc: str | None = None
    loinc_name: str | None = None
    loinc_certainty: Literal["sure", "check", "unknown"]
    measurement_concept_id: int = Field(ge=0)
    unit: str
    ucum: str
    unit_concept_id: int = Field(ge=0)
    comment: str = ""

    @model_validator(mode="after")
    def _loinc_consistent(self) -> LabTestMapping:
        if self.loinc is not None and not _LOINC.match(self.loinc):
            raise ValueError(f"not a LOINC code: {self.loinc!r}")
        if (self.loinc is None) != (self.loinc_certainty == "unknown"):
            raise ValueError("loinc_certainty is 'unknown' exactly when no LOINC code is given")
        if self.measurement_concept_id and self.loinc_certainty != "sure":
            raise ValueError("a measurement concept needs a LOINC code marked 'sure'")
        return self


class UnitConversion(_Row):
    """``to_value = from_value * factor + offset`` for one test."""

    test: str
    from_unit: str
    to_unit: str
    factor: float = Field(gt=0)
    offset: float
    source: str = ""

    def apply(self, value: float) -> float:
        return value * self.factor + self.offset


class Department(_Row):
    code: str
    stripped_code: str
    key: str
    name: str
    kind: Literal["clinical", "technical", "emergency", "checkup"]
    note: str = ""

    @model_validator(mode="after")
    def _stripped_matches(self) -> Department:
        if self.code.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ") != self.stripped_code:
            raise ValueError(
                f"stripped code {self.stripped_code} is not {self.code} without its letter prefix"
            )
        return self


class VisitType(_Row):
    system: str
    code: str
    visit_type: Literal["outpatient", "emergency", "inpatient", "day_surgery", "checkup"]
    name: str
    visit_concept_id: int = Field(ge=0)
    note: str = ""


class DischargeMode(_Row):
    """A front sheet's discharge mode (national value set); ``canonical_code`` undoes drift (6 -> 9)."""

    code: str
    canonical_code: str
    name: str
    discharged_to_concept_id: int = Field(ge=0)
    note: str = ""


class SexCode(_Row):
    system: str
    code: str
    name: str
    gender_concept_id: int = Field(ge=0)
    note: str = ""


MappingFile = Literal["diagnosis_codes", "procedure_codes", "lab_tests"]
Edition = Literal["clinical", "nhsa", "legacy"]


class CodeSystemMapping(_Row):
    """Which mapping file maps a code system a site declares, and which of its editions' codes it accepts.

    The cdm stage looks source codes up by the row's ``code_system`` (declared in the site mapping); this is
    the only place a code system name meets a mapping file.
    """

    code_system: str
    mapping: MappingFile
    #: The editions of ``diagnosis_codes.csv`` or ``procedure_codes.csv`` it accepts, space-separated.
    editions: str = ""
    note: str = ""

    @property
    def edition_set(self) -> frozenset[str]:
        return frozenset(self.editions.split())

    @model_validator(mode="after")
    def _editions_fit_the_file(self) -> CodeSystemMapping:
        allowed = {
            "diagnosis_codes": {"clinical", "nhsa", "legacy"},
            "procedure_codes": {"clinical", "nhsa"},
        }
        wanted = self.edition_set
        if self.mapping == "lab_tests":
            if wanted:
                raise ValueError("lab_tests has no editions")
        elif not wanted or not wanted <= allowed[self.mapping]:
            raise ValueError(f"editions {self.editions!r} are not editions of {self.mapping}.csv")
        return self


_R = TypeVar("_R", bound=_Row)


class Mappings(BaseModel):
    """Every mapping table, keyed for lookup; built by `load_mappings`.

    Example:
        >>> m = load_mappings()
        >>> m.diagnoses["E11.301+H36.0*"].icd10, m.diagnoses["E11.301+H36.0*"].condition_concept_id
        ('E11.3', 4226121)
        >>> m.lab_tests["HBA1C"].loinc
        '4548-4'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    diagnoses: Mapping[str, DiagnosisCode]
    procedures: Mapping[str, ProcedureCode]
    lab_tests: Mapping[str, LabTestMapping]
    #: (test, from_unit, to_unit) -> conversion.
    unit_conversions: Mapping[tuple[str, str, str], UnitConversion]
    departments: Mapping[str, Department]
    #: (system, code) -> visit type.
    visit_types: Mapping[tuple[str, str], VisitType]
    discharge_modes: Mapping[str, DischargeMode]
    #: (system, code) -> sex code.
    sex: Mapping[tuple[str, str], SexCode]
    #: code system name (as sites declare it) -> the mapping file that maps its codes.
    code_systems: Mapping[str, CodeSystemMapping]

    def departments_by_stripped_code(self, stripped_code: str) -> tuple[Department, ...]:
        """Every department an export without letter prefixes may mean by ``stripped_code``.

        Stripped codes are ambiguous (``0101`` is cardiology, the general surgical ward and the laboratory),
        so a caller needs another field, such as the department name, to choose.
        """
        return tuple(d for d in self.departments.values() if d.stripped_code == stripped_code)

    @model_validator(mode="after")
    def _references_resolve(self) -> Mappings:
        for (test, from_unit, to_unit), conv in self.unit_conversions.items():
            lab = self.lab_tests.get(test)
            if lab is None:
                raise ValueError(f"unit conversion for unknown test {test}")
            if lab.unit not in (from_unit, to_unit):
                raise ValueError(
                    f"conversion {test} {from_unit} -> {to_unit} does not involve the canonical unit"
                )
            back = self.unit_conversions.get((test, to_unit, from_unit))
            if back is None:
                raise ValueError(f"conversion {test} {from_unit} -> {to_unit} has no inverse row")
            # Composing the two must be the identity: f2 * (f1 x + o1) + o2 = x for every x.
            if (
                abs(conv.factor * back.factor - 1) > 1e-9
                or abs(back.factor * conv.offset + back.offset) > 1e-6
            ):
                raise ValueError(f"conversions {test} {from_unit} <-> {to_unit} are not inverses")
        for mode in self.discharge_modes.values():
            if mode.canonical_code not in self.discharge_modes:
                raise ValueError(
                    f"discharge mode {mode.code} has unknown canonical code {mode.canonical_code}"
                )
        return self


def _read_rows(name: str, model: type[_R]) -> list[_R]:
    text = resources.files("medspace.cdm").joinpath("data", _FOLDER, name).read_text(encoding="utf-8")
    rows: list[_R] = []
    for line, raw in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        # An empty cell is a missing value: the field's default (None or "") applies.
        values = {k: v for k, v in raw.items() if v != ""}
        try:
            rows.append(model.model_validate(values))
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"]) or None
            raise SpecError(
                f"invalid mapping row: {error['msg']}; fix the file",
                file=f"cdm/data/{_FOLDER}/{name}",
                row=line,
                field=field,
            ) from exc
    return rows


def _unique(rows: list[_R], key: Any, name: str) -> dict[Any, _R]:
    out: dict[Any, _R] = {}
    for row in rows:
        k = key(row)
        if k in out:
            raise SpecError(
                f"duplicate key {k!r}; each code may appear once", file=f"cdm/data/{_FOLDER}/{name}"
            )
        out[k] = row
    return out


@cache
def load_mappings() -> Mappings:
    """Load and validate every mapping table shipped in ``data/mappings/`` (loaded once).

    Returns:
        The mappings, keyed for lookup.

    Raises:
        SpecError: A row is malformed, a key repeats, or a reference does not resolve (the message names the
            file, row and field).

    Example:
        >>> load_mappings().visit_types[("medspace", "inpatient")].visit_concept_id
        9201
    """
    try:
        return Mappings(
            diagnoses=_unique(
                _read_rows("diagnosis_codes.csv", DiagnosisCode), lambda r: r.code, "diagnosis_codes.csv"
            ),
            procedures=_unique(
                _read_rows("procedure_codes.csv", ProcedureCode), lambda r: r.code, "procedure_codes.csv"
            ),
            lab_tests=_unique(_read_rows("lab_tests.csv", LabTestMapping), lambda r: r.code, "lab_tests.csv"),
            unit_conversions=_unique(
                _read_rows("unit_conversions.csv", UnitConversion),
                lambda r: (r.test, r.from_unit, r.to_unit),
                "unit_conversions.csv",
            ),
            departments=_unique(
                _read_rows("departments.csv", Department), lambda r: r.code, "departments.csv"
            ),
            visit_types=_unique(
                _read_rows("visit_types.csv", VisitType), lambda r: (r.system, r.code), "visit_types.csv"
            ),
            discharge_modes=_unique(
                _read_rows("discharge_modes.csv", DischargeMode), lambda r: r.code, "discharge_modes.csv"
            ),
            sex=_unique(_read_rows("sex.csv", SexCode), lambda r: (r.system, r.code), "sex.csv"),
            code_systems=_unique(
                _read_rows("code_systems.csv", CodeSystemMapping), lambda r: r.code_system, "code_systems.csv"
            ),
        )
    except ValidationError as exc:
        raise SpecError(
            f"mapping tables do not agree: {exc.errors()[0]['msg']}", file=f"cdm/data/{_FOLDER}"
        ) from exc
