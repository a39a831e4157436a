"""The de-identification report of one dataset: what was done to every column and what it achieved.

GB/T 37964-2019 asks that de-identification be verified and approved before release; this report is the
evidence the approver reads. It lists each column's role and treatment and who decided it (the profile or
the automatic proposal), the hierarchy level chosen for each quasi-identifier, rows suppressed, the k, l and
t achieved, the three re-identification risks before and after, the utility lost, and the identifiers
replaced in free text. It is written as JSON (for the product stage and auditors) and as one self-contained
HTML page. It never contains a patient value.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from medspace.privacy._anonymise import PrivacyMeasures, Utility
from medspace.privacy._risk import ReidentificationRisk


@dataclass(frozen=True)
class ColumnEntry:
    """One column's fate."""

    table: str
    column: str
    role: str
    kind: str
    action: str
    decided_by: str
    rows_changed: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class QuasiIdentifierEntry:
    """The generalisation chosen for one quasi-identifier."""

    table: str
    column: str
    hierarchy: str
    level: int
    height: int
    distinct_before: int
    distinct_after: int


@dataclass(frozen=True)
class ModelEntry:
    """One privacy model of the profile and whether the release meets it."""

    model: str
    parameters: dict[str, Any]
    applies_to: list[str]
    satisfied: bool


@dataclass(frozen=True)
class TableEntry:
    """Rows of one table before and after."""

    table: str
    rows_in: int
    rows_out: int


@dataclass(frozen=True)
class DeidReport:
    """Everything the approver of a release needs, and nothing identifying."""

    dataset: str
    profile: str
    profile_title: str
    standard: str
    key_fingerprint: str
    created: str
    unit: str  # what a row of the anonymised table is: "row" for a table, "person" for a CDM extract
    rows_in: int
    rows_released: int
    rows_suppressed: int
    suppression_limit: float
    columns: list[ColumnEntry]
    quasi_identifiers: list[QuasiIdentifierEntry]
    models: list[ModelEntry]
    measures: PrivacyMeasures
    risk_before: ReidentificationRisk
    risk_after: ReidentificationRisk
    utility: Utility
    lattice_size: int
    nodes_checked: int
    search_seconds: float
    tables: list[TableEntry] = field(default_factory=list)
    text_identifiers: dict[str, int] = field(default_factory=dict)
    texts_scrubbed: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, indent=2) + "\n"

    def write(self, folder: Path) -> None:
        """Write ``deid_report.json`` and ``deid_report.html`` into ``folder``."""
        (folder / "deid_report.json").write_text(self.to_json(), encoding="utf-8")
        (folder / "deid_report.html").write_text(render_report(self), encoding="utf-8")


@cache
def _template() -> Any:
    import jinja2

    text = resources.files("medspace.privacy").joinpath("data/report.html.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(text)


def _pct(value: float) -> str:
    return f"{value:.2%}"


def render_report(report: DeidReport) -> str:
    """The report as one self-contained HTML page (no scripts, no network)."""
    return str(_template().render(r=report, pct=_pct))
