"""The user's overrides of the DataQualityDashboard checks: a YAML file, validated when it loads.

Four sections, all optional::

    disable:                      # checks to leave out; each entry matches on the keys it gives
      - check: plausibleGender
      - {check: measurePersonCompleteness, table: DEATH}
    thresholds:                   # a new threshold (percent of violated rows allowed) for matching checks
      - {check: measureValueCompleteness, table: PERSON, field: ethnicity_source_value, threshold: 100}
    custom:                       # checks DQD's control tables lack, declared without SQL
      - {kind: plausible_range, concept_id: 3004410, unit_concept_id: 8554, low: 2, high: 20, threshold: 1}
      - {kind: not_null, table: PERSON, field: birth_datetime, threshold: 5}
    kpi_tolerance:                # percent of a KPI a source's unexplained records may account for
      default: 0.5
      kpis: {inpatient_cost: 1.0}

Names are matched case-insensitively; every check type, table and field named must exist in DQD's control
tables, so a typo is refused rather than silently matching nothing. This module is engine-free.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medspace.core import SpecError
from medspace.quality._dqd_control import DqdCheck, check_descriptions, control_checks
from medspace.quality._kpi_definitions import KpiTolerance


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckSelector(_Frozen):
    """Matches checks by type, table, field and concept; a key left out matches anything."""

    check: str | None = None
    table: str | None = None
    field: str | None = None
    concept_id: int | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> CheckSelector:
        if self.check is None and self.table is None and self.field is None and self.concept_id is None:
            raise ValueError("give at least one of check, table, field, concept_id")
        return self

    def matches(self, check: DqdCheck) -> bool:
        if self.check is not None and self.check.lower() != check.check_name.lower():
            return False
        if self.table is not None and self.table.upper() != check.table:
            return False
        if self.field is not None and self.field.upper() != (check.field or ""):
            return False
        if self.concept_id is not None:
            ids = {p.strip() for p in (check.concept_id or "").split(",")}
            if str(self.concept_id) not in ids:
                return False
        return True


class ThresholdOverride(CheckSelector):
    """A new threshold, in percent of violated rows allowed (0 means any violated row fails)."""

    threshold: float = Field(ge=0, le=100)


class PlausibleRangeCheck(_Frozen):
    """A plausible range of ``value_as_number`` for one measurement (or observation) concept and unit.

    Becomes DQD's concept-level plausibleValueLow and/or plausibleValueHigh checks.
    """

    kind: Literal["plausible_range"]
    table: Literal["MEASUREMENT", "OBSERVATION", "measurement", "observation"] = "MEASUREMENT"
    concept_id: int
    unit_concept_id: int | None = None
    low: float | None = None
    high: float | None = None
    threshold: float = Field(default=0, ge=0, le=100)
    notes: str | None = None

    @model_validator(mode="after")
    def _a_bound(self) -> PlausibleRangeCheck:
        if self.low is None and self.high is None:
            raise ValueError("a plausible_range needs low, high or both")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        return self


class NotNullCheck(_Frozen):
    """A field that must be filled in: DQD's isRequired check on a field the CDM spec leaves optional."""

    kind: Literal["not_null"]
    table: str
    field: str
    threshold: float = Field(default=0, ge=0, le=100)
    notes: str | None = None


CustomCheck = Annotated[PlausibleRangeCheck | NotNullCheck, Field(discriminator="kind")]


class DqdOverrides(_Frozen):
    """The whole overrides file."""

    disable: tuple[CheckSelector, ...] = ()
    thresholds: tuple[ThresholdOverride, ...] = ()
    custom: tuple[CustomCheck, ...] = ()
    kpi_tolerance: KpiTolerance = KpiTolerance()


def load_overrides(path: Path) -> DqdOverrides:
    """Read and validate an overrides YAML file.

    Raises:
        SpecError: if the file is missing, not YAML, not of the documented shape, or names a check type,
            table or field DQD's control tables do not have.
    """
    label = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"cannot read the overrides file: {exc.strerror}", file=label) from exc
    except yaml.YAMLError as exc:
        raise SpecError("the overrides file is not valid YAML; fix its syntax", file=label) from exc
    try:
        overrides = DqdOverrides.model_validate(data or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SpecError(f"{where}: {first['msg']}", file=label, field=where) from exc
    _resolve(overrides, label)
    return overrides


def _resolve(overrides: DqdOverrides, label: str) -> None:
    names = {d.check_name.lower() for d in check_descriptions()}
    tables = {c.table for c in control_checks()}
    fields = {(c.table, c.field) for c in control_checks() if c.field}
    selectors: list[tuple[str, CheckSelector]] = [("disable", s) for s in overrides.disable]
    selectors += [("thresholds", s) for s in overrides.thresholds]
    for section, sel in selectors:
        if sel.check is not None and sel.check.lower() not in names:
            raise SpecError(f"{section}: DQD has no check type {sel.check!r}", file=label, field="check")
        if sel.table is not None and sel.table.upper() not in tables:
            raise SpecError(f"{section}: the CDM has no table {sel.table!r}", file=label, field="table")
        if (
            sel.field is not None
            and sel.table is not None
            and (sel.table.upper(), sel.field.upper()) not in fields
        ):
            raise SpecError(
                f"{section}: table {sel.table.upper()} has no field {sel.field!r}", file=label, field="field"
            )
    for custom in overrides.custom:
        if isinstance(custom, NotNullCheck) and (custom.table.upper(), custom.field.upper()) not in fields:
            raise SpecError(
                f"custom not_null: table {custom.table.upper()} has no field {custom.field!r}",
                file=label,
                field="field",
            )


def apply_overrides(checks: tuple[DqdCheck, ...], overrides: DqdOverrides) -> tuple[DqdCheck, ...]:
    """The checks to run: DQD's, minus disabled ones, with new thresholds, plus the custom checks.

    A later threshold entry wins over an earlier one; a custom check whose id repeats an existing check's
    replaces it (so a custom range on a concept DQD already bounds is the one that runs).
    """
    descriptions = {d.check_name: d for d in check_descriptions()}
    out: dict[str, DqdCheck] = {}
    for check in checks:
        if any(sel.matches(check) for sel in overrides.disable):
            continue
        for override in overrides.thresholds:
            if override.matches(check):
                check = replace(check, threshold=override.threshold)
        out[check.check_id] = check
    for custom in overrides.custom:
        new: list[DqdCheck] = []
        if isinstance(custom, PlausibleRangeCheck):
            table = custom.table.upper()
            for name, bound in (("plausibleValueLow", custom.low), ("plausibleValueHigh", custom.high)):
                if bound is None:
                    continue
                base = descriptions[name]
                desc = replace(
                    base,
                    check_level="CONCEPT",
                    description=(
                        f"The number and percent of records for a given CONCEPT_ID @conceptId with a value "
                        f"{'below' if name.endswith('Low') else 'above'} the plausible value {bound:g}."
                    ),
                    sql_file="concept_plausible_value_low.sql"
                    if name.endswith("Low")
                    else "concept_plausible_value_high.sql",
                )
                new.append(
                    DqdCheck(
                        description=desc,
                        table=table,
                        field=f"{table}_CONCEPT_ID",
                        concept_id=str(custom.concept_id),
                        unit_concept_id=None
                        if custom.unit_concept_id is None
                        else str(custom.unit_concept_id),
                        threshold=custom.threshold,
                        notes=custom.notes,
                        params={name: repr(bound)},
                        custom=True,
                    )
                )
        else:
            new.append(
                DqdCheck(
                    description=descriptions["isRequired"],
                    table=custom.table.upper(),
                    field=custom.field.upper(),
                    threshold=custom.threshold,
                    notes=custom.notes,
                    custom=True,
                )
            )
        for check in new:
            if any(sel.matches(check) for sel in overrides.disable):
                continue
            out[check.check_id] = check
    return tuple(out.values())
