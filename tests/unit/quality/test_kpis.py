"""KPI reconciliation against the synthetic hospital's true KPIs (domain.md §2): the reconciled values equal
the truth exactly, and every source's difference is fully explained by its reason categories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medspace.quality import reconcile_kpis
from medspace.sources import stage_site
from medspace.synth import HospitalConfig, generate_hospital

COUNTS = ("outpatient_visits", "discharges", "operated_discharges", "operations", "bed_days")
RATIOS = (
    "outpatient_visits_per_discharge",
    "operated_discharge_share",
    "minimally_invasive_share",
    "grade4_share",
    "day_surgery_share",
    "cost_per_discharge",
    "average_length_of_stay",
    "cost_per_outpatient_visit",
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("kpi-ws")
    generate_hospital(HospitalConfig(patients=3_000, seed=11, chunk_patients=1_000), ws / "hospital")
    stage_site(None, ws / "hospital", ws)
    return ws


def _truth(ws: Path, name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((ws / "hospital" / "truth" / name).read_text(encoding="utf-8"))
    return data


def test_reporting_period_is_the_truths(workspace: Path) -> None:
    result = reconcile_kpis(workspace)
    period = _truth(workspace, "manifest.json")["reporting_period"]
    assert isinstance(period, dict)
    found = (result.period_start.isoformat(), result.period_end.isoformat())
    assert found == (period["start"], period["end"])


def test_reconciled_kpis_equal_the_true_kpis(workspace: Path) -> None:
    result = reconcile_kpis(workspace)
    truth = _truth(workspace, "kpis.json")
    for name in COUNTS:
        assert result.kpis[name].value == truth[name], name
    for name in RATIOS:
        assert result.kpis[name].value == pytest.approx(truth[name], abs=1e-6), name
    assert result.kpis["inpatient_cost"].value == pytest.approx(truth["inpatient_cost"], abs=0.005)


def test_every_difference_is_fully_explained(workspace: Path) -> None:
    result = reconcile_kpis(workspace)
    sources = [s for k in result.kpis.values() for s in k.sources]
    assert len(sources) >= 6
    for source in sources:
        assert sum(source.breakdown.values()) == pytest.approx(source.difference, abs=0.005), source
    # a remainder no record-level reason explains is named as such, never under a reason's name
    named = {r for s in sources for r in s.breakdown}
    assert all("remainder" not in r or r == "unexplained remainder" for r in named)
    his = result.kpis["outpatient_visits"].sources[0]
    assert his.difference > 0  # HIS registrations include refunds, cancellations, emergencies, check-ups
    assert his.breakdown["registration refunded (退号)"] > 0


def test_explained_counts_match_the_injected_events(workspace: Path) -> None:
    """The reasons are not free parameters: recalled discharges and lost stays match the truth."""
    result = reconcile_kpis(workspace)
    truth = _truth(workspace, "kpis.json")
    his = next(s for s in result.kpis["discharges"].sources if s.source == "his/encounter")
    recalled = his.breakdown["recalled discharge (出院召回): a continuation row of the same stay"]
    assert recalled == truth["recalled_discharges"]
    sessions = next(
        s for s in result.kpis["operated_discharge_share"].sources if s.counts == "theatre sessions"
    )
    assert sessions.value == truth["operation_sessions"]
    written = json.loads(result.to_json())
    assert written["kpis"]["discharges"]["value"] == truth["discharges"]
