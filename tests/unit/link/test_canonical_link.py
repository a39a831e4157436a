"""The link stage over tiny hand-made staging folders of the canonical hospital model.

Each test writes the canonical tables a site would stage (no generator, no site mapping) and checks one rule:
which records make one person, how encounter rows make visits, how every other row reaches its visit.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from medspace.core import InputError, make_resident_id
from medspace.link import link_workspace
from medspace.link._link_workspace import PERSON_STEPS
from progress_calls import ProgressRecorder, assert_honest_progress
from staged_model import write_staging

T = dt.datetime
RID = make_resident_id("110105", dt.date(1960, 5, 1), 13)


def _base() -> dict[str, list[dict[str, Any]]]:
    """Two systems: a HIS (patient index, visits, a stay) and a LIS with its own patient numbers."""
    return {
        "patient": [
            {
                "system": "his",
                "record_key": "H1",
                "patient_key": "H1",
                "name": "张三",
                "sex": "M",
                "birth_date": dt.date(1960, 5, 1),
                "resident_id": RID,
                "inpatient_no": "ZY1",
            },
            {
                "system": "lis",
                "record_key": "O1",
                "patient_key": "L1",
                "name": "张三",
                "sex": "M",
                "age_years": 63,
            },
        ],
        "encounter": [
            {
                "system": "his",
                "record_key": "V1",
                "patient_key": "H1",
                "encounter_type": "outpatient",
                "status": "done",
                "visit_serial": "V1",
                "start_at": T(2024, 1, 1, 9),
                "department_code": "D1",
            },
            {
                "system": "his",
                "record_key": "V2",
                "patient_key": "H1",
                "encounter_type": "inpatient",
                "visit_serial": "V2",
                "inpatient_no": "ZY1",
                "admission_count": 1,
                "start_at": T(2024, 2, 1),
                "end_at": T(2024, 2, 5),
                "department_code": "H-DEPT",
            },
            {
                "system": "his",
                "record_key": "V4",
                "patient_key": "H1",
                "encounter_type": "outpatient",
                "status": "refunded",
                "visit_serial": "V4",
                "start_at": T(2024, 3, 1, 9),
            },
        ],
        "lab_order": [
            # made in the outpatient visit it names
            {
                "system": "lis",
                "record_key": "O1",
                "patient_key": "L1",
                "visit_serial": "V1",
                "encounter_type": "outpatient",
                "ordered_at": T(2024, 1, 1, 10),
            },
            # filed against the outpatient visit, but made during the stay
            {
                "system": "lis",
                "record_key": "O2",
                "patient_key": "L1",
                "visit_serial": "V1",
                "encounter_type": "inpatient",
                "ordered_at": T(2024, 2, 3, 8),
            },
            # its visit is in no export
            {
                "system": "lis",
                "record_key": "O3",
                "patient_key": "L1",
                "visit_serial": "LOST",
                "encounter_type": "outpatient",
                "ordered_at": T(2024, 4, 1, 8),
            },
        ],
        "lab_result": [
            {
                "system": "lis",
                "record_key": "R1",
                "order_key": "O1",
                "item_code": "GLU",
                "code_system": "x",
                "value": 5.1,
                "resulted_at": T(2024, 1, 1, 12),
            },
            {
                "system": "lis",
                "record_key": "R2",
                "order_key": "O2",
                "item_code": "GLU",
                "code_system": "x",
                "resulted_at": T(2024, 2, 3, 12),
            },
            {
                "system": "lis",
                "record_key": "R3",
                "order_key": "O9",
                "item_code": "GLU",
                "code_system": "x",
                "resulted_at": T(2024, 2, 3, 12),
            },
            # taken outside any visit: the person only
            {
                "system": "lis",
                "record_key": "R4",
                "patient_key": "L1",
                "item_code": "GLU",
                "code_system": "x",
                "resulted_at": T(2024, 5, 1, 12),
            },
        ],
    }


def _link(ws: Path, tables: dict[str, list[dict[str, Any]]], **site: Any) -> dict[str, Any]:
    write_staging(ws, tables, **site)
    report = link_workspace(ws)
    out = ws / "link"
    events = {(e["table"], e["record_key"]): e for e in pq.read_table(out / "events.parquet").to_pylist()}
    visits = {v["visit_id"]: v for v in pq.read_table(out / "visits.parquet").to_pylist()}
    persons = {p["record_id"]: p for p in pq.read_table(out / "person_records.parquet").to_pylist()}
    return {"report": report, "events": events, "visits": visits, "persons": persons}


def test_two_systems_without_imaging_link_persons_visits_and_events(tmp_path: Path) -> None:
    got = _link(tmp_path, _base())
    persons, events, visits = got["persons"], got["events"], got["visits"]
    assert set(persons) == {"his:H1", "lis:L1"}
    assert persons["his:H1"]["person_id"] == persons["lis:L1"]["person_id"]  # the visit serial
    assert persons["lis:L1"]["system"] == "lis" and persons["lis:L1"]["patient_key"] == "L1"
    pid = persons["his:H1"]["person_id"]
    assert set(visits) == {"V1", "V2", "V4"}
    assert visits["V4"]["status"] == "refunded"  # kept, with its status
    assert events[("lab_order", "O1")]["status"] == "linked"
    assert events[("lab_order", "O1")]["visit_id"] == "V1"
    o2 = events[("lab_order", "O2")]
    assert (o2["status"], o2["visit_id"], o2["parent_missing"]) == ("relinked", "V2", False)
    o3 = events[("lab_order", "O3")]
    assert (o3["status"], o3["visit_id"], o3["parent_missing"]) == ("orphan", None, True)
    assert o3["person_id"] == pid
    assert "not found in any encounter export" in o3["reason"]
    assert (events[("lab_result", "R1")]["visit_id"], events[("lab_result", "R1")]["status"]) == (
        "V1",
        "linked",
    )
    assert events[("lab_result", "R2")]["visit_id"] == "V2"
    r3 = events[("lab_result", "R3")]
    assert (r3["status"], r3["parent_missing"]) == ("orphan", True)
    assert "lab order not found" in r3["reason"]
    r4 = events[("lab_result", "R4")]
    assert (r4["status"], r4["person_id"], r4["visit_id"]) == ("linked", pid, None)
    # every staged row has one event
    assert len(events) == 2 + 3 + 3 + 4
    assert not any(t.startswith("imaging") for t, _ in events)
    manifest = (tmp_path / "link" / "manifest.json").read_text()
    assert '"lab_order/lis"' in manifest


def test_stays_merge_across_systems_by_precedence_with_recall_and_icu(tmp_path: Path) -> None:
    tables = _base()
    tables["encounter"] += [
        # the EMR front sheet of the same stay: no serial, the inpatient number and count
        {
            "system": "emr",
            "record_key": "ZY1-1",
            "patient_key": "ZY1",
            "encounter_type": "inpatient",
            "inpatient_no": "ZY1",
            "admission_count": 1,
            "start_at": T(2024, 2, 1, 8, 30),
            "end_at": T(2024, 2, 5, 10),
            "department_code": "E-DEPT",
            "discharge_mode": "1",
        },
        # the HIS continuation row of a recalled discharge
        {
            "system": "his",
            "record_key": "V2R",
            "patient_key": "H1",
            "encounter_type": "inpatient",
            "visit_serial": "V2",
            "inpatient_no": "ZY1",
            "admission_count": 1,
            "recalled": True,
            "start_at": T(2024, 2, 5),
            "end_at": T(2024, 2, 8),
        },
        # an ICU stay inside it
        {
            "system": "icu",
            "record_key": "ICU7",
            "patient_key": "C1",
            "encounter_type": "icu",
            "visit_serial": "ICU7",
            "parent_visit_serial": "V2",
            "start_at": T(2024, 2, 2),
            "end_at": T(2024, 2, 3),
        },
    ]
    tables["settlement"] = [
        {
            "system": "insurance",
            "record_key": "S1",
            "patient_key": RID,
            "inpatient_no": "ZY1",
            "admitted_at": T(2024, 2, 1),
        },
    ]
    tables["procedure"] = [
        {
            "system": "surgery",
            "record_key": "OP1",
            "patient_key": "S9",
            "inpatient_no": "ZY1",
            "admission_count": 1,
            "performed_at": T(2024, 2, 2, 9),
        },
        {
            "system": "surgery",
            "record_key": "OP2",
            "patient_key": "S9",
            "inpatient_no": "ZY1",
            "admission_count": 2,
            "performed_at": T(2024, 6, 2, 9),
        },
    ]
    got = _link(tmp_path, tables, precedence=("emr", "his", "lis"))
    visits, events, persons = got["visits"], got["events"], got["persons"]
    assert set(visits) == {"V1", "V2", "V4", "ICU7"}
    stay = visits["V2"]
    assert stay["department_code"] == "E-DEPT"  # the EMR comes first in precedence
    assert stay["end"] == T(2024, 2, 8)  # the recalled discharge's continuation ends the stay
    assert stay["systems"] == "emr,his"
    assert (stay["inpatient_no"], stay["admission_count"], stay["parent_visit_id"]) == ("ZY1", 1, None)
    icu = visits["ICU7"]
    assert (icu["parent_visit_id"], icu["visit_type"]) == ("V2", "icu")
    assert icu["person_id"] == stay["person_id"] == persons["icu:C1"]["person_id"]
    for key in ("V2", "V2R", "ZY1-1"):
        assert events[("encounter", key)]["visit_id"] == "V2", key
    assert events[("encounter", "ICU7")]["visit_id"] == "ICU7"
    s1 = events[("settlement", "S1")]
    assert (s1["status"], s1["visit_id"]) == ("linked", "V2")
    assert "inpatient number and event time" in s1["reason"]
    assert (events[("procedure", "OP1")]["visit_id"], events[("procedure", "OP1")]["status"]) == (
        "V2",
        "linked",
    )
    op2 = events[("procedure", "OP2")]
    assert (op2["status"], op2["parent_missing"], op2["visit_id"]) == ("orphan", True, None)
    # the surgery patient is the HIS patient: same inpatient number (numbered per patient here)
    assert persons["surgery:S9"]["person_id"] == persons["his:H1"]["person_id"]


def test_a_quarantined_patient_makes_its_visits_orphans_with_the_reason(tmp_path: Path) -> None:
    tables = _base()
    tables["encounter"].append(
        {
            "system": "his",
            "record_key": "V9",
            "patient_key": "H2",
            "encounter_type": "outpatient",
            "visit_serial": "V9",
            "start_at": T(2024, 1, 9, 9),
        }
    )
    tables["charge"] = [
        {
            "system": "his",
            "record_key": "C9",
            "patient_key": "H2",
            "visit_serial": "V9",
            "amount": 5.0,
            "charged_at": T(2024, 1, 9, 10),
        },
    ]
    quarantine = [
        {
            "system": "his",
            "table": "patients",
            "file": "his/patients.csv",
            "row": 7,
            "field": "birth_date",
            "rule": "date",
            "reason": "impossible date",
            "raw": "{}",
            "key": "H2",
        },
    ]
    got = _link(tmp_path, tables, quarantine=quarantine)
    events = got["events"]
    for key in (("encounter", "V9"), ("charge", "C9")):
        e = events[key]
        assert (e["status"], e["parent_missing"]) == ("orphan", True), key
        assert e["reason"] == "its patient record was quarantined (his/patients.csv:7, date)"
        assert e["person_id"] is not None  # never a NULL person silently
    assert got["report"].orphans >= 2
    assert events[("encounter", "V1")]["status"] == "linked"


def test_a_quarantined_order_makes_its_results_orphans(tmp_path: Path) -> None:
    tables = _base()
    tables["lab_result"].append(
        {"system": "lis", "record_key": "R8", "order_key": "O8", "item_code": "GLU", "code_system": "x"}
    )
    quarantine = [
        {
            "system": "lis",
            "table": "lab_order",
            "file": "lis/requests.csv",
            "row": 3,
            "field": "record_key",
            "rule": "required",
            "reason": "missing",
            "raw": "{}",
            "key": "O8",
        },
    ]
    got = _link(tmp_path, tables, quarantine=quarantine)
    r8 = got["events"][("lab_result", "R8")]
    assert (r8["status"], r8["parent_missing"]) == ("orphan", True)
    assert r8["reason"] == "its lab order was quarantined (lis/requests.csv:3, required)"


def test_a_site_without_encounters_is_refused_by_name(tmp_path: Path) -> None:
    tables = _base()
    tables["encounter"] = []
    write_staging(tmp_path, tables)
    with pytest.raises(InputError, match="maps no encounters"):
        link_workspace(tmp_path)


def test_rows_naming_no_patient_are_refused_not_silently_empty(tmp_path: Path) -> None:
    tables = {
        "encounter": [
            {
                "system": "his",
                "record_key": "V1",
                "encounter_type": "outpatient",
                "visit_serial": "V1",
                "start_at": T(2024, 1, 1, 9),
            }
        ]
    }
    write_staging(tmp_path, tables)
    with pytest.raises(InputError, match="patient_key"):
        link_workspace(tmp_path)


def test_a_workspace_path_with_both_quotes_links(tmp_path: Path) -> None:
    ws = tmp_path / 'it\'s a "quoted" workspace'
    got = _link(ws, _base())
    assert got["report"].persons == 1
    assert (ws / "medspace.duckdb").exists()


def test_one_system_with_admission_numbers_icu_stays_and_labs_outside_visits(tmp_path: Path) -> None:
    # a MIMIC-like site: one system, a visit serial per admission, ICU stays naming their admission,
    # lab results that belong to the patient only
    tables: dict[str, list[dict[str, Any]]] = {
        "patient": [{"system": "db", "record_key": "7", "patient_key": "7", "sex": "F"}],
        "encounter": [
            {
                "system": "db",
                "record_key": "100",
                "patient_key": "7",
                "encounter_type": "inpatient",
                "visit_serial": "100",
                "start_at": T(2130, 1, 1),
                "end_at": T(2130, 1, 9),
            },
            {
                "system": "db",
                "record_key": "icu:5",
                "patient_key": "7",
                "encounter_type": "icu",
                "visit_serial": "100",
                "parent_visit_serial": "100",
                "start_at": T(2130, 1, 2),
                "end_at": T(2130, 1, 4),
            },
        ],
        "lab_result": [
            {
                "system": "db",
                "record_key": "L1",
                "patient_key": "7",
                "visit_serial": "100",
                "item_code": "50912",
                "code_system": "x",
                "resulted_at": T(2130, 1, 3),
            },
            {
                "system": "db",
                "record_key": "L2",
                "patient_key": "7",
                "item_code": "50912",
                "code_system": "x",
                "resulted_at": T(2131, 1, 3),
            },
        ],
    }
    got = _link(tmp_path, tables, patient_index="db", precedence=("db",), inpatient_no="per_admission")
    visits, events = got["visits"], got["events"]
    assert set(visits) == {"100", "db:icu:5"}
    assert visits["db:icu:5"]["parent_visit_id"] == "100"
    assert events[("lab_result", "L1")]["visit_id"] == "100"
    l2 = events[("lab_result", "L2")]
    assert (l2["status"], l2["visit_id"], l2["person_id"]) == ("linked", None, visits["100"]["person_id"])
    assert got["report"].persons == 1


def test_progress_counts_each_step_up_to_a_fixed_total(tmp_path: Path) -> None:
    write_staging(tmp_path, _base())
    recorder = ProgressRecorder()
    link_workspace(tmp_path, progress=recorder)
    assert_honest_progress(recorder.calls)
    # the person steps, the visits, a group of tables each (patient, encounter, then the lab orders and their
    # results as children), the registry and the files written
    assert recorder.calls[-1][1] == len(PERSON_STEPS) + 1 + 4 + 5
