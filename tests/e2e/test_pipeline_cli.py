"""The whole data pipeline from the command line: synth, then `medspace run` (ingest, link, cdm, quality,
deid)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from medspace.cli import app

# `medspace run` ends with de-identification by the level 3 profile, which needs the holder's product key.
KEY_ENV = {"MEDSPACE_PRODUCT_KEY": "7e" * 32}


def test_run_builds_a_cdm_from_a_fresh_hospital_and_rerunning_is_safe(tmp_path: Path) -> None:
    runner = CliRunner()
    made = runner.invoke(
        app, ["synth", "--patients", "400", "--seed", "2", "--out", str(tmp_path / "h"), "--quiet"]
    )
    assert made.exit_code == 0, made.output
    for _ in range(2):  # re-running replaces every stage's output as a whole
        result = runner.invoke(
            app, ["run", str(tmp_path / "h"), "--workspace", str(tmp_path / "ws")], env=KEY_ENV
        )
        assert result.exit_code == 0, result.output
        assert "measurement" in result.output
    manifest = json.loads((tmp_path / "ws/cdm/manifest.json").read_text(encoding="utf-8"))
    assert manifest["tables"]["person"] > 0
    written = sorted(p.name for p in (tmp_path / "ws").iterdir())
    assert written == [".lock", ".runs", "cdm", "deid", "link", "medspace.duckdb", "quality", "staging"]
    # each stage is a pointer to its run; the runs replaced by the second run are gone, and so is the scratch
    pointed = {(tmp_path / "ws" / s).resolve() for s in ("cdm", "link", "quality", "staging")}
    pointed.add((tmp_path / "ws/deid/gbt39725-level3").resolve())
    # (this test runs the commands in its own process, whose scratch folder lives as long as it does)
    runs = {p.resolve() for p in (tmp_path / "ws/.runs").iterdir()}
    assert {p for p in runs if not p.name.startswith(f"scratch-{os.getpid()}-")} == pointed
    assert (tmp_path / "ws/deid/gbt39725-level3/deid_report.html").exists()


def test_link_without_staging_fails_with_a_clear_message(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["link", "--workspace", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert "run `medspace ingest` first" in result.output
    assert "Traceback" not in result.output


def test_unknown_engine_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["link", "--workspace", str(tmp_path), "--engine", "oracle"])
    assert result.exit_code == 1
    assert "unknown engine" in result.output


def test_the_workspace_can_be_queried_with_duckdb(tmp_path: Path) -> None:
    import duckdb

    runner = CliRunner()
    runner.invoke(app, ["synth", "--patients", "200", "--seed", "3", "--out", str(tmp_path / "h"), "--quiet"])
    ran = runner.invoke(app, ["run", str(tmp_path / "h"), "--workspace", str(tmp_path / "ws")], env=KEY_ENV)
    assert ran.exit_code == 0, ran.output
    with duckdb.connect(str(tmp_path / "ws" / "medspace.duckdb"), read_only=True) as con:
        persons = con.execute("select count(*) from cdm.person").fetchone()
        linked = con.execute("select count(distinct person_id) from link.person_records").fetchone()
        staged = con.execute("select count(*) from staging.lab_result").fetchone()
        released = con.execute('select count(*) from deid."gbt39725-level3_person"').fetchone()
    assert persons is not None and linked is not None and staged is not None and released is not None
    assert 0 < released[0] <= persons[0]
    assert persons[0] == linked[0] > 0
    assert staged[0] > 0
