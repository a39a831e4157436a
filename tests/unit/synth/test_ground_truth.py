"""The ground truth covers every exported row, its links resolve, and the clinical picture is coherent."""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

from readers import manifest, read_csv, read_ndjson, truth


def test_every_exported_row_has_a_true_person(hospital: Path) -> None:
    persons = {p["person_id"] for p in truth(hospital, "persons")}
    records = truth(hospital, "records")
    per_file: dict[str, set[int]] = defaultdict(set)
    for r in records:
        assert r["person_id"] in persons
        per_file[r["file"]].add(r["row"])
    for f in manifest(hospital)["files"]:
        assert per_file[f["path"]] == set(range(1, f["rows"] + 1)), f["path"]


def test_exported_row_counts_match_the_files(hospital: Path) -> None:
    for f in manifest(hospital)["files"]:
        path = hospital / f["path"]
        if f["format"].startswith("csv"):
            encoding = "gb18030" if "gb18030" in f["format"] else "utf-8"
            assert len(read_csv(path, encoding)) == f["rows"], f["path"]
        elif f["format"] == "ndjson":
            assert sum(1 for _ in read_ndjson(path)) == f["rows"]


def test_links_point_at_existing_records(hospital: Path) -> None:
    keys: dict[str, set[str]] = defaultdict(set)
    for r in truth(hospital, "records"):
        keys[r["file"]].add(r["record_key"])
    # rows the HIS export lost are kept under truth/withheld/; their record key is in the first column,
    # except for admissions, keyed by the visit serial JZLSH
    for path in (hospital / "truth/withheld").rglob("*.csv"):
        rel = str(path.relative_to(hospital / "truth/withheld"))
        for r in read_csv(path):
            keys[rel].add(r["JZLSH"] if rel == "his/inpatient_admissions.csv" else next(iter(r.values())))
    links = truth(hospital, "links")
    kinds = {link["kind"] for link in links}
    assert {
        "lab_request->visit",
        "exam->visit",
        "operation->stay",
        "settlement->stay",
        "front_sheet->stay",
    } <= kinds
    for link in links:
        assert link["from_key"] in keys[link["from_file"]], link
        assert link["to_key"] in keys[link["to_file"]], link


def test_tests_follow_the_conditions(hospital: Path) -> None:
    """HbA1c is high in diabetes, breath tests positive in H. pylori infection (domain.md §3)."""
    conditions = {p["person_id"]: set(p["conditions"]) for p in truth(hospital, "persons")}
    owner = {(r["file"], r["row"]): r["person_id"] for r in truth(hospital, "records")}
    hba1c: dict[bool, list[float]] = {True: [], False: []}
    ubt: dict[bool, list[float]] = {True: [], False: []}
    for i, r in enumerate(read_csv(hospital / "lis/results.csv"), 1):
        who = conditions[owner[("lis/results.csv", i)]]
        value = float(r["Result"])
        if r["ItemCode"] == "HBA1C":
            percent = value / 10.929 + 2.15 if r["Unit"] == "mmol/mol" else value
            hba1c["t2dm" in who].append(percent)
        elif r["ItemCode"] == "UBT":
            ubt["hp_infection" in who].append(value)
    assert statistics.mean(hba1c[True]) >= 6.5 > 6.0 > statistics.mean(hba1c[False])
    assert sum(v >= 4.0 for v in ubt[True]) / len(ubt[True]) > 0.9
    assert sum(v >= 4.0 for v in ubt[False]) / len(ubt[False]) < 0.1


def test_ct_nodules_have_sizes_and_belong_to_nodule_patients(hospital: Path) -> None:
    conditions = {p["person_id"]: set(p["conditions"]) for p in truth(hospital, "persons")}
    owner = {(r["file"], r["row"]): r["person_id"] for r in truth(hospital, "records")}
    found = 0
    for i, r in enumerate(read_csv(hospital / "ris/exams.csv", "gb18030"), 1):
        if r["检查项目"] != "胸部低剂量CT":
            continue
        size = re.search(r"大小约(\d+)mm", r["客观所见"])
        has_nodule = bool(conditions[owner[("ris/exams.csv", i)]] & {"lung_nodule", "lung_cancer"})
        assert bool(size) == has_nodule
        found += bool(size)
    assert found


def test_prevalence_is_plausible(hospital: Path) -> None:
    """Adult prevalence within the broad shapes of domain.md §8."""
    persons = truth(hospital, "persons")
    adults = [p for p in persons if p["birth_date"].year <= 2005]
    share = {
        k: sum(k in p["conditions"] for p in adults) / len(adults)
        for k in ("t2dm", "hypertension", "hp_infection")
    }
    assert 0.06 <= share["t2dm"] <= 0.25
    assert 0.15 <= share["hypertension"] <= 0.50
    assert 0.20 <= share["hp_infection"] <= 0.55


def test_note_identifier_spans_point_at_the_identifiers(hospital: Path) -> None:
    notes = {
        n["id"]: n["content"][0]["attachment"]["text"] for n in read_ndjson(hospital / "emr/notes.ndjson")
    }
    spans = truth(hospital, "note_phi")
    assert {s["type"] for s in spans} >= {
        "NAME",
        "ID",
        "PHONE",
        "HOSPITAL_NO",
        "ADDRESS",
        "DATE",
        "INSTITUTION",
    }
    for s in spans:
        assert notes[s["note_id"]][s["start"] : s["end"]] == s["text"]


def test_kpis_json_is_complete(hospital: Path) -> None:
    kpis = json.loads((hospital / "truth/kpis.json").read_text(encoding="utf-8"))
    for name in (
        "outpatient_visits_per_discharge",
        "operated_discharge_share",
        "minimally_invasive_share",
        "grade4_share",
        "day_surgery_share",
        "cost_per_outpatient_visit",
        "cost_per_discharge",
        "average_length_of_stay",
    ):
        assert kpis[name] > 0, name
