"""De-identifying a whole OMOP CDM extract and single tables by the shipped profiles, checked from outside:
pycanon measures k, dates are compared person by person with the originals, and the synthetic hospital's
ground truth says which identifiers were in the notes."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from pycanon import anonymity
from typer.testing import CliRunner

from medspace.cdm import build_cdm
from medspace.cli import app
from medspace.core import InputError, check_resident_id, make_resident_id
from medspace.link import link_workspace
from medspace.privacy import (
    KEY_VARIABLE,
    KAnonymity,
    NoSolutionError,
    PrivacySettings,
    ProductKey,
    deidentify_file,
    deidentify_workspace,
    load_profile,
)
from medspace.sources import DEFAULT_SITE, stage_site
from medspace.synth import HospitalConfig, generate_hospital
from progress_calls import ProgressRecorder, assert_honest_progress

KEY = ProductKey.from_hex("5a" * 32)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("deid-ws")
    generate_hospital(HospitalConfig(patients=600, seed=11, chunk_patients=600), ws / "hospital")
    stage_site(DEFAULT_SITE, ws / "hospital", ws)
    link_workspace(ws)
    build_cdm(ws)
    return ws


@pytest.fixture(scope="module")
def level3(workspace: Path) -> Path:
    return deidentify_workspace(workspace, load_profile("gbt39725-level3"), KEY).folder


def _read(folder: Path, name: str) -> pa.Table:
    return pq.read_table(folder / f"{name}.parquet")


def test_every_cdm_table_is_released_and_suppressed_persons_are_gone_everywhere(
    workspace: Path, level3: Path
) -> None:
    report = json.loads((level3 / "deid_report.json").read_text(encoding="utf-8"))
    originals = {p.stem for p in (workspace / "cdm").glob("*.parquet")}
    assert {p.stem for p in level3.glob("*.parquet")} == originals
    persons = set(_read(level3, "person").column("person_id").to_pylist())
    assert len(persons) == report["rows_released"] == report["rows_in"] - report["rows_suppressed"]
    for name in ("visit_occurrence", "condition_occurrence", "measurement", "note"):
        assert set(_read(level3, name).column("person_id").to_pylist()) <= persons
    original_ids = set(_read(workspace / "cdm", "person").column("person_id").to_pylist())
    assert not persons & original_ids  # every person_id is a keyed pseudonym
    assert {KEY.pseudonym_int(str(p)) for p in original_ids} >= persons


def test_pycanon_measures_the_k_the_report_claims(level3: Path) -> None:
    report = json.loads((level3 / "deid_report.json").read_text(encoding="utf-8"))
    person = _read(level3, "person").to_pandas()
    members = [
        c
        for q in report["quasi_identifiers"]
        for c in q["column"].split("+")  # a composite quasi-identifier names its columns joined by +
    ]
    data = person[members].astype(str)
    k = anonymity.k_anonymity(data, members)
    assert k == report["measures"]["k"] >= 5
    sizes = data.value_counts()
    assert report["risk_after"]["prosecutor_highest"] == pytest.approx(1 / sizes.min())
    assert report["risk_after"]["prosecutor_average"] == pytest.approx(len(sizes) / len(data))
    assert all(m["satisfied"] for m in report["models"])


def test_dates_move_by_one_offset_per_person_in_every_table(workspace: Path, level3: Path) -> None:
    pseudonym = {
        KEY.pseudonym_int(str(p)): p
        for p in _read(workspace / "cdm", "person").column("person_id").to_pylist()
    }
    shifts: dict[int, set[int]] = defaultdict(set)
    for name, key_column, date_column in (
        ("visit_occurrence", "visit_occurrence_id", "visit_start_date"),
        ("condition_occurrence", "condition_occurrence_id", "condition_start_date"),
        ("measurement", "measurement_id", "measurement_date"),
    ):
        before = _read(workspace / "cdm", name).select([key_column, "person_id", date_column]).to_pylist()
        after = _read(level3, name).select([key_column, "person_id", date_column]).to_pylist()
        by_key = {KEY.pseudonym_int(str(r[key_column])): r for r in before}
        for row in after:
            original = by_key[row[key_column]]
            assert pseudonym[row["person_id"]] == original["person_id"]
            shifts[original["person_id"]].add((row[date_column] - original[date_column]).days)
    assert shifts
    for days in shifts.values():
        assert len(days) == 1  # one offset per person across tables: every interval is kept
        (offset,) = days
        assert 1 <= abs(offset) <= 365
    assert len({d for days in shifts.values() for d in days}) > 1  # and persons move differently


def test_identifiers_written_in_the_notes_do_not_survive(workspace: Path, level3: Path) -> None:
    truth = pq.read_table(workspace / "hospital" / "truth" / "note_phi.parquet")
    released = "\n".join(t for t in _read(level3, "note").column("note_text").to_pylist() if t)
    assert released
    for kind in ("ID", "PHONE", "HOSPITAL_NO", "ADDRESS"):
        values = set(truth.filter(pc.equal(truth["type"], kind)).column("text").to_pylist())
        assert values
        left = [v for v in values if v in released]
        assert not left, f"{len(left)} {kind} values remain in the released notes"
    report = json.loads((level3 / "deid_report.json").read_text(encoding="utf-8"))
    assert report["texts_scrubbed"] > 0 and report["text_identifiers"]["ID"] > 0


def test_the_report_carries_no_patient_values(workspace: Path, level3: Path) -> None:
    text = (level3 / "deid_report.json").read_text(encoding="utf-8") + (
        level3 / "deid_report.html"
    ).read_text(encoding="utf-8")
    truth = pq.read_table(workspace / "hospital" / "truth" / "note_phi.parquet")
    for kind in ("ID", "PHONE", "HOSPITAL_NO"):
        for value in truth.filter(pc.equal(truth["type"], kind)).column("text").to_pylist()[:200]:
            assert value not in text
    assert "Re-identification risk" in text and "k_anonymity" in text


def test_a_run_that_cannot_meet_its_models_leaves_the_last_release(workspace: Path, level3: Path) -> None:
    before = {p.name: p.read_bytes() for p in level3.iterdir()}
    level3_profile = load_profile("gbt39725-level3")
    impossible = level3_profile.model_copy(
        update={"privacy": PrivacySettings(models=(KAnonymity(k=100_000),), suppression_limit=0.0)}
    )
    with pytest.raises(NoSolutionError, match="allow more suppression"):
        deidentify_workspace(workspace, impossible, KEY)
    assert {p.name: p.read_bytes() for p in level3.iterdir()} == before


def test_a_csv_table_by_the_level3_profile(tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(3)
    n = 400
    regions = ["310101", "310104", "320102", "330106"]
    births = [dt.date(1940, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 25_000, n)]
    ids = [
        make_resident_id(str(rng.choice(regions)), b, int(s))
        for b, s in zip(births, rng.integers(0, 999, n), strict=True)
    ]
    table = pa.table(
        {
            "patient_id": [f"P{i:05d}" for i in range(n)],
            "name": rng.choice(["张伟", "王芳", "李娜", "刘洋"], n),
            "resident_id": ids,
            "phone": [f"139{int(x):08d}" for x in rng.integers(0, 10**8, n)],
            "age": rng.integers(1, 100, n),
            "diagnosis": rng.choice(["E11", "I10", "J18"], n),
        }
    )
    path = tmp_path / "his_patients.csv"
    pacsv.write_csv(table, path)
    release = deidentify_file(
        path, load_profile("gbt39725-level3"), KEY, tmp_path / "out", person_column="patient_id"
    )
    out = pq.read_table(tmp_path / "out" / "his_patients.parquet")
    assert not {"name", "resident_id", "phone"} & set(out.column_names)
    assert {"resident_id_region", "resident_id_birth_year", "resident_id_sex"} <= set(out.column_names)
    assert not set(out.column("patient_id").to_pylist()) & set(table.column("patient_id").to_pylist())
    report = release.result.report
    qis = [q.column for q in report.quasi_identifiers]
    k = anonymity.k_anonymity(out.to_pandas()[qis].astype(str), qis)
    assert k == report.measures.k >= 5
    assert report.rows_suppressed <= 0.05 * n
    flat = out.to_pandas().astype(str).to_numpy().ravel().tolist()
    assert not any(check_resident_id(v).valid for v in flat if len(v) == 18)


def test_a_bad_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        deidentify_file(
            tmp_path / "missing.parquet", load_profile("hipaa-safe-harbor"), KEY, tmp_path / "out"
        )
    assert err.value.file == str(tmp_path / "missing.parquet")


def test_cli_needs_the_holders_key_and_then_releases(workspace: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    refused = runner.invoke(app, ["deid", "--workspace", str(workspace)], env={KEY_VARIABLE: ""})
    assert refused.exit_code == 1
    assert "--key-file" in refused.output and "Traceback" not in refused.output
    key_file = tmp_path / "product.key"
    key_file.write_text("5a" * 32)
    out = tmp_path / "release"
    ran = runner.invoke(
        app, ["deid", "--workspace", str(workspace), "--key-file", str(key_file), "--out", str(out)]
    )
    assert ran.exit_code == 0, ran.output
    assert "k (smallest class)" in ran.output and "release:" in ran.output
    assert (out / "deid_report.html").exists()
    hipaa = runner.invoke(
        app,
        [
            "deid",
            "--workspace",
            str(workspace),
            "--profile",
            "hipaa-safe-harbor",
            "--out",
            str(tmp_path / "h"),
        ],
    )
    assert hipaa.exit_code == 0, hipaa.output  # an ephemeral key is made for the run
    person = pd.read_parquet(tmp_path / "h" / "person.parquet")
    assert person["person_id"].notna().all()


def test_cli_plan_shows_each_columns_role_and_writes_nothing(workspace: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in workspace.iterdir())
    shown = CliRunner().invoke(app, ["deid", "--plan", "--workspace", str(workspace)])
    assert shown.exit_code == 0, shown.output
    assert "nothing is written" in shown.output
    assert all(action in shown.output for action in ("pseudonymise", "shift_date", "scrub_text"))
    assert sorted(p.name for p in workspace.iterdir()) == before


def test_progress_counts_each_table_read_treated_and_written(workspace: Path, tmp_path: Path) -> None:
    recorder = ProgressRecorder()
    deidentify_workspace(workspace, load_profile("gbt39725-level3"), KEY, tmp_path / "out", progress=recorder)
    assert_honest_progress(recorder.calls)
    tables = len(list((workspace / "cdm").glob("*.parquet")))
    assert recorder.calls[-1][1] == 3 * tables + 3


def test_progress_of_one_file(tmp_path: Path) -> None:
    path = tmp_path / "visits.csv"
    pacsv.write_csv(pa.table({"patient_id": ["P1", "P2", "P3"], "age": [91, 40, 40]}), path)
    recorder = ProgressRecorder()
    deidentify_file(path, load_profile("hipaa-safe-harbor"), KEY, tmp_path / "out", progress=recorder)
    assert_honest_progress(recorder.calls)
