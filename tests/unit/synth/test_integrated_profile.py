"""The integrated vendor profile: the same simulated hospital exported by an integrated HIS (lab included)
and a regional platform's FHIR R4 Bulk Data NDJSON, with a ground truth covering every exported row.

Rows are counted here with the standard library (``csv``, line counts, ``json``), not with the generator's
code, and the site mapping shipped for the profile must stage it with nothing quarantined.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from medspace.synth import HospitalConfig, generate_hospital
from readers import manifest, read_csv, read_ndjson, truth

CONFIG = HospitalConfig(patients=1_500, seed=3, chunk_patients=600, profile="integrated")

HIS_FILES = {
    "his/patients.csv",
    "his/visits.csv",
    "his/diagnoses.csv",
    "his/procedures.csv",
    "his/lab_results.csv",
    "his/medication_orders.csv",
    "his/charges.csv",
    "his/emr_documents.tsv",
}
FHIR_TYPES = ("Patient", "Encounter", "Condition", "Procedure", "Observation", "MedicationRequest")


@pytest.fixture(scope="module")
def integrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("integrated") / "hospital"
    generate_hospital(CONFIG, out)
    return out


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _read_tsv(path: Path) -> list[dict[str, str]]:
    """The dump's own rules: one record per line, tab-separated, never quoted."""
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:-1]]
    return rows


def _rows(hospital: Path, rel: str) -> list[dict[str, Any]]:
    path = hospital / rel
    if rel.endswith(".csv"):
        return read_csv(path)
    if rel.endswith(".tsv"):
        return _read_tsv(path)
    return list(read_ndjson(path))


def test_same_seed_gives_byte_identical_output_whatever_the_workers(tmp_path: Path) -> None:
    config = HospitalConfig(patients=500, seed=5, chunk_patients=200, profile="integrated")
    generate_hospital(config, tmp_path / "a")
    generate_hospital(config.model_copy(update={"workers": 2}), tmp_path / "b")
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert len(a) > 15
    assert a == b


def test_the_profile_exports_the_same_people_and_encounters_as_the_tertiary_one(
    tmp_path: Path, integrated: Path
) -> None:
    tertiary = tmp_path / "tertiary"
    generate_hospital(CONFIG.model_copy(update={"profile": "tertiary"}), tertiary)
    assert (tertiary / "truth/persons.parquet").read_bytes() == (
        integrated / "truth/persons.parquet"
    ).read_bytes()

    def visits(hospital: Path) -> Counter[tuple[Any, ...]]:
        return Counter(
            (v["person_id"], v["kind"], v["status"], v["start"], v["end"], v["diagnosis_icd10"])
            for v in truth(hospital, "visits")
        )

    assert visits(tertiary) == visits(integrated)
    assert json.loads((tertiary / "truth/manifest.json").read_text(encoding="utf-8"))["config"].keys() == {
        "patients",
        "seed",
        "years",
        "start",
        "chunk_patients",
        "defects",
    }


def test_expected_systems_are_present_and_the_others_absent(integrated: Path) -> None:
    files = {f["path"] for f in manifest(integrated)["files"]}
    assert files == HIS_FILES | {f"platform/{t}.ndjson" for t in FHIR_TYPES}
    folders = {p.name for p in integrated.iterdir()}
    assert folders == {"his", "platform", "truth"}
    for absent in ("lis", "emr", "ris", "pacs", "surgery", "insurance"):
        assert not (integrated / absent).exists()
    assert not (integrated / "truth/withheld").exists()  # the integrated HIS loses nothing


def test_truth_covers_every_exported_row_counted_independently(integrated: Path) -> None:
    persons = {p["person_id"] for p in truth(integrated, "persons")}
    per_file: dict[str, set[int]] = defaultdict(set)
    for r in truth(integrated, "records"):
        assert r["person_id"] in persons
        per_file[r["file"]].add(r["row"])
    for f in manifest(integrated)["files"]:
        counted = len(_rows(integrated, f["path"]))
        assert counted == f["rows"] > 0, f["path"]
        assert per_file[f["path"]] == set(range(1, counted + 1)), f["path"]
    assert set(per_file) == {f["path"] for f in manifest(integrated)["files"]}


def test_record_keys_are_unique_and_links_resolve(integrated: Path) -> None:
    keys: dict[str, set[str]] = defaultdict(set)
    for r in truth(integrated, "records"):
        assert r["record_key"] not in keys[r["file"]], (r["file"], r["record_key"])
        keys[r["file"]].add(r["record_key"])
    # an order's key is the order number every result row of it carries
    keys["his/lab_results.csv"] |= {r["order_no"] for r in read_csv(integrated / "his/lab_results.csv")}
    links = truth(integrated, "links")
    assert {link["kind"] for link in links} >= {
        "diagnosis->visit",
        "procedure->visit",
        "lab_order->visit",
        "note->visit",
        "encounter->visit",
        "condition->diagnosis",
    }
    for link in links:
        assert link["from_key"] in keys[link["from_file"]], link
        assert link["to_key"] in keys[link["to_file"]], link


def test_one_person_per_patient_number_and_duplicates_as_configured(integrated: Path) -> None:
    owner = {(r["file"], r["row"]): r["person_id"] for r in truth(integrated, "records")}
    numbers: dict[str, set[str]] = defaultdict(set)
    for rel in HIS_FILES:
        for i, row in enumerate(_rows(integrated, rel), 1):
            numbers[row["patient_no"]].add(owner[(rel, i)])
    assert all(len(p) == 1 for p in numbers.values())
    patients = read_csv(integrated / "his/patients.csv")
    per_person = Counter(owner[("his/patients.csv", i)] for i in range(1, len(patients) + 1))
    twice = sum(1 for n in per_person.values() if n == 2)
    assert 0 < twice < 0.05 * len(per_person)
    missing_id = sum(1 for p in patients if p["id_card_no"] == "")
    assert 0.01 < missing_id / len(patients) < 0.12  # configured 5 %


def test_fhir_resources_have_r4_shapes_and_references_resolve(integrated: Path) -> None:
    ids: dict[str, set[str]] = {}
    resources: dict[str, list[dict[str, Any]]] = {}
    for kind in FHIR_TYPES:
        resources[kind] = list(read_ndjson(integrated / f"platform/{kind}.ndjson"))
        assert {r["resourceType"] for r in resources[kind]} == {kind}
        ids[kind] = {r["id"] for r in resources[kind]}
        assert len(ids[kind]) == len(resources[kind])
    for kind in FHIR_TYPES[1:]:
        for r in resources[kind]:
            ref = r["subject"]["reference"]
            assert ref.startswith("Patient/") and ref.removeprefix("Patient/") in ids["Patient"]
            if kind != "Encounter":
                assert r["encounter"]["reference"].removeprefix("Encounter/") in ids["Encounter"]
    classes = Counter(r["class"]["code"] for r in resources["Encounter"])
    assert set(classes) == {"AMB", "EMER", "IMP"}
    assert all(
        r["class"]["system"] == "http://terminology.hl7.org/CodeSystem/v3-ActCode"
        for r in resources["Encounter"]
    )
    for r in resources["Condition"]:
        systems = [c["system"] for c in r["code"]["coding"]]
        assert "http://hl7.org/fhir/sid/icd-10" in systems
    for r in resources["Observation"]:
        q = r["valueQuantity"]
        assert q["system"] == "http://unitsofmeasure.org" and isinstance(q["value"], float) and q["code"]
        assert r["code"]["coding"][0]["system"] == "http://loinc.org"
    for r in resources["Patient"]:
        assert r["gender"] in ("male", "female") and len(r["birthDate"]) == 10
        assert r["identifier"][0]["type"]["coding"][0]["code"] == "MR"


def test_platform_overlaps_the_his_with_its_own_identifiers(integrated: Path) -> None:
    owner = {(r["file"], r["row"]): r["person_id"] for r in truth(integrated, "records")}
    his = {
        owner[("his/patients.csv", i)] for i in range(1, len(read_csv(integrated / "his/patients.csv")) + 1)
    }
    patients = list(read_ndjson(integrated / "platform/Patient.ndjson"))
    platform = [owner[("platform/Patient.ndjson", i)] for i in range(1, len(patients) + 1)]
    assert set(platform) <= his and 0.2 * len(his) < len(platform) < 0.8 * len(his)
    with_id = sum(1 for p in patients if len(p["identifier"]) == 2)
    assert 0.4 * len(patients) < with_id < 0.9 * len(patients)  # the rest link by name and birth date
    his_numbers = {r["patient_no"] for r in read_csv(integrated / "his/patients.csv")}
    assert not his_numbers & {p["id"] for p in patients}


def test_note_spans_point_into_the_unescaped_text(integrated: Path) -> None:
    docs = {
        d["doc_no"]: d["content"].replace("\\n", "\n")
        for d in _read_tsv(integrated / "his/emr_documents.tsv")
    }
    spans = truth(integrated, "note_phi")
    assert {s["type"] for s in spans} >= {"NAME", "ID", "PHONE", "HOSPITAL_NO", "ADDRESS", "DATE"}
    for s in spans:
        assert docs[s["note_id"]][s["start"] : s["end"]] == s["text"]


def test_kpis_recount_from_the_visits_table(integrated: Path) -> None:
    kpis = json.loads((integrated / "truth/kpis.json").read_text(encoding="utf-8"))
    visits = read_csv(integrated / "his/visits.csv")
    done = Counter(v["visit_type"] for v in visits if v["visit_status"] in ("completed", "discharged"))
    assert kpis["outpatient_visits"] == done["OP"]
    assert kpis["emergency_visits"] == done["ER"]
    assert kpis["checkup_visits"] == done["PE"]
    assert kpis["discharges"] == done["IP"]
    assert kpis["bed_days"] == sum(int(v["los_days"]) for v in visits if v["visit_type"] == "IP")
    assert kpis["operations"] == len(read_csv(integrated / "his/procedures.csv"))
    outpatient = {v["visit_no"] for v in visits if v["visit_type"] == "OP"}
    with (integrated / "his/charges.csv").open(encoding="utf-8", newline="") as f:
        revenue = sum(
            round(float(c["amount"]) * 100) for c in csv.DictReader(f) if c["visit_no"] in outpatient
        )
    assert round(revenue / 100, 2) == kpis["outpatient_revenue"]


def test_the_site_mapping_stages_the_profile_with_nothing_quarantined(
    integrated: Path, tmp_path: Path
) -> None:
    from medspace.sources import stage_site

    report = stage_site("integrated-hospital", integrated, tmp_path / "ws")
    assert not report.problems
    assert report.rows_read == sum(f["rows"] for f in manifest(integrated)["files"])
    assert report.staged == report.rows_read
    assert report.rules == {}
