"""`run_quality` end to end on a small hospital: the files it writes, the label's scores recomputed from the
written results by a separate computation, and a report a person can read offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medspace.cdm import build_cdm
from medspace.link import link_workspace
from medspace.quality import run_quality
from medspace.sources import stage_site
from medspace.synth import HospitalConfig, generate_hospital
from progress_calls import ProgressRecorder, assert_honest_progress


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("quality-ws")
    generate_hospital(HospitalConfig(patients=1_200, seed=6), ws / "hospital")
    stage_site(None, ws / "hospital", ws)
    link_workspace(ws)
    build_cdm(ws)
    run_quality(ws)
    return ws


def test_writes_every_result_file(workspace: Path) -> None:
    names = sorted(p.name for p in (workspace / "quality").iterdir())
    expected = [
        "cross_system.json",
        "cross_system_details.parquet",
        "dqd_results.json",
        "kpi_records.parquet",
        "kpis.json",
        "mapping_coverage.json",
    ]
    assert names == sorted([*expected, "label.json", "manifest.json", "report.html"])


def test_label_scores_recomputed_from_the_written_results(workspace: Path) -> None:
    """DQD's own JSON and the cross-system summary give the DQD and cross-system part of each dimension."""
    label = json.loads((workspace / "quality" / "label.json").read_text(encoding="utf-8"))
    dqd = json.loads((workspace / "quality" / "dqd_results.json").read_text(encoding="utf-8"))
    by_category = {"Conformance": "normativity", "Completeness": "completeness", "Plausibility": "accuracy"}
    dqd_failed = {d: 0 for d in by_category.values()}
    dqd_passed = {d: 0 for d in by_category.values()}
    for r in dqd["CheckResults"]:
        if r["notApplicable"]:
            continue
        target = dqd_failed if (r["failed"] or r["isError"]) else dqd_passed
        target[by_category[r["category"]]] += 1
    dimensions = {d["dimension"]: d for d in label["dimensions"]}
    for dim in by_category.values():
        # the label adds the staging, link and cross-system checks of the same dimension on top of DQD's
        assert dimensions[dim]["passed"] >= dqd_passed[dim]
        assert dimensions[dim]["failed"] + dimensions[dim]["errors"] >= dqd_failed[dim]
    for d in label["dimensions"]:
        applicable = d["passed"] + d["failed"] + d["errors"]
        if applicable:
            assert d["score"] == pytest.approx(round(100 * d["passed"] / applicable, 1))
    total_passed = sum(d["passed"] for d in label["dimensions"])
    total = sum(d["passed"] + d["failed"] + d["errors"] for d in label["dimensions"])
    assert label["overall"] == pytest.approx(round(100 * total_passed / total, 1))


def test_kpis_in_the_report_are_the_true_kpis(workspace: Path) -> None:
    kpis = json.loads((workspace / "quality" / "kpis.json").read_text(encoding="utf-8"))["kpis"]
    truth = json.loads((workspace / "hospital" / "truth" / "kpis.json").read_text(encoding="utf-8"))
    for name in ("outpatient_visits", "discharges", "operations", "bed_days"):
        assert kpis[name]["value"] == truth[name]
    html = (workspace / "quality" / "report.html").read_text(encoding="utf-8")
    assert f"{truth['discharges']:,}" in html


def test_the_report_is_self_contained(workspace: Path) -> None:
    html = (workspace / "quality" / "report.html").read_text(encoding="utf-8")
    assert "<svg" in html
    for remote in ("http://", "https://", "<script"):
        assert remote not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "规范性" in html and "Reconciled KPIs" in html


def test_progress_counts_every_check_up_to_a_fixed_total(workspace: Path) -> None:
    recorder = ProgressRecorder()
    run_quality(workspace, progress=recorder)
    assert_honest_progress(recorder.calls)
    # one unit per DQD check at least: the total says how much work there is, not four coarse steps
    total = recorder.calls[-1][1]
    assert total > len(json.loads((workspace / "quality" / "dqd_results.json").read_text())["CheckResults"])
