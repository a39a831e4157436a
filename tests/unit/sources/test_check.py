"""`check_site` and the command line around it: a site mapping is checked against the real files (headers
only) before anything runs; `ingest` fails loudly on an unreadable file or too much quarantine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medspace.cli import app
from medspace.sources import check_site

runner = CliRunner()


@pytest.fixture
def exports(hospital: Path, tmp_path: Path) -> Path:
    out = tmp_path / "exports"
    shutil.copytree(hospital, out, ignore=shutil.ignore_patterns("truth"))
    return out


def test_the_synthetic_hospital_fits_its_site(hospital: Path) -> None:
    check = check_site("synthetic-hospital", hospital)
    assert check.ok, check.errors
    empty = [t for t in check.model_tables if t.empty]
    assert [t.table for t in empty] == ["medication_dispense"]
    assert empty[0].disables
    patients = next(t for t in check.raw_tables if (t.system, t.table) == ("his", "patients"))
    assert [f.file for f in patients.found] == ["his/patients.csv"] and not patients.missing_columns
    settlements = next(t for t in check.raw_tables if t.table == "settlements")
    assert len(settlements.found) == 12
    registrations = next(t for t in check.raw_tables if t.table == "registrations")
    assert registrations.unmapped_fields == ["name"]
    lab = next(t for t in check.model_tables if t.table == "lab_result")
    assert "range_low" in lab.unmapped_columns and lab.maps == ["lis.results"]


def test_a_missing_column_and_a_missing_file_are_named(exports: Path) -> None:
    path = exports / "his" / "patients.csv"
    text = path.read_text(encoding="utf-8").splitlines(keepends=True)
    text[0] = text[0].replace('"XB"', '"SEX"')
    path.write_text("".join(text), encoding="utf-8")
    shutil.rmtree(exports / "surgery")
    (exports / "ris" / "exams.csv").write_bytes(b"")
    check = check_site("synthetic-hospital", exports)
    assert "ris/exams.csv: the file is empty or has no header line" in check.errors
    assert not check.ok
    assert "his/patients.csv: missing column(s) XB" in check.errors
    assert any("surgery.operations: no file matches" in e for e in check.errors)
    patients = next(t for t in check.raw_tables if t.table == "patients")
    assert patients.found[0].unused == ["SEX"]


def test_site_check_command_exits_non_zero_on_a_missing_column(exports: Path, hospital: Path) -> None:
    ok = runner.invoke(app, ["site", "check", "synthetic-hospital", str(hospital)])
    assert ok.exit_code == 0, ok.output
    assert "medication_dispense" in ok.output and "fits the files" in ok.output
    path = exports / "lis" / "results.csv"
    path.write_text(path.read_text(encoding="utf-8").replace('"Unit"', '"Units"', 1), encoding="utf-8")
    bad = runner.invoke(app, ["site", "check", "synthetic-hospital", str(exports)])
    assert bad.exit_code == 1
    assert "lis/results.csv: missing column(s) Unit" in bad.output


def test_ingest_takes_a_site_file_and_fails_above_the_quarantine_threshold(
    exports: Path, tmp_path: Path
) -> None:
    site = Path(__file__).parent / "data" / "toy-clinic" / "site.yaml"
    toy = runner.invoke(
        app,
        ["ingest", str(site.parent / "exports"), "--site", str(site), "--workspace", str(tmp_path / "toy")],
    )
    # the toy clinic quarantines 4 of its rows on purpose: fine without a threshold, not with 1%
    assert toy.exit_code == 0, toy.output
    assert (tmp_path / "toy" / "staging" / "site.json").is_file()
    strict = runner.invoke(
        app,
        [
            "ingest",
            str(site.parent / "exports"),
            "--site",
            str(site),
            "--workspace",
            str(tmp_path / "toy"),
            "--max-quarantine",
            "1%",
        ],
    )
    assert strict.exit_code == 1
    assert "clinic.patients" in strict.output and "max_quarantine" in strict.output


def test_ingest_exits_non_zero_when_a_whole_file_is_unreadable(exports: Path, tmp_path: Path) -> None:
    path = exports / "ris" / "exams.csv"
    path.write_text(path.read_text(encoding="gb18030"), encoding="utf-8")  # declared gb18030
    result = runner.invoke(app, ["ingest", str(exports), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 1
    assert "ris/exams.csv" in result.output and "unreadable_file" in result.output


def test_site_check_refuses_a_missing_folder_and_an_unknown_site(tmp_path: Path) -> None:
    nowhere = runner.invoke(app, ["site", "check", "synthetic-hospital", str(tmp_path / "nowhere")])
    assert nowhere.exit_code == 1 and "export folder" in nowhere.output
    unknown = runner.invoke(app, ["site", "check", "no-such-site", str(tmp_path)])
    assert unknown.exit_code == 1 and "no shipped site" in unknown.output
