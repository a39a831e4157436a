"""The synthetic hospital's clinical catalogue, loaded from ``data/catalogue.yaml`` into frozen models.

The catalogue is data (STYLE.md §4): departments, conditions with their code in each ICD-10 edition, lab
tests with units and per-lab reference ranges, exams, procedures and drugs. Cross references (a condition's
department, tests, exams and procedures) are resolved when the file loads, so a typo fails at start-up.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, model_validator

from medspace.core import SpecError


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hospital(_Frozen):
    name: str
    organisation_code: str
    city: str
    local_regions: dict[str, str]


class Department(_Frozen):
    key: str
    code: str
    name: str
    kind: Literal["clinical", "technical", "emergency", "checkup"]

    @property
    def stripped_code(self) -> str:
        """The code as exports that drop the letter prefix write it (domain.md §1.4)."""
        return self.code.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class Diagnosis(_Frozen):
    """A diagnosis with its code in each edition: national clinical 2.0, insurance 2.0 and a legacy one."""

    key: str
    name: str
    icd10: str
    clinical: str
    insurance: str
    legacy: str
    department: str
    admission_only: bool = False
    procedures: tuple[str, ...] = ()
    external_cause: str | None = None
    pathology: str | None = None


class Condition(Diagnosis):
    prevalence: float
    age_double_years: float | None = None
    sex: Literal["M", "F"] | None = None
    requires: str | None = None
    risk: dict[str, float] = {}
    visits: float
    admissions: float
    tests: tuple[str, ...] = ()
    exams: tuple[str, ...] = ()


class LabTest(_Frozen):
    code: str
    name: str
    unit: str
    decimals: int
    panel: str
    central_range: tuple[float | None, float | None]
    branch_range: tuple[float | None, float | None]
    normal: tuple[float, float]
    abnormal: dict[str, tuple[float, float]] = {}
    alt_unit: str | None = None
    alt_factor: float | None = None
    alt_formula: Literal["hba1c_ifcc"] | None = None
    loinc_name: str | None = None


class LabPanel(_Frozen):
    code: str
    name: str
    specimen: str
    tube: str


class Exam(_Frozen):
    code: str
    name: str
    modality: str
    department: str
    body: str


class Procedure(_Frozen):
    key: str
    name: str
    clinical: str
    insurance: str
    grade: int
    minimally_invasive: bool
    interventional: bool
    day_surgery: bool
    department: str


class Drug(_Frozen):
    code: str
    name: str
    spec: str
    price: float
    conditions: tuple[str, ...]


class Catalogue(_Frozen):
    hospital: Hospital
    departments: tuple[Department, ...]
    conditions: tuple[Condition, ...]
    general_diagnoses: tuple[Diagnosis, ...]
    lab_tests: tuple[LabTest, ...]
    lab_panels: tuple[LabPanel, ...]
    inpatient_routine_panels: tuple[str, ...]
    exams: tuple[Exam, ...]
    procedures: tuple[Procedure, ...]
    drugs: tuple[Drug, ...]

    @model_validator(mode="after")
    def _references_resolve(self) -> Catalogue:
        departments = {d.key for d in self.departments}
        conditions = {c.key for c in self.conditions}
        tests = {t.code for t in self.lab_tests}
        panels = {p.code for p in self.lab_panels}
        exams = {e.code for e in self.exams}
        procedures = {p.key for p in self.procedures}
        problems: list[str] = []
        for dx in (*self.conditions, *self.general_diagnoses):
            if dx.department not in departments:
                problems.append(f"{dx.key}: unknown department {dx.department}")
            problems += [f"{dx.key}: unknown procedure {p}" for p in dx.procedures if p not in procedures]
        for c in self.conditions:
            problems += [f"{c.key}: unknown test {t}" for t in c.tests if t not in tests]
            problems += [f"{c.key}: unknown exam {e}" for e in c.exams if e not in exams]
            for other in (*c.risk, *([c.requires] if c.requires else [])):
                if other not in conditions:
                    problems.append(f"{c.key}: unknown condition {other}")
        for t in self.lab_tests:
            if t.panel not in panels:
                problems.append(f"{t.code}: unknown panel {t.panel}")
            problems += [f"{t.code}: unknown condition {k}" for k in t.abnormal if k not in conditions]
        problems += [f"routine panel {p} unknown" for p in self.inpatient_routine_panels if p not in panels]
        for p in self.procedures:
            if p.department not in departments:
                problems.append(f"{p.key}: unknown department {p.department}")
        for drug in self.drugs:
            if len(drug.code) != 23:
                problems.append(f"{drug.name}: national insurance drug code must have 23 characters")
            problems += [
                f"{drug.name}: unknown condition {k}" for k in drug.conditions if k not in conditions
            ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def department(self, key: str) -> Department:
        return next(d for d in self.departments if d.key == key)


@cache
def load_catalogue() -> Catalogue:
    """Load the packaged catalogue (cached; the models are frozen so sharing is safe)."""
    text = resources.files("medspace.synth").joinpath("data/catalogue.yaml").read_text(encoding="utf-8")
    try:
        return Catalogue.model_validate(yaml.safe_load(text))
    except ValueError as exc:
        raise SpecError(f"medspace/synth/data/catalogue.yaml is invalid: {exc}") from exc
