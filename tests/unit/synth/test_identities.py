"""Identities in the synthetic hospital: true resident IDs are valid, every invalid one is a recorded typo,
and each system numbers its patients its own way."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path

from faker.providers.ssn.zh_CN import Provider as FakerSsn

from readers import read_csv, read_ndjson, read_xlsx, truth

# GB 11643-1999 check character, written out again here rather than imported from medspace.
WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
COUNTIES = {c for c in FakerSsn.area_codes if not c.endswith("00")}


def valid_resident_id(value: str) -> bool:
    if len(value) != 18 or not value[:17].isdigit():
        return False
    if "10X98765432"[sum(int(d) * w for d, w in zip(value[:17], WEIGHTS, strict=True)) % 11] != value[17]:
        return False
    try:
        born = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    return dt.date(1900, 1, 1) <= born <= dt.date.today() and value[:6] in COUNTIES


def test_every_true_resident_id_validates(hospital: Path) -> None:
    persons = truth(hospital, "persons")
    assert len(persons) == 2_000
    for p in persons:
        rid = p["resident_id"]
        assert valid_resident_id(rid), p["person_id"]
        assert rid[6:14] == p["birth_date"].strftime("%Y%m%d")
        assert (int(rid[16]) % 2 == 1) == (p["sex"] == "M")
    assert len({p["resident_id"] for p in persons}) == len(persons)


def _exported_resident_ids(hospital: Path) -> list[tuple[str, int, str]]:
    """(file, row, resident ID) for every resident ID in the exports."""
    found = [
        ("his/patients.csv", i, r["SFZH"]) for i, r in enumerate(read_csv(hospital / "his/patients.csv"), 1)
    ]
    found += [
        ("emr/front_sheets.csv", i, r["A20"])
        for i, r in enumerate(read_csv(hospital / "emr/front_sheets.csv"), 1)
    ]
    for path in sorted((hospital / "insurance").glob("*.xlsx")):
        rel = f"insurance/{path.name}"
        found += [(rel, i, str(r["参保人员编号"])) for i, r in enumerate(read_xlsx(path), 1)]
    return found


def test_every_invalid_resident_id_is_a_recorded_typo(hospital: Path) -> None:
    typos = {(d["file"], d["row"]) for d in truth(hospital, "defects") if d["kind"] == "resident_id_typo"}
    exported = _exported_resident_ids(hospital)
    invalid = {(f, r) for f, r, v in exported if not valid_resident_id(v)}
    assert invalid, "the default rates should inject some resident ID typos"
    assert invalid == typos


def test_exported_resident_ids_are_the_true_ones_unless_mistyped(hospital: Path) -> None:
    persons = {p["person_id"]: p["resident_id"] for p in truth(hospital, "persons")}
    owner = {(r["file"], r["row"]): r["person_id"] for r in truth(hospital, "records")}
    for file, row, value in _exported_resident_ids(hospital):
        if valid_resident_id(value):
            assert value == persons[owner[(file, row)]], (file, row)


def test_each_system_numbers_patients_its_own_way(hospital: Path) -> None:
    ids: dict[str, set[str]] = {
        "his": {r["BRID"] for r in read_csv(hospital / "his/patients.csv")},
        "lis": {r["PatientNo"] for r in read_csv(hospital / "lis/requests.csv")},
        "pacs": {s["00100020"]["Value"][0] for s in read_ndjson(hospital / "pacs/dicom_studies.ndjson")},
        "emr": {n["subject"]["identifier"]["value"] for n in read_ndjson(hospital / "emr/notes.ndjson")},
        "surgery": {r["SS_PATIENT_ID"] for r in read_csv(hospital / "surgery/operations.csv")},
    }
    systems = sorted(ids)
    for i, a in enumerate(systems):
        assert ids[a], a
        for b in systems[i + 1 :]:
            assert not ids[a] & ids[b], (a, b)


def test_a_person_has_one_number_per_system_except_recorded_duplicates(hospital: Path) -> None:
    owner = {(r["file"], r["row"]): r["person_id"] for r in truth(hospital, "records")}
    numbers: dict[str, set[str]] = defaultdict(set)
    for i, r in enumerate(read_csv(hospital / "his/patients.csv"), 1):
        numbers[owner[("his/patients.csv", i)]].add(r["BRID"])
    duplicated = {d["person_id"] for d in truth(hospital, "defects") if d["kind"] == "duplicate_patient_id"}
    assert duplicated
    for person, brids in numbers.items():
        assert len(brids) == (2 if person in duplicated else 1), person
