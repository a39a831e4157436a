"""Injected key conflicts are never merged silently: every one is caught (recall 1.0).

Caught means held in the review queue (a held key, or an overlay: one record whose own rows are two people),
or, for a row whose record key another row already has, refused by staging as a conflicting key. The generator
writes newborns registered under their mother's resident ID and inpatient numbers reused on another patient's
front sheet, with the truth (``truth/key_conflicts.csv``) naming the key and the two true
persons. The link stage never reads the truth; here it scores the link output.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow.parquet as pq

from medspace.link import link_workspace, review_queue
from medspace.sources import DEFAULT_SITE, stage_site
from medspace.synth import DefectRates, HospitalConfig, generate_hospital

PREFIX = {"resident_id": "rid:", "inpatient_no": "ino:"}


def test_every_injected_key_conflict_is_held_for_review_and_not_merged(tmp_path: Path) -> None:
    rates = DefectRates(newborn_parent_id=0.3, reused_inpatient_no=0.01)
    generate_hospital(
        HospitalConfig(patients=3_000, seed=5, chunk_patients=1_000, defects=rates), tmp_path / "h"
    )
    stage_site(DEFAULT_SITE, tmp_path / "h", tmp_path)
    link_workspace(tmp_path)
    with (tmp_path / "h" / "truth" / "key_conflicts.csv").open(encoding="utf-8") as f:
        injected = list(csv.DictReader(f))
    assert {c["kind"] for c in injected} == {"newborn_parent_id", "reused_inpatient_no"}
    queue = review_queue(tmp_path).to_pylist()
    held = {i["key"] for i in queue if i["kind"] == "key_conflict"}
    # the EMR front sheet's patient key is the inpatient number: a reused number puts both people's rows
    # into one EMR record, held whole as an overlay
    overlays = {i["key"] for i in queue if i["kind"] == "record_conflict"}
    # a reused number whose admission count the owner's own front sheet also has gives two rows one record
    # key: staging keeps the first and quarantines the other as a conflicting key, so it never reaches link
    refused = {
        (q["file"], q["key"])
        for q in pq.read_table(tmp_path / "staging" / "quarantine.parquet").to_pylist()
        if q["rule"] == "conflicting_key"
    }
    caught = {
        "held key": [c for c in injected if PREFIX[c["key_kind"]] + c["key_value"] in held],
        "overlay": [c for c in injected if f"emr:{c['key_value']}" in overlays],
        "refused by staging": [c for c in injected if (c["file"], c["record_key"]) in refused],
    }
    missed = [c for c in injected if not any(c in found for found in caught.values())]
    assert not missed, missed  # recall 1.0
    # each way of catching one is exercised by this hospital
    assert all(caught.values()), {how: len(found) for how, found in caught.items()}
    # and no person of the link output holds records of both true persons of a conflict
    truth = pq.read_table(tmp_path / "h" / "truth" / "records.parquet").to_pylist()
    true_person = {(r["file"], r["row"]): r["person_id"] for r in truth}
    events = pq.read_table(
        tmp_path / "link" / "events.parquet", columns=["source_file", "source_row", "person_id"]
    )
    persons_of: dict[str, set[str]] = {}
    for e in events.to_pylist():
        if e["person_id"] is not None:
            persons_of.setdefault(e["person_id"], set()).add(true_person[(e["source_file"], e["source_row"])])
    merged = [
        c for c in injected if any({c["person_id"], c["other_person_id"]} <= t for t in persons_of.values())
    ]
    assert not merged, merged
