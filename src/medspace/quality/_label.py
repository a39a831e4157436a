"""The quality label of a dataset: GB/T 36344-2018's six dimensions and the EHDS Article 78 elements, each
with a score and the checks behind it.

Every check medspace runs (DQD checks over the CDM, cross-system checks over the staged data, the KPI
reconciliation, staging quarantine and link orphan rates) becomes a `QualityCheck` tagged with the GB/T
dimension and the EHDS technical-quality element it speaks to. A dimension's score is the share of its
applicable checks that passed (0-100); checks that could not run count against it and are listed as errors,
never hidden. The EHDS elements that are facts rather than checks (documentation, coverage, time to
availability, links to other datasets) are stated as facts with their source.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

Status = Literal["passed", "failed", "not_applicable", "error"]
Dimension = Literal["normativity", "completeness", "accuracy", "consistency", "timeliness", "accessibility"]
DIMENSIONS: tuple[Dimension, ...] = (
    "normativity",
    "completeness",
    "accuracy",
    "consistency",
    "timeliness",
    "accessibility",
)
# GB/T 36344-2018 dimension names as the standard writes them.
DIMENSION_NAMES: dict[Dimension, str] = {
    "normativity": "规范性",
    "completeness": "完整性",
    "accuracy": "准确性",
    "consistency": "一致性",
    "timeliness": "时效性",
    "accessibility": "可访问性",
}
EhdsQuality = Literal["completeness", "uniqueness", "accuracy", "validity", "timeliness", "consistency"]


@dataclass(frozen=True)
class QualityCheck:
    """One check's outcome, tagged for the label."""

    source: str  # "dqd", "cross_system", "kpi_reconciliation", "staging", "link"
    name: str
    dimension: Dimension
    ehds: EhdsQuality
    status: Status
    value: float | None = None  # e.g. percent of violating rows
    threshold: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class DimensionScore:
    dimension: Dimension
    name: str  # the standard's own name
    score: float | None  # 0-100, None when no check applies
    passed: int
    failed: int
    errors: int
    not_applicable: int
    failing_checks: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class QualityLabel:
    """The label: GB/T 36344 dimension scores and the EHDS Article 78 quality-and-utility elements."""

    dataset: str
    dimensions: list[DimensionScore]
    ehds_technical_quality: dict[str, float | None]
    ehds_facts: dict[str, dict[str, object]]
    overall: float | None

    def dimension(self, name: Dimension) -> DimensionScore:
        return next(d for d in self.dimensions if d.dimension == name)


def _score(checks: list[QualityCheck]) -> tuple[float | None, int, int, int, int]:
    passed = sum(c.status == "passed" for c in checks)
    failed = sum(c.status == "failed" for c in checks)
    errors = sum(c.status == "error" for c in checks)
    not_applicable = sum(c.status == "not_applicable" for c in checks)
    applicable = passed + failed + errors
    score = round(100.0 * passed / applicable, 1) if applicable else None
    return score, passed, failed, errors, not_applicable


def quality_label(
    dataset: str, checks: Iterable[QualityCheck], facts: dict[str, dict[str, object]]
) -> QualityLabel:
    """Score a dataset's checks into the label.

    Args:
        dataset: what the label is about (a workspace, a product).
        checks: every check outcome, tagged with its dimension and EHDS element.
        facts: the EHDS elements that are facts: documentation, coverage and representativeness, time from
            collection to availability, links to other datasets, maturity of quality management.

    Example:
        >>> c = [QualityCheck("dqd", "isRequired person", "completeness", "completeness", "passed")]
        >>> quality_label("demo", c, {}).dimension("completeness").score
        100.0
    """
    all_checks = list(checks)
    dimensions = []
    for dim in DIMENSIONS:
        mine = [c for c in all_checks if c.dimension == dim]
        score, passed, failed, errors, na = _score(mine)
        failing = sorted(c.name for c in mine if c.status in ("failed", "error"))
        dimensions.append(
            DimensionScore(dim, DIMENSION_NAMES[dim], score, passed, failed, errors, na, failing)
        )
    ehds = {
        element: _score([c for c in all_checks if c.ehds == element])[0]
        for element in ("completeness", "uniqueness", "accuracy", "validity", "timeliness", "consistency")
    }
    overall = _score(all_checks)[0]
    return QualityLabel(dataset, dimensions, ehds, facts, overall)
