"""Lineage, the workspace lock and atomic swaps from the command line: stages from two runs are not mixed,
two commands never write one workspace at once, and `kill -9` at any moment of `medspace run` leaves every
stage's last complete output readable and the next run cleans up."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from medspace.cli import app
from medspace.core import CATALOG, RUNS, read_holder, read_lineage

KEY_ENV = {"MEDSPACE_PRODUCT_KEY": "7e" * 32}
STAGES = ("staging", "link", "cdm", "quality")


def _synth(out: Path, patients: int, seed: int) -> Path:
    made = CliRunner().invoke(
        app, ["synth", "--patients", str(patients), "--seed", str(seed), "--out", str(out), "--quiet"]
    )
    assert made.exit_code == 0, made.output
    return out


def _cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, **KEY_ENV, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-m", "medspace.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_a_cdm_over_a_link_of_an_earlier_ingest_is_refused(tmp_path: Path) -> None:
    runner = CliRunner()
    ws = str(tmp_path / "ws")
    first = _synth(tmp_path / "h1", 300, 1)
    for args in (["ingest", str(first)], ["link"], ["cdm"]):
        done = runner.invoke(app, [*args, "--workspace", ws])
        assert done.exit_code == 0, done.output
    second = _synth(tmp_path / "h2", 300, 11)  # another 300-patient export
    assert runner.invoke(app, ["ingest", str(second), "--workspace", ws]).exit_code == 0
    refused = runner.invoke(app, ["cdm", "--workspace", ws])
    assert refused.exit_code == 1
    assert "link was built from an earlier ingest" in refused.output
    assert "run `medspace link` again" in refused.output
    assert "Traceback" not in refused.output
    status = runner.invoke(app, ["status", "--workspace", ws, "--json"])
    assert status.exit_code == 0, status.output
    rows = {r["stage"]: r for r in json.loads(status.output)["stages"]}
    assert not rows["staging"]["stale"] and rows["link"]["stale"] and rows["cdm"]["stale"]
    assert "earlier ingest" in rows["link"]["reason"]
    assert rows["quality"]["present"] is False
    # the refused cdm left the previous one as it was
    cdm = read_lineage(tmp_path / "ws" / "cdm")
    assert cdm is not None and cdm.run_id == rows["cdm"]["run_id"]
    table = runner.invoke(app, ["status", "--workspace", ws])
    assert "STALE" in table.output and "current" in table.output


def test_a_second_command_on_a_busy_workspace_is_refused_at_once(tmp_path: Path) -> None:
    hold = (
        "import sys, time\nfrom medspace.core import workspace_lock\n"
        "with workspace_lock(sys.argv[1], 'medspace run'):\n"
        "    print('held', flush=True)\n    time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        began = time.monotonic()
        refused = CliRunner().invoke(app, ["ingest", str(tmp_path / "h"), "--workspace", str(tmp_path)])
        assert time.monotonic() - began < 5
        assert refused.exit_code == 75
        assert "in use by `medspace run`" in refused.output and f"pid {holder.pid}" in refused.output
    finally:
        holder.kill()
        holder.wait()


def _check_readable(ws: Path) -> None:
    """Every stage present is complete: its manifest (with lineage) loads and its Parquet files read; the
    catalogue opens and each of its views reads; nothing reads a run folder."""
    releases = (
        [p for p in (ws / "deid").iterdir() if not p.name.startswith(".")] if (ws / "deid").is_dir() else []
    )
    for folder in [*(ws / s for s in STAGES), *releases]:
        if not folder.exists():
            continue
        assert read_lineage(folder) is not None, folder
        json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        for parquet in folder.rglob("*.parquet"):
            pq.read_table(parquet)
    for parquet in (ws / "registry").rglob("*.parquet") if (ws / "registry").exists() else []:
        pq.read_table(parquet)
    catalogue = ws / CATALOG
    if catalogue.exists():
        with duckdb.connect(str(catalogue), read_only=True) as con:
            views = con.execute(
                "select schema_name, view_name, sql from duckdb_views() where not internal"
            ).fetchall()
            for schema, view, sql in views:
                assert f"/{RUNS}/" not in sql
                con.execute(f'select count(*) from "{schema}"."{view}"').fetchone()


@pytest.mark.slow
def test_kill_9_at_random_moments_leaves_every_stage_readable(tmp_path: Path) -> None:
    hospital = _synth(tmp_path / "h", 200, 4)
    ws = tmp_path / "ws"
    run = ["run", str(hospital), "--workspace", str(ws)]
    began = time.monotonic()
    full = _cli(*run)
    assert full.wait(timeout=600) == 0, full.stderr.read() if full.stderr else ""
    seconds = time.monotonic() - began
    _check_readable(ws)
    rng = random.Random(20250301)
    for i, moment in enumerate(sorted(rng.uniform(0.5, 0.95 * seconds) for _ in range(4))):
        victim = _cli(*run)
        time.sleep(moment)
        if i == 0:  # while it runs, a second run is refused at once, naming the first
            deadline = time.monotonic() + 30
            while (h := read_holder(ws)) is None or h.pid != victim.pid:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            second = CliRunner().invoke(app, run, env=KEY_ENV)
            assert second.exit_code == 75 and f"pid {victim.pid}" in second.output
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        _check_readable(ws)
    last = _cli(*run)
    assert last.wait(timeout=600) == 0, last.stderr.read() if last.stderr else ""
    _check_readable(ws)
    # the person registry is a pointed folder too (it has no lineage of its own: link's names its run)
    pointed = {p.resolve() for p in [*(ws / s for s in (*STAGES, "registry")), *(ws / "deid").iterdir()]}
    assert {p.resolve() for p in (ws / RUNS).iterdir()} == pointed  # leftovers removed, scratch gone
    for stage in STAGES:
        assert os.readlink(ws / stage).startswith(f"{RUNS}/{stage}-")
    hidden = [p.name for p in [*ws.iterdir(), *(ws / "deid").iterdir()] if p.name.startswith(".")]
    assert sorted(hidden) == [".lock", RUNS]
