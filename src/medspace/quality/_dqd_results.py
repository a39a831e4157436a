"""DataQualityDashboard results: one result per check, its status, and DQD's results JSON.

A check ends in exactly one of DQD's four statuses, in DQD's priority order (``CheckStatusDefinitions``
vignette): *error* (the check could not run), *not applicable* (the table or field is missing or empty, the
concept does not occur, the vocabulary is absent), *failed* (percent of violated rows above the threshold, or
any violated row when the threshold is 0 or unset) and *passed*. The JSON written by :func:`write_dqd_json`
has the shape of DQD's ``executeDqChecks`` output (``startTimestamp``, ``endTimestamp``, ``executionTime``,
``CheckResults``, ``Metadata``, ``Overview``) with DQD's camelCase keys, so DQD's own viewer can read it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

CheckStatus = Literal["passed", "failed", "not_applicable", "error"]
STATUSES: tuple[CheckStatus, ...] = ("passed", "failed", "not_applicable", "error")


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one DQD check, with DQD's result fields (snake case here, camelCase in the JSON)."""

    check_id: str
    check_name: str
    check_level: str
    check_description: str
    cdm_table_name: str
    cdm_field_name: str | None
    concept_id: str | None
    unit_concept_id: str | None
    context: str
    category: str
    subcategory: str
    severity: str
    sql_file: str
    status: CheckStatus
    num_violated_rows: int | None = None
    pct_violated_rows: float | None = None
    num_denominator_rows: int | None = None
    threshold_value: float | None = None
    notes_value: str | None = None
    not_applicable_reason: str | None = None
    error: str | None = None
    execution_time: str | None = None
    query_text: str | None = None
    custom: bool = False

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dqd(self) -> dict[str, Any]:
        """This result as one element of DQD's ``CheckResults`` array."""
        return {
            "numViolatedRows": self.num_violated_rows,
            "pctViolatedRows": self.pct_violated_rows,
            "numDenominatorRows": self.num_denominator_rows,
            "executionTime": self.execution_time,
            "queryText": self.query_text,
            "checkName": self.check_name,
            "checkLevel": self.check_level,
            "checkDescription": self.check_description,
            "cdmTableName": self.cdm_table_name,
            "cdmFieldName": self.cdm_field_name,
            "conceptId": self.concept_id,
            "unitConceptId": self.unit_concept_id,
            "sqlFile": self.sql_file,
            "category": self.category,
            "subcategory": self.subcategory or None,
            "context": self.context,
            "severity": self.severity,
            "warning": None,
            "error": self.error,
            "checkId": self.check_id,
            "failed": int(self.status == "failed"),
            "passed": int(self.status == "passed"),
            "isError": int(self.status == "error"),
            "notApplicable": int(self.status == "not_applicable"),
            "notApplicableReason": self.not_applicable_reason,
            "thresholdValue": self.threshold_value,
            "notesValue": self.notes_value,
        }


@dataclass(frozen=True)
class QualityResults:
    """All check results of one run over a workspace's CDM."""

    start: datetime
    end: datetime
    results: tuple[CheckResult, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def status_counts(self) -> dict[CheckStatus, int]:
        """Number of checks per status (every status present, zero if none)."""
        counts = Counter(r.status for r in self.results)
        return {s: counts.get(s, 0) for s in STATUSES}

    def by_id(self, check_id: str) -> CheckResult:
        """The result with DQD's check id ``check_id`` (e.g. ``field_isrequired_person_person_id``).

        Raises:
            KeyError: if no check of this run has that id.
        """
        for result in self.results:
            if result.check_id == check_id:
                return result
        raise KeyError(f"no check {check_id!r} in these results")

    def overview(self) -> dict[str, Any]:
        """DQD's ``Overview`` (``R/summarizeResults.R``), with its definitions: countPassed is everything not
        failed, and the percentages are over passed plus failed."""
        total = len(self.results)
        failed = sum(r.status == "failed" for r in self.results)
        errors = sum(r.status == "error" for r in self.results)
        passed = total - failed
        out: dict[str, Any] = {
            "countTotal": total,
            "countPassed": passed,
            "countErrorFailed": errors,
            "countThresholdFailed": failed,
            "countOverallFailed": failed,
            "percentPassed": round(passed / (passed + failed) * 100, 2) if passed + failed else 0,
            "percentFailed": round(failed / (passed + failed) * 100, 2) if passed + failed else 0,
        }
        for category in ("Plausibility", "Conformance", "Completeness"):
            out[f"countTotal{category}"] = sum(r.category == category for r in self.results)
        for category in ("Plausibility", "Conformance", "Completeness"):
            out[f"countFailed{category}"] = sum(r.category == category and r.failed for r in self.results)
        for category in ("Plausibility", "Conformance", "Completeness"):
            out[f"countPassed{category}"] = sum(r.category == category and r.passed for r in self.results)
        return out

    def to_dqd(self) -> dict[str, Any]:
        """The whole run in DQD's results-JSON shape."""
        seconds = self.seconds
        return {
            "startTimestamp": self.start.strftime("%Y-%m-%d %H:%M:%S"),
            "endTimestamp": self.end.strftime("%Y-%m-%d %H:%M:%S"),
            "executionTime": f"{seconds:.0f} secs",
            "executionTimeSeconds": seconds,
            "CheckResults": [r.to_dqd() for r in self.results],
            "Metadata": [dict(self.metadata)],
            "Overview": self.overview(),
        }


def write_dqd_json(results: QualityResults, path: Path) -> Path:
    """Write ``results`` as DQD's results JSON (readable by DQD's Shiny viewer) and return the path.

    Args:
        results: The results of :func:`medspace.quality.run_checks`.
        path: The file to write; its folder is created if needed.

    Returns:
        ``path``.

    Example:
        >>> from datetime import datetime
        >>> import tempfile
        >>> empty = QualityResults(datetime(2024, 1, 1), datetime(2024, 1, 1, 0, 0, 5), ())
        >>> out = write_dqd_json(empty, Path(tempfile.mkdtemp()) / "dqd.json")
        >>> json.loads(out.read_text())["executionTime"]
        '5 secs'
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results.to_dqd(), indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    tmp.replace(path)
    return path
