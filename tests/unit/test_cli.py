"""The command line: help text and the `synth` command's wiring."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from medspace.cli import app

runner = CliRunner()


def test_help_lists_synth() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "synth" in result.output


def test_synth_help_lists_options() -> None:
    result = runner.invoke(app, ["synth", "--help"])
    assert result.exit_code == 0
    for option in ("--patients", "--seed", "--out", "--years", "--workers", "--quiet"):
        assert option in result.output


def test_synth_refuses_zero_patients(tmp_path: Path) -> None:
    result = runner.invoke(app, ["synth", "--patients", "0", "--seed", "1", "--out", str(tmp_path)])
    assert result.exit_code == 2


def test_synth_writes_a_small_hospital(tmp_path: Path) -> None:
    pytest.importorskip("medspace.synth", reason="the synth stage has not landed yet")
    out = tmp_path / "hospital"
    result = runner.invoke(app, ["synth", "--patients", "20", "--seed", "1", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "files written" in result.output
    assert "injected defects" in result.output
    assert any(out.rglob("*"))


def test_synth_writes_the_integrated_profile_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    out = tmp_path / "integrated"
    args = ["synth", "--patients", "30", "--seed", "1", "--out", str(out), "--quiet", "--profile"]
    result = runner.invoke(app, [*args, "integrated"])
    assert result.exit_code == 0, result.output
    assert (out / "platform/Patient.ndjson").exists() and not (out / "lis").exists()
    result = runner.invoke(app, [*args, "regional"])
    assert result.exit_code != 0
    assert "profile" in result.output
