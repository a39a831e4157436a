"""An earlier export of the same hospital (``HospitalConfig.as_of``) against the full one, and injected key
conflicts against their truth (issue 10, items 1 and 2).

The exports are read with the plain readers, not the generator's code: rows are matched across the two
exports by the record keys the ground truth names, and compared column by column.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from medspace.synth import DefectRates, HospitalConfig, generate_hospital
from readers import manifest, read_xlsx, truth

AS_OF = dt.date(2024, 7, 1)
BASE = {"patients": 1_200, "seed": 8, "chunk_patients": 500}
# Columns an as-of export writes differently because a stay or an order was still running on its day.
STILL_RUNNING = {
    "his/inpatient_admissions.csv": {"CYKS", "CYRQ", "ZT", "CYFS", "ZYTS", "ZFY"},
    "his/orders.csv": {"TZSJ"},
    "his/visits.csv": {
        "visit_status",
        "discharge_time",
        "discharge_dept_code",
        "discharge_disposition",
        "los_days",
        "total_cost",
    },
    "his/medication_orders.csv": {"stop_time"},
}
# The identity columns a later export may correct.
IDENTITY = {
    "his/patients.csv": {"XM", "CSRQ", "SFZH", "patient_name", "birth_date", "id_card_no"},
    "his/outpatient_registrations.csv": {"XM"},
    "his/inpatient_admissions.csv": {"XM"},
    "lis/requests.csv": {"PatientName", "Age"},
    "emr/front_sheets.csv": {"A11", "A13", "A20"},
    "ris/exams.csv": {"患者姓名", "年龄"},
    "surgery/operations.csv": {"PATIENT_NAME"},
}
SETTLEMENT_IDENTITY = {"参保人员编号", "姓名", "出生日期"}


def _rows(hospital: Path, rel: str) -> list[dict[str, str]]:
    path = hospital / rel
    if rel.endswith(".ndjson"):
        with path.open(encoding="utf-8") as f:
            return [{"json": line.rstrip("\n")} for line in f]
    if rel.endswith(".xlsx"):
        return [{k: str(v) for k, v in r.items()} for r in read_xlsx(path)]
    with path.open(encoding="gb18030" if rel.startswith("ris/") else "utf-8", newline="") as f:
        if rel.endswith(".tsv"):
            return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        return list(csv.DictReader(f))


def _by_key(hospital: Path) -> dict[str, dict[str, tuple[str, dict[str, str]]]]:
    """file -> record key -> (true person, the row as exported), the first row of a key."""
    files: dict[str, list[dict[str, str]]] = {}
    result: dict[str, dict[str, tuple[str, dict[str, str]]]] = defaultdict(dict)
    for r in truth(hospital, "records"):
        if r["file"] not in files:
            files[r["file"]] = _rows(hospital, r["file"])
        rows = files[r["file"]]
        result[r["file"]].setdefault(r["record_key"], (r["person_id"], rows[r["row"] - 1]))
    return result


def _all_by_key(hospital: Path) -> dict[str, dict[str, list[tuple[str, dict[str, str]]]]]:
    """file -> record key -> every (true person, row) exported under the key."""
    files: dict[str, list[dict[str, str]]] = {}
    result: dict[str, dict[str, list[tuple[str, dict[str, str]]]]] = defaultdict(lambda: defaultdict(list))
    for r in truth(hospital, "records"):
        if r["file"] not in files:
            files[r["file"]] = _rows(hospital, r["file"])
        result[r["file"]][r["record_key"]].append((r["person_id"], files[r["file"]][r["row"] - 1]))
    return result


def _corrections(hospital: Path) -> set[tuple[str, str, str]]:
    with (hospital / "truth" / "corrections.csv").open(encoding="utf-8", newline="") as f:
        return {(r["file"], r["record_key"], r["field"]) for r in csv.DictReader(f)}


def _identity_columns(file: str) -> set[str]:
    return SETTLEMENT_IDENTITY if file.startswith("insurance/") else IDENTITY.get(file, set())


@pytest.fixture(scope="module", params=["tertiary", "integrated"])
def exports(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp(f"later-{request.param}")
    earlier, full = root / "earlier", root / "full"
    generate_hospital(HospitalConfig(**BASE, profile=request.param, as_of=AS_OF), earlier)
    generate_hospital(HospitalConfig(**BASE, profile=request.param), full)
    return earlier, full


@pytest.fixture(scope="module")
def keyed(exports: tuple[Path, Path]) -> tuple[dict[str, Any], dict[str, Any]]:
    return _by_key(exports[0]), _by_key(exports[1])


def test_as_of_export_is_a_subset_of_the_full_export_by_keys(keyed: tuple[dict[str, Any], ...]) -> None:
    earlier, full = keyed
    assert earlier, "the as-of export holds records"
    for file, rows in earlier.items():
        missing = set(rows) - set(full.get(file, {}))
        assert not missing, f"{file}: keys only in the as-of export: {sorted(missing)[:5]}"


def test_every_record_keeps_its_person_keys_and_values(keyed: tuple[dict[str, Any], ...]) -> None:
    """Same true person, same keys and values, except identity values the later export corrects and the
    end of what was still running on the as-of day."""
    earlier, full = keyed
    for file, rows in earlier.items():
        allowed = _identity_columns(file) | STILL_RUNNING.get(file, set())
        for key, (person, row) in rows.items():
            later_person, later_row = full[file][key]
            assert person == later_person, (file, key)
            differing = {col for col in row if row[col] != later_row[col]}
            assert differing <= allowed, (file, key, differing - allowed)


def test_corrections_listed_are_exactly_the_identity_differences(
    exports: tuple[Path, Path], keyed: tuple[dict[str, Any], ...]
) -> None:
    earlier, full = keyed
    found = {
        (file, key, col)
        for file, rows in earlier.items()
        for key, (_, row) in rows.items()
        for col in _identity_columns(file)
        if col in row and row[col] != full[file][key][1][col]
    }
    listed = _corrections(exports[0])
    assert found, "some identity typos of the earlier export are corrected later"
    assert listed == found


def test_new_patients_and_visits_appear_only_in_the_full_export(keyed: tuple[dict[str, Any], ...]) -> None:
    earlier, full = keyed
    visits = "his/visits.csv" if "his/visits.csv" in full else "his/outpatient_registrations.csv"
    for file in ("his/patients.csv", visits):
        assert set(full[file]) - set(earlier[file]), f"{file}: nothing new in the full export"


def test_open_stays_are_still_open(exports: tuple[Path, Path]) -> None:
    earlier = exports[0]
    visits = truth(earlier, "visits")
    cut = dt.datetime(AS_OF.year, AS_OF.month, AS_OF.day)
    assert all(v["start"] < cut for v in visits)
    open_stays = [v for v in visits if v["status"] == "open"]
    assert open_stays and all(v["end"] is None and v["kind"] == "inpatient" for v in open_stays)
    closed = [v for v in visits if v["kind"] == "inpatient" and v["status"] != "open"]
    assert all(v["end"] < cut for v in closed)


def test_ground_truth_describes_the_earlier_export(exports: tuple[Path, Path]) -> None:
    earlier = exports[0]
    info = manifest(earlier)
    assert info["config"]["as_of"] == AS_OF.isoformat()
    for f in info["files"]:
        assert f["rows"] == len(_rows(earlier, f["path"])), f["path"]
    records = truth(earlier, "records")
    keys: dict[str, set[str]] = defaultdict(set)
    for r in records:
        keys[r["file"]].add(r["record_key"])
    persons = {p["person_id"] for p in truth(earlier, "persons")}
    assert {r["person_id"] for r in records} <= persons
    # a person of the truth is one the export holds a record or a defect of
    assert persons <= {r["person_id"] for r in records} | {d["person_id"] for d in truth(earlier, "defects")}
    # rows the HIS export lost or had not synced are under truth/withheld/, keyed by their first column
    # (admissions by the visit serial JZLSH), as test_ground_truth reads them
    for path in (earlier / "truth" / "withheld").rglob("*.csv"):
        rel = str(path.relative_to(earlier / "truth" / "withheld"))
        for r in _rows(earlier / "truth" / "withheld", rel):
            keys[rel].add(r["JZLSH"] if rel == "his/inpatient_admissions.csv" else next(iter(r.values())))
    # the integrated lab's link starts at the order, whose results are keyed order-item
    orders = {key.rsplit("-", 1)[0] for key in keys.get("his/lab_results.csv", set())}
    for link in truth(earlier, "links"):
        from_keys = orders if link["kind"] == "lab_order->visit" else keys[link["from_file"]]
        assert link["from_key"] in from_keys, link
        assert link["to_key"] in keys[link["to_file"]], link
    rows = {f["path"]: f["rows"] for f in info["files"]}
    for d in truth(earlier, "defects"):
        assert d["row"] is None or 1 <= d["row"] <= rows[d["file"]], d
    notes = keys.get("emr/notes.ndjson", set()) | keys.get("his/emr_documents.tsv", set())
    assert {n["note_id"] for n in truth(earlier, "note_phi")} <= notes
    end = dt.date.fromisoformat(info["reporting_period"]["end"])
    assert end <= AS_OF


def test_as_of_falls_inside_the_period() -> None:
    config = HospitalConfig(patients=10, seed=1, as_of=AS_OF)
    assert config.defects.identity_corrected_later > 0
    with pytest.raises(ValueError, match="as_of"):
        HospitalConfig(patients=10, seed=1, as_of=dt.date(2026, 1, 1))


# Digests of every file of two small hospitals written by the code before as-of exports and key conflicts
# existed (main at cc2d18f): the default output must not move by a byte. They hold for the pinned
# dependency versions (pyarrow's CSV and Parquet writers, xlsxwriter); a dependency upgrade that changes
# them must be checked against that commit again, not re-pinned blindly.
DEFAULT_DIGESTS = {
    "tertiary": (38, "d3b037abcbc171c7383e36fb860e9154a98d72a863e8d0d4ce1891931365c4fc"),
    "integrated": (22, "c8af16763b7d5dbbd4c3a4e74cf50b61cdb31f2eda86f57367d42d75987a4629"),
}


@pytest.mark.parametrize("profile", ["tertiary", "integrated"])
def test_default_output_is_byte_identical_to_before(profile: str, tmp_path: Path) -> None:
    out = tmp_path / "h"
    config = HospitalConfig(patients=300, seed=5, chunk_patients=120, profile=profile)  # type: ignore[arg-type]
    generate_hospital(config, out)
    lines = sorted(
        f"{p.relative_to(out).as_posix()} {hashlib.sha256(p.read_bytes()).hexdigest()}"
        for p in out.rglob("*")
        if p.is_file()
    )
    assert (len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest()) == DEFAULT_DIGESTS[profile]


# --- key conflicts ---------------------------------------------------------------------------------------

CONFLICTS = DefectRates(newborn_parent_id=1.0, reused_inpatient_no=0.03)


@pytest.fixture(scope="module", params=["tertiary", "integrated"])
def conflicted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp(f"conflicts-{request.param}") / "h"
    generate_hospital(HospitalConfig(**BASE, profile=request.param, defects=CONFLICTS), out)
    return out


def _conflicts(hospital: Path) -> list[dict[str, str]]:
    with (hospital / "truth" / "key_conflicts.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_key_conflicts_truth_lists_exactly_what_was_injected(conflicted: Path) -> None:
    conflicts = _conflicts(conflicted)
    kinds = {c["kind"] for c in conflicts}
    assert kinds == {"newborn_parent_id", "reused_inpatient_no"}
    # every conflict is a defect on its record, and every such defect a conflict
    injected = {
        (d["kind"], d["file"], d["record_key"])
        for d in truth(conflicted, "defects")
        if d["kind"] in ("newborn_parent_id", "reused_inpatient_no")
    }
    assert injected == {(c["kind"], c["file"], c["record_key"]) for c in conflicts}
    keyed = _all_by_key(conflicted)
    for c in conflicts:
        # a borrowed inpatient number can make the key the owner's own front sheet has too
        row = next(row for person, row in keyed[c["file"]][c["record_key"]] if person == c["person_id"])
        column = {
            "his/patients.csv": ("SFZH", "id_card_no"),
            "emr/front_sheets.csv": ("A48",),
            "his/emr_documents.tsv": ("admission_no",),
        }[c["file"]]
        assert c["key_value"] in {row[col] for col in column if col in row}, c
        for ref in c["other_records"].split(";"):
            file, key = ref.split("#", 1)
            assert any(
                other == c["other_person_id"] and c["key_value"] in other_row.values()
                for other, other_row in keyed[file][key]
            ), c


def test_the_two_persons_of_a_conflict_are_distinct_persons(conflicted: Path) -> None:
    persons = {p["person_id"]: p for p in truth(conflicted, "persons")}
    for c in _conflicts(conflicted):
        a, b = persons[c["person_id"]], persons[c["other_person_id"]]
        assert a["person_id"] != b["person_id"]
        assert (a["name"], a["sex"], a["birth_date"]) != (b["name"], b["sex"], b["birth_date"])
        if c["kind"] == "newborn_parent_id":
            assert b["sex"] == "F" and b["resident_id"] != a["resident_id"]
            assert (a["birth_date"] - b["birth_date"]).days >= 18 * 365


def test_no_conflicts_by_default(tmp_path: Path) -> None:
    out = tmp_path / "h"
    generate_hospital(HospitalConfig(patients=200, seed=2), out)
    assert not (out / "truth" / "key_conflicts.csv").exists()
    info = json.loads((out / "truth" / "manifest.json").read_text(encoding="utf-8"))
    assert "newborn_parent_id" not in info["config"]["defects"]
