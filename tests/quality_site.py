"""A tiny clean site of the canonical hospital model for the quality stage's tests: four systems that agree on
every fact they share, staged by hand (`staged_model.write_staging`) and linked by the real link stage.

Tests copy `baseline()`, break one fact on purpose, build the workspace and watch the one check that compares
that fact fail on the broken row. System names are neutral on purpose: no stage may know them.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

from medspace.core import make_resident_id, record_lineage, stage_lineage
from medspace.link import link_workspace
from staged_model import write_staging

T = dt.datetime
Tables = dict[str, list[dict[str, Any]]]

# "reg" registers patients, visits and stays and bills them (the patient index); "chart" keeps the stay's
# summary sheet and its diagnoses; "payer" settles stays; "lab" takes orders and keeps ages, not birth dates.
PRECEDENCE = ("chart", "reg", "payer", "lab")
RID1 = make_resident_id("110105", dt.date(1970, 1, 1), 13)  # odd sequence: male
RID2 = make_resident_id("110105", dt.date(1985, 6, 15), 24)  # even sequence: female
ADDRESS1 = "上海市浦东新区张江路1号"
ADDRESS2 = "上海市徐汇区漕溪路8号"


def _person(system: str, key: str, who: int, **extra: Any) -> dict[str, Any]:
    base = (
        {"name": "张三", "sex": "M", "birth_date": dt.date(1970, 1, 1), "resident_id": RID1}
        if who == 1
        else {"name": "李梅", "sex": "F", "birth_date": dt.date(1985, 6, 15), "resident_id": RID2}
    )
    return {"system": system, "record_key": key, "patient_key": key, **base, **extra}


def baseline() -> Tables:
    """Two persons, one stay and two outpatient visits, every fact the same in every system."""
    stay = {"inpatient_no": "I1", "admission_count": 1}
    return {
        "patient": [
            _person("reg", "R1", 1, phone="13800000001", address=ADDRESS1, inpatient_no="I1"),
            _person("reg", "R2", 2, phone="13800000002", address=ADDRESS2),
            _person("chart", "C1", 1, phone="13800000001", address=ADDRESS1, inpatient_no="I1"),
            _person("payer", "P1", 1),
            {
                "system": "lab",
                "record_key": "L1",
                "patient_key": "L1",
                "name": "张三",
                "sex": "M",
                "age_years": 50,
                "registered_date": dt.date(2020, 5, 10),
            },
        ],
        "encounter": [
            {
                "system": "reg",
                "record_key": "A1",
                "patient_key": "R1",
                "encounter_type": "inpatient",
                "visit_serial": "V1",
                **stay,
                "start_at": T(2020, 5, 8),
                "end_at": T(2020, 5, 11),
                "start_precision": "day",
                "discharge_mode": "1",
                "department_code": "NK0101",
                "bed_days": 3,
            },
            {
                "system": "chart",
                "record_key": "F1",
                "patient_key": "C1",
                "encounter_type": "inpatient",
                "visit_serial": "V1",
                **stay,
                "start_at": T(2020, 5, 8, 9),
                "end_at": T(2020, 5, 11, 14),
                "discharge_mode": "1",
                "department_code": "NK0101",
                "length_of_stay_days": 3,
                "total_cost": 1000.0,
            },
            {
                "system": "reg",
                "record_key": "G1",
                "patient_key": "R1",
                "encounter_type": "outpatient",
                "status": "done",
                "visit_serial": "V2",
                "start_at": T(2020, 5, 10, 9),
                "department_code": "WK0201",
            },
            {
                "system": "reg",
                "record_key": "G2",
                "patient_key": "R2",
                "encounter_type": "outpatient",
                "status": "done",
                "visit_serial": "V3",
                "start_at": T(2020, 5, 12, 9),
                "department_code": "WK0201",
            },
            {
                "system": "reg",
                "record_key": "G3",
                "patient_key": "R2",
                "encounter_type": "outpatient",
                "status": "refunded",
                "visit_serial": "V4",
                "start_at": T(2020, 5, 13, 9),
                "department_code": "WK0201",
            },
            {
                "system": "reg",
                "record_key": "G4",
                "patient_key": "R2",
                "encounter_type": "emergency",
                "status": "done",
                "visit_serial": "V5",
                "start_at": T(2020, 5, 14, 23),
                "department_code": "JZ0001",
            },
        ],
        "diagnosis": [
            {
                "system": "chart",
                "record_key": "F1-1",
                "patient_key": "C1",
                "visit_serial": "V1",
                **stay,
                "code": "E11.900",
                "code_system": "clinical",
                "name": "2型糖尿病",
                "rank": 1,
                "role": "discharge",
            },
            {
                "system": "reg",
                "record_key": "G1-1",
                "patient_key": "R1",
                "visit_serial": "V2",
                "code": "I10.x00",
                "code_system": "clinical",
                "name": "高血压",
                "rank": 1,
                "role": "outpatient",
            },
            {
                "system": "reg",
                "record_key": "G2-1",
                "patient_key": "R2",
                "visit_serial": "V3",
                "code": "I10.x00",
                "code_system": "clinical",
                "name": "高血压",
                "rank": 1,
                "role": "outpatient",
            },
            {
                "system": "payer",
                "record_key": "S1-1",
                "patient_key": "P1",
                "visit_serial": "V1",
                **stay,
                "code": "E11.900",
                "code_system": "insurance",
                "name": "2型糖尿病",
                "rank": 1,
                "role": "billing",
            },
        ],
        "procedure": [
            {
                "system": "chart",
                "record_key": "F1-p1",
                "patient_key": "C1",
                "visit_serial": "V1",
                **stay,
                "code": "47.0100",
                "code_system": "clinical",
                "rank": 1,
                "role": "front_sheet",
            },
            {
                "system": "chart",
                "record_key": "F1-p2",
                "patient_key": "C1",
                "visit_serial": "V1",
                **stay,
                "code": "54.2100",
                "code_system": "clinical",
                "rank": 2,
                "role": "front_sheet",
            },
            {
                "system": "reg",
                "record_key": "OP1",
                "patient_key": "R1",
                "visit_serial": "V1",
                **stay,
                "role": "theatre",
                "performed_at": T(2020, 5, 9, 10),
                "session_no": 1,
                "grade": 4,
                "minimally_invasive": True,
                "urgency": "elective",
                "day_surgery": False,
                "department_code": "WK0101",
            },
        ],
        "charge": [
            {
                "system": "reg",
                "record_key": "B1",
                "patient_key": "R1",
                "visit_serial": "V1",
                **stay,
                "setting": "inpatient",
                "category": "床位费",
                "amount": 600.0,
                "charged_at": T(2020, 5, 9),
            },
            {
                "system": "reg",
                "record_key": "B2",
                "patient_key": "R1",
                "visit_serial": "V1",
                **stay,
                "setting": "inpatient",
                "category": "药费",
                "amount": 400.0,
                "charged_at": T(2020, 5, 10),
            },
            {
                "system": "reg",
                "record_key": "B3",
                "patient_key": "R1",
                "visit_serial": "V2",
                "setting": "outpatient",
                "category": "挂号",
                "amount": 20.0,
                "charged_at": T(2020, 5, 10, 9),
            },
            {
                "system": "reg",
                "record_key": "B4",
                "patient_key": "R2",
                "visit_serial": "V3",
                "setting": "outpatient",
                "category": "挂号",
                "amount": 20.0,
                "charged_at": T(2020, 5, 12, 9),
            },
        ],
        "settlement": [
            {
                "system": "payer",
                "record_key": "S1",
                "patient_key": "P1",
                "visit_serial": "V1",
                **stay,
                "admitted_at": T(2020, 5, 8),
                "discharged_at": T(2020, 5, 11),
                "total_cost": 1000.0,
            },
        ],
        "lab_order": [
            {
                "system": "lab",
                "record_key": "O1",
                "patient_key": "L1",
                "visit_serial": "V2",
                "encounter_type": "outpatient",
                "clinical_diagnosis": "高血压",
                "ordered_at": T(2020, 5, 10, 9, 30),
            },
        ],
        "specimen": [
            {"system": "lab", "record_key": "SP1", "order_key": "O1", "collected_at": T(2020, 5, 10, 9, 40)},
        ],
        "lab_result": [
            {
                "system": "lab",
                "record_key": f"R{i}",
                "order_key": "O1",
                "specimen_key": "SP1",
                "patient_key": "L1",
                "item_code": "GLU",
                "code_system": "local",
                "value": 5.0 + i,
                "unit": "mmol/L",
                "reference_range": "3.9-6.1",
                "lab_site": "main",
                "resulted_at": T(2020, 5, 10, 11),
                "reviewed_at": T(2020, 5, 10, 13),
            }
            for i in range(1, 4)
        ],
    }


def build(workspace: Path, tables: Tables | None = None, **kwargs: Any) -> Path:
    """Stage ``tables`` (the baseline by default) into ``workspace`` and link them; return the workspace."""
    write_staging(
        workspace,
        copy.deepcopy(tables if tables is not None else baseline()),
        patient_index=kwargs.pop("patient_index", "reg"),
        precedence=kwargs.pop("precedence", PRECEDENCE),
        **kwargs,
    )
    link_workspace(workspace)
    return workspace


def row(tables: Tables, table: str, record_key: str) -> dict[str, Any]:
    """The baseline row of ``table`` with ``record_key`` (to break it in place)."""
    return next(r for r in tables[table] if r["record_key"] == record_key)


def link_by_hand(workspace: Path, tables: Tables) -> Path:
    """Write ``link/`` for the tiny site the way the link stage does, without running it (it takes most of
    a test's time on a shared machine): persons by resident ID, else by name; visits by visit serial, else
    by inpatient number and admission count; lab specimens and results through their order. A row naming a
    visit no system registered is an orphan. `test_canonical_checks` checks this against the real stage."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    persons: dict[str, str] = {}
    person_of: dict[tuple[str, str], str] = {}
    by_name: dict[str, str] = {}
    patients = tables.get("patient", [])
    for p in sorted(patients, key=lambda p: p.get("resident_id") is None):
        if p.get("resident_id"):
            person = persons.setdefault(p["resident_id"], f"P{len(persons) + 1:08d}")
            by_name.setdefault(p.get("name") or "", person)
        else:
            person = by_name.get(p.get("name") or "") or persons.setdefault(
                p["name"], f"P{len(persons) + 1:08d}"
            )
        person_of[(p["system"], p["patient_key"])] = person
    serials = {e["visit_serial"] for e in tables.get("encounter", []) if e.get("visit_serial")}
    stays = {
        (e["inpatient_no"], e["admission_count"]): e["visit_serial"]
        for e in tables.get("encounter", [])
        if e.get("inpatient_no") and not e.get("recalled")
    }
    orders = {o["record_key"]: o for o in tables.get("lab_order", [])}
    events = []
    for table, rows in tables.items():
        for i, r in enumerate(rows, start=1):
            parent = (
                r if table in ("patient", "lab_order") or "order_key" not in r else orders[r["order_key"]]
            )
            person = person_of.get((parent["system"], parent.get("patient_key") or ""))
            visit = None
            if table != "patient":
                serial = parent.get("visit_serial")
                visit = (
                    serial
                    if serial in serials
                    else stays.get((parent.get("inpatient_no"), parent.get("admission_count")))
                )
            orphan = table != "patient" and visit is None
            events.append(
                {
                    "table": table,
                    "system": r["system"],
                    "record_key": r["record_key"],
                    "source_file": r.get("_source_file", f"{r['system']}/{table}s.csv"),
                    "source_row": r.get("_source_row", i),
                    "person_id": person,
                    "visit_id": visit,
                    "status": "orphan" if orphan else "linked",
                    "parent_missing": orphan,
                    "reason": "visit serial not in any export" if orphan else None,
                }
            )
    link = workspace / "link"
    link.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(events), link / "events.parquet")
    visits = [
        {"visit_id": s, "visit_serial": s, "person_id": person_of.get((e["system"], e["patient_key"]))}
        for s in sorted(serials)
        for e in [next(e for e in tables["encounter"] if e.get("visit_serial") == s)]
    ]
    pq.write_table(pa.Table.from_pylist(visits), link / "visits.parquet")
    (link / "manifest.json").write_text("{}", encoding="utf-8")
    record_lineage(link, stage_lineage(workspace, "link", inputs=("staging",)))
    return workspace


def build_fast(workspace: Path, tables: Tables | None = None) -> Path:
    """`build` with `link_by_hand` in place of the link stage."""
    chosen = copy.deepcopy(tables if tables is not None else baseline())
    write_staging(workspace, copy.deepcopy(chosen), patient_index="reg", precedence=PRECEDENCE)
    return link_by_hand(workspace, chosen)
