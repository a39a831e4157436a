"""KPI reconciliation against the synthetic hospital's true KPIs (domain.md §2): the reconciled values equal
the truth exactly, and every source's ledger adds up to its difference, record by record."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from medspace.link import link_workspace
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
    link_workspace(ws)  # settlements reach their stays through the visits link places them in
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


def test_every_difference_is_accounted_for_record_by_record(workspace: Path) -> None:
    result = reconcile_kpis(workspace)
    sources = [s for k in result.kpis.values() for s in k.sources]
    assert len(sources) >= 6
    records = result.records.to_pylist()
    for source in sources:
        assert sum(source.breakdown.values()) == pytest.approx(source.difference, abs=0.05), source
        mine = [r for r in records if (r["source"], r["counts"]) == (source.source, source.counts)]
        for reason in source.reasons:
            lines = [r for r in mine if r["rule"] == reason.rule]
            assert len(lines) == reason.records
            assert sum(r["amount"] for r in lines) == pytest.approx(reason.amount, abs=0.05)
            assert reason.examples == sorted(r["record_key"] or r["reference_key"] for r in lines)[:20]
        lost = [r for r in mine if r["outcome"] == "unexplained"]
        assert len(lost) == source.unexplained.records
    his = result.kpis["outpatient_visits"].sources[0]
    assert his.difference > 0  # HIS registrations include refunds, cancellations, emergencies, check-ups
    # refunds recounted from the staged rows with plain DuckDB SQL
    start, end = result.period_start, result.period_end
    with duckdb.connect() as con:
        refunded = con.execute(
            "SELECT count(*) FROM read_parquet($p) WHERE status = 'refunded' AND encounter_type IN "
            "('outpatient', 'emergency', 'checkup') AND start_at >= $s AND start_at < $e AND system = 'his'",
            {"p": str(workspace / "staging" / "encounter.parquet"), "s": start, "e": end},
        ).fetchone()
    assert refunded is not None and his.breakdown["registration refunded (退号)"] == refunded[0] > 0


def test_explained_counts_match_the_injected_events(workspace: Path) -> None:
    """The reasons are not free parameters: recalled discharges, sessions and cost mismatches match the
    truth, and the stays the HIS export lost are its unexplained records."""
    result = reconcile_kpis(workspace)
    truth = _truth(workspace, "kpis.json")
    his = next(s for s in result.kpis["discharges"].sources if s.source == "his/encounter")
    recalled = his.breakdown["recalled discharge (出院召回): a continuation row of the same stay"]
    assert recalled == truth["recalled_discharges"]
    sessions = next(s for s in result.kpis["operated_discharges"].sources if s.counts == "theatre sessions")
    assert sessions.value == truth["operation_sessions"]
    settled = next(s for s in result.kpis["inpatient_cost"].sources if s.source == "insurance/settlement")
    assert settled.unexplained.records == _truth_defects(workspace, "settlement_cost_mismatch")
    with (workspace / "hospital/truth/withheld/his/inpatient_admissions.csv").open(encoding="utf-8") as f:
        withheld = {f"{r['ZYH']}-{r['ZYCS']}" for r in csv.DictReader(f)}
    lost = {
        r["reference_key"]
        for r in result.records.to_pylist()
        if r["source"] == "his/encounter" and r["kpi"] == "discharges" and r["outcome"] == "unexplained"
    }
    assert lost <= withheld and len(lost) == his.unexplained.records
    written = json.loads(result.to_json())
    assert written["kpis"]["discharges"]["value"] == truth["discharges"]


def _truth_defects(ws: Path, kind: str) -> int:
    rows = pq.read_table(ws / "hospital" / "truth" / "defects.parquet").to_pylist()
    return sum(r["kind"] == kind for r in rows)
