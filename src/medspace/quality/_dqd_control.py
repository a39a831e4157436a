"""The DataQualityDashboard v5.4 control tables and the checks they define.

OHDSI's DataQualityDashboard (DQD) drives its checks from four CSV files shipped in ``data/dqd-5.4/``: the
27 check types (level, Kahn context/category/subcategory, severity, evaluation filter) and the per-table,
per-field and per-concept rows that switch each check on and give its threshold and parameters. A check is
instantiated for every control row whose evaluation filter holds, exactly as DQD's ``executeDqChecks`` does.
This module is engine-free: it only reads CSV text and builds frozen check definitions.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

from medspace.core import SpecError

CheckLevel = Literal["TABLE", "FIELD", "CONCEPT"]

#: The folder inside ``medspace.quality`` that holds DQD's control tables.
CONTROL_FOLDER = "dqd-5.4"
CHECK_DESCRIPTIONS = "OMOP_CDMv5.4_Check_Descriptions.csv"
TABLE_LEVEL = "OMOP_CDMv5.4_Table_Level.csv"
FIELD_LEVEL = "OMOP_CDMv5.4_Field_Level.csv"
CONCEPT_LEVEL = "OMOP_CDMv5.4_Concept_Level.csv"

# One term of DQD's evaluation filters, e.g. `isForeignKey=='Yes'` or `fkDomain!= ''` (R syntax; terms are
# joined with `&`, the only connective the v5.4 control tables use).
_FILTER_TERM = re.compile(r"^\s*(\w+)\s*(==|!=)\s*'([^']*)'\s*$")


@dataclass(frozen=True)
class CheckDescription:
    """One of DQD's check types, a row of ``OMOP_CDMv5.4_Check_Descriptions.csv``."""

    check_level: CheckLevel
    check_name: str
    description: str
    context: str
    category: str
    subcategory: str
    sql_file: str
    evaluation_filter: str
    severity: str

    def applies_to(self, row: Mapping[str, str]) -> bool:
        """Whether the evaluation filter holds for one control-table row (a missing column reads as '')."""
        for term in self.evaluation_filter.split("&"):
            match = _FILTER_TERM.match(term)
            if match is None:
                raise SpecError(
                    f"the evaluation filter {self.evaluation_filter!r} of check {self.check_name} is not "
                    "of the form name=='value' [& ...]",
                    file=CHECK_DESCRIPTIONS,
                    field="evaluationFilter",
                )
            name, op, value = match.groups()
            actual = (row.get(name) or "").strip()
            if (actual == value) != (op == "=="):
                return False
        return True


@dataclass(frozen=True)
class DqdCheck:
    """One instantiated check: a check type applied to a table, field or concept of the CDM.

    ``table`` and ``field`` are upper case as DQD reports them; ``params`` holds the control row's
    parameters the check needs (``fkTableName``, ``plausibleValueLow``, ``plausibleGender`` ...).
    """

    description: CheckDescription
    table: str
    field: str | None = None
    concept_id: str | None = None
    unit_concept_id: str | None = None
    threshold: float | None = None
    notes: str | None = None
    params: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: A check added by the user's overrides file rather than by DQD's control tables.
    custom: bool = False

    @property
    def check_name(self) -> str:
        return self.description.check_name

    @property
    def check_level(self) -> CheckLevel:
        return self.description.check_level

    @property
    def check_id(self) -> str:
        """DQD's check id (``R/getCheckId.R``): level, name, table, field, concept, unit; lower case, '_'."""
        parts = [
            self.check_level,
            self.check_name,
            self.table,
            self.field,
            self.concept_id,
            self.unit_concept_id,
        ]
        return "_".join(p.replace(" ", "") for p in parts if p and p.replace(" ", "")).lower()

    @property
    def rendered_description(self) -> str:
        """The description with DQD's ``@parameter`` placeholders filled in (values upper case, like DQD)."""
        values = {"cdmTableName": self.table, "cdmFieldName": self.field or ""}
        values.update({k: v.upper() for k, v in self.params.items()})
        if self.concept_id is not None:
            values["conceptId"] = self.concept_id
        return re.sub(r"@(\w+)", lambda m: values.get(m.group(1), m.group(0)), self.description.description)


def _read(name: str) -> list[dict[str, str]]:
    text = (
        resources.files("medspace.quality").joinpath("data", CONTROL_FOLDER, name).read_text(encoding="utf-8")
    )
    return list(csv.DictReader(io.StringIO(text)))


def _number(value: str, *, file: str, column: str) -> float | None:
    value = value.strip()
    if not value or value.upper() == "NA":
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise SpecError(f"threshold {value!r} is not a number", file=file, field=column) from exc


def _text(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


@cache
def check_descriptions() -> tuple[CheckDescription, ...]:
    """DQD's 27 check types for CDM v5.4, in the order of the control table."""
    out = []
    for row in _read(CHECK_DESCRIPTIONS):
        level = row["checkLevel"].strip().upper()
        if level not in ("TABLE", "FIELD", "CONCEPT"):
            raise SpecError(f"unknown check level {level!r}", file=CHECK_DESCRIPTIONS, field="checkLevel")
        out.append(
            CheckDescription(
                check_level=level,  # type: ignore[arg-type]  # narrowed by the membership test above
                check_name=row["checkName"].strip(),
                description=" ".join(row["checkDescription"].split()),
                context=row["kahnContext"].strip(),
                category=row["kahnCategory"].strip(),
                subcategory=row["kahnSubcategory"].strip(),
                sql_file=row["sqlFile"].strip(),
                evaluation_filter=row["evaluationFilter"].strip(),
                severity=row["severity"].strip(),
            )
        )
    return tuple(out)


# Parameters a field-level check reads from its control row, beyond threshold and notes.
_FIELD_PARAMS = (
    "cdmDatatype",
    "fkTableName",
    "fkFieldName",
    "fkDomain",
    "fkClass",
    "standardConceptFieldName",
    "plausibleValueLow",
    "plausibleValueHigh",
    "plausibleTemporalAfterTableName",
    "plausibleTemporalAfterFieldName",
    "plausibleStartBeforeEndFieldName",
)
_CONCEPT_PARAMS = (
    "conceptName",
    "plausibleGender",
    "plausibleGenderUseDescendants",
    "plausibleUnitConceptIds",
)


@cache
def control_checks() -> tuple[DqdCheck, ...]:
    """Every check DQD's v5.4 control tables switch on, in DQD's order (check type, then control row).

    Raises:
        SpecError: if a control table is malformed (a bad filter or a non-numeric threshold).

    Example:
        >>> checks = control_checks()
        >>> sorted({c.check_level for c in checks})
        ['CONCEPT', 'FIELD', 'TABLE']
    """
    tables = _read(TABLE_LEVEL)
    fields = _read(FIELD_LEVEL)
    concepts = _read(CONCEPT_LEVEL)
    out: list[DqdCheck] = []
    for desc in check_descriptions():
        if not desc.evaluation_filter or not desc.sql_file:
            continue
        name = desc.check_name
        if desc.check_level == "TABLE":
            for row in tables:
                if desc.applies_to(row):
                    out.append(
                        DqdCheck(
                            description=desc,
                            table=row["cdmTableName"].strip().upper(),
                            threshold=_number(row.get(f"{name}Threshold", ""), file=TABLE_LEVEL, column=name),
                            notes=_text(row.get(f"{name}Notes")),
                        )
                    )
        elif desc.check_level == "FIELD":
            for row in fields:
                # DQD leaves out `offset` (a reserved word on some databases); v5.4 has NOTE_NLP.offset.
                if row["cdmFieldName"].strip().lower() == "offset" or not desc.applies_to(row):
                    continue
                out.append(
                    DqdCheck(
                        description=desc,
                        table=row["cdmTableName"].strip().upper(),
                        field=row["cdmFieldName"].strip().upper(),
                        threshold=_number(row.get(f"{name}Threshold", ""), file=FIELD_LEVEL, column=name),
                        notes=_text(row.get(f"{name}Notes")),
                        params={p: row[p].strip() for p in _FIELD_PARAMS if (row.get(p) or "").strip()},
                    )
                )
        else:
            for row in concepts:
                if not desc.applies_to(row):
                    continue
                out.append(
                    DqdCheck(
                        description=desc,
                        table=row["cdmTableName"].strip().upper(),
                        field=row["cdmFieldName"].strip().upper(),
                        concept_id=row["conceptId"].strip(),
                        unit_concept_id=_text(row.get("unitConceptId")),
                        threshold=_number(row.get(f"{name}Threshold", ""), file=CONCEPT_LEVEL, column=name),
                        notes=_text(row.get(f"{name}Notes")),
                        params={p: row[p].strip() for p in _CONCEPT_PARAMS if (row.get(p) or "").strip()},
                    )
                )
    return tuple(out)


def concept_id_list(value: str) -> tuple[int, ...]:
    """The concept ids of a DQD list such as ``'4095793 , 443343'`` (concept rows list ids with commas)."""
    try:
        return tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError as exc:
        raise SpecError(f"concept id list {value!r} holds a non-integer", file=CONCEPT_LEVEL) from exc
