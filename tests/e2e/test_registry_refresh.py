"""A refreshed export keeps every person's id and pseudonym (issue 10 item 1), at every site medspace maps.

An earlier export of a hospital runs through ingest, link, cdm and deid; then the full export is ingested into
the same workspace and run again, as next month's export would be. Every earlier person keeps its person id
and its released pseudonym, the new patients get new ids, and nothing else moves except what the registry
records as a merge, with its evidence.

- The MIMIC-III demo is cut back to an earlier export of itself: every tenth patient is not there yet, and the
  ten latest admissions (with every row that belongs to them) have not happened.
- The synthetic hospital, in both vendor profiles (``tertiary`` and ``integrated``), writes its own earlier
  export (``medspace synth --as-of``). That export differs from the full one in more than missing rows, and
  the ground truth (``truth/``, never read by the pipeline) says how, so each difference is held to account:
  an identity typo the later export corrects (``truth/corrections.csv``) must not move a person, and where
  the typo was in a patient key the record is known by another id afterwards, which must carry the earlier
  record's person; records the earlier export could not link (lab requests or imaging exams synced before
  their visit reached the HIS export, ``orphan_record`` in the truth) are a person of their own at first and
  join their patient once the visit is there, which the registry must record as a merge, with evidence, of
  two persons the truth says are one patient.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from medspace.cli import app
from medspace.privacy import ProductKey
from readers import truth

pytestmark = pytest.mark.slow

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
MIMIC = SHARED / "data" / "mimic-iii-demo"
PRODUCT_KEY = "5a" * 32
KEY_ENV = {"MEDSPACE_PRODUCT_KEY": PRODUCT_KEY}
#: The demo's files the site mapping reads, and which of them carry admissions.
SUBJECT_TABLES = (
    "PATIENTS",
    "ADMISSIONS",
    "ICUSTAYS",
    "TRANSFERS",
    "DIAGNOSES_ICD",
    "PROCEDURES_ICD",
    "PRESCRIPTIONS",
    "LABEVENTS",
    "MICROBIOLOGYEVENTS",
)
LATEST_ADMISSIONS = 10
#: The synthetic hospital: its profile and the site mapping that reads it.
SYNTH_SITES = {"tertiary": "synthetic-hospital", "integrated": "integrated-hospital"}
SYNTH = ["--patients", "350", "--seed", "3"]
AS_OF = "2024-07-01"


@dataclass(frozen=True)
class Run:
    """What one run left in the workspace: each identity record's person, each person's CDM person_id, the
    released (pseudonymised) person_ids and, for a synthetic hospital, each record's true persons."""

    persons: dict[str, str]
    cdm: dict[str, int]
    released: set[int]
    suppressed: int
    true: dict[str, set[str]] = field(default_factory=dict)


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(app, args, env=KEY_ENV)
    assert result.exit_code == 0, f"medspace {' '.join(args)}:\n{result.output}"
    return result.output


def _run(exports: Path, ws: Path, site: str, hospital: Path | None = None) -> Run:
    """ingest -> link -> cdm -> deid of one export into the workspace; what it left there."""
    _invoke(["ingest", "--site", site, str(exports), "--workspace", str(ws)])
    for stage in ("link", "cdm", "deid"):
        _invoke([stage, "--workspace", str(ws)])
    persons = {
        r["record_id"]: r["person_id"]
        for r in pq.read_table(ws / "link" / "person_records.parquet").to_pylist()
    }
    cdm = pq.read_table(ws / "cdm" / "person.parquet", columns=["person_id", "person_source_value"])
    # each release is a pointer (a symlink) to its run folder, which rglob would not follow
    (person,) = [p for release in (ws / "deid").iterdir() if (p := release / "person.parquet").exists()]
    released = set(pq.read_table(person, columns=["person_id"]).column("person_id").to_pylist())
    report = json.loads((person.parent / "deid_report.json").read_text(encoding="utf-8"))
    return Run(
        persons,
        {r["person_source_value"]: r["person_id"] for r in cdm.to_pylist()},
        released,
        report["rows_suppressed"],
        {} if hospital is None else _true_persons(ws, hospital),
    )


def _true_persons(ws: Path, hospital: Path) -> dict[str, set[str]]:
    """Each identity record's true persons: the truth's person of every exported row staged under it."""
    of_row = {(r["file"], r["row"]): r["person_id"] for r in truth(hospital, "records")}
    staged = pq.read_table(
        ws / "staging" / "patient.parquet", columns=["system", "patient_key", "_source_file", "_source_row"]
    )
    result: dict[str, set[str]] = defaultdict(set)
    for r in staged.to_pylist():
        result[f"{r['system']}:{r['patient_key']}"].add(of_row[(r["_source_file"], r["_source_row"])])
    return dict(result)


def _history(ws: Path) -> list[dict[str, object]]:
    return pq.read_table(ws / "registry" / "history.parquet").to_pylist()


def _assert_ids_and_pseudonyms_kept(before: Run, after: Run, history: list[dict[str, object]]) -> set[str]:
    """The guarantees every site gives; returns the ids the second run issued."""
    assert {h["event"] for h in history} <= {"merged"}  # nothing split
    merged = {str(h["other_person_id"]): str(h["person_id"]) for h in history}
    for h in history:
        # the evidence names the records that moved, each the merged person's before and the keeper's now
        evidence = json.loads(str(h["evidence"]))["records"]
        assert evidence and len(evidence) == h["records"], h
        assert all(before.persons[r] == h["other_person_id"] for r in evidence), h
        assert all(after.persons[r] == h["person_id"] for r in evidence), h
    moved = {r: (p, after.persons[r]) for r, p in before.persons.items() if after.persons.get(r, p) != p}
    assert all(merged.get(p) == q for p, q in moved.values()), moved  # only merges move a record
    assert not set(after.persons.values()) & set(merged)  # a merged id is retired, not reused
    earlier = set(before.persons.values())
    new = set(after.persons.values()) - earlier
    assert new, "the full export has new patients"
    assert min(int(p[1:]) for p in new) > max(int(p[1:]) for p in earlier)  # new patients get new ids
    # every earlier person keeps its CDM person_id and so its released pseudonym, keyed on that id
    key = ProductKey.from_hex(PRODUCT_KEY)
    kept = earlier - set(merged)
    assert {p: after.cdm[p] for p in kept} == {p: before.cdm[p] for p in kept}
    released = {p for p in kept if key.pseudonym_int(str(before.cdm[p])) in before.released}
    assert released, "the earlier run released persons"
    assert after.released <= {key.pseudonym_int(str(i)) for i in after.cdm.values()}
    # Each release is k-anonymised afresh over the whole refreshed CDM, so a person released before can be
    # suppressed now (the search may settle on a finer generalisation, leaving that person's class under k):
    # a withdrawn pseudonym must be one of the persons this release counts as suppressed, never lost.
    withdrawn = {p for p in released if key.pseudonym_int(str(after.cdm[p])) not in after.released}
    assert len(after.cdm) - len(after.released) == after.suppressed
    assert len(withdrawn) <= after.suppressed < len(released) // 10, (len(withdrawn), after.suppressed)
    return new


def _earlier_mimic_export(out: Path) -> set[str]:
    """Write the earlier export; return the subjects left out of it."""
    shutil.copytree(MIMIC, out)
    con = duckdb.connect()
    admissions = con.read_csv(str(MIMIC / "ADMISSIONS.csv.gz"), all_varchar=True, header=True)
    later = admissions.order("cast(admittime as timestamp) desc").limit(LATEST_ADMISSIONS)
    later_hadm = {str(r[0]) for r in later.select("hadm_id").fetchall()}
    subjects = con.read_csv(str(MIMIC / "PATIENTS.csv.gz"), all_varchar=True, header=True)
    new_subjects = {
        str(r[0]) for r in subjects.filter("cast(subject_id as int) % 10 = 0").select("subject_id").fetchall()
    }
    for stem in SUBJECT_TABLES:
        raw = con.read_csv(str(MIMIC / f"{stem}.csv.gz"), all_varchar=True, header=True)
        keep = "cast(subject_id as int) % 10 <> 0"
        if "hadm_id" in [c.lower() for c in raw.columns]:
            hadm = ", ".join(f"'{h}'" for h in sorted(later_hadm))
            keep += f" and (hadm_id is null or hadm_id not in ({hadm}))"
        raw.filter(keep).write_csv(str(out / f"{stem}.csv.gz"), header=True, compression="gzip")
    return new_subjects


def test_a_refreshed_mimic_export_keeps_every_persons_id_and_pseudonym(tmp_path: Path) -> None:
    if not (MIMIC / "PATIENTS.csv.gz").exists():
        message = f"the MIMIC-III demo is not at {MIMIC} (see ../shared/data/mimic-iii-demo/README.md)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    new_subjects = _earlier_mimic_export(tmp_path / "earlier")
    ws = tmp_path / "ws"
    before = _run(tmp_path / "earlier", ws, "mimic-iii")
    assert before.persons and not any(r.split(":", 1)[1] in new_subjects for r in before.persons)

    after = _run(MIMIC, ws, "mimic-iii")
    history = _history(ws)
    assert not history  # nothing merged or split
    new = _assert_ids_and_pseudonyms_kept(before, after, history)
    assert set(before.persons) <= set(after.persons)  # no record disappears
    new_records = {r for r, p in after.persons.items() if p in new}
    assert new_records == set(after.persons) - set(before.persons)
    assert {r.split(":", 1)[1] for r in new_records} == new_subjects
    assert len(after.released - before.released) == len(new_subjects)


def _key_corrections(hospital: Path) -> dict[str, str]:
    """Record id before -> after, for each identity typo in a patient key that the later export corrects."""
    with (hospital / "truth" / "corrections.csv").open(encoding="utf-8", newline="") as f:
        return {
            f"{r['system']}:{r['value']}": f"{r['system']}:{r['later_value']}"
            for r in csv.DictReader(f)
            if r["value"] == r["patient_key"] != r["later_value"]
        }


@pytest.mark.parametrize("profile", sorted(SYNTH_SITES))
def test_a_refreshed_synthetic_export_keeps_every_persons_id_and_pseudonym(
    profile: str, tmp_path: Path
) -> None:
    earlier, full, ws = tmp_path / "earlier", tmp_path / "full", tmp_path / "ws"
    _invoke(["synth", "--profile", profile, *SYNTH, "--as-of", AS_OF, "--out", str(earlier), "--quiet"])
    _invoke(["synth", "--profile", profile, *SYNTH, "--out", str(full), "--quiet"])
    before = _run(earlier, ws, SYNTH_SITES[profile], earlier)
    after = _run(full, ws, SYNTH_SITES[profile], full)
    history = _history(ws)
    new = _assert_ids_and_pseudonyms_kept(before, after, history)

    # a record the full export no longer has is one whose key typo it corrects, and the corrected record
    # carries the same person
    corrected = _key_corrections(earlier)
    gone = set(before.persons) - set(after.persons)
    assert gone <= set(corrected), sorted(gone - set(corrected))
    assert {r: after.persons[corrected[r]] for r in gone} == {r: before.persons[r] for r in gone}
    # a merge joins two persons the truth says are one patient
    for h in history:
        one, other = (
            set().union(*(run.true[r] for r, p in run.persons.items() if p == h[side]))
            for run, side in ((after, "person_id"), (before, "other_person_id"))
        )
        assert len(one) == 1 and other == one, h
    # the patients new in the full export (by the truth) are on new ids. Not the converse: a new record of
    # an earlier patient that link cannot place (a second HIS number registered without a resident ID) is a
    # new person, as it would be in a first run; that is link's recall, scored elsewhere, not the registry's.
    earlier_patients = set().union(*before.true.values())
    for r, patients in after.true.items():
        if patients - earlier_patients:
            assert after.persons[r] in new, (r, patients)
    print(
        f"{profile}: {len(before.persons)} -> {len(after.persons)} records, {len(new)} new persons, "
        f"{len(gone)} key typos corrected, {len(history)} merged"
    )
