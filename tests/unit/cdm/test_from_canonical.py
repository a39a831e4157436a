"""The CDM built from a tiny hand-made canonical hospital: each rule of the build on a row chosen for it,
the manifest accounting for every staged row, and no NULL in a required field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from canonical_hospital import CanonicalWorkspace, at, day, relineage
from medspace.cdm import build_cdm, cdm_schema
from medspace.cdm._hospital import model_schemas

GLU_FACTOR = 18.0182  # domain.md §1.5: glucose mg/dL = mmol/L x 18.0182


def tiny_hospital() -> CanonicalWorkspace:
    w = CanonicalWorkspace()
    # persons: P1 has two records (EMR first in precedence), P2 only an age, P3 nothing to date a birth by
    w.patient(
        "his",
        "H1",
        "P00000001",
        sex="M",
        birth_date=day(1960, 5, 1),
        registered_date=day(2020, 1, 1),
        address="浙江省杭州市西湖区文三路1号",
    )
    w.patient("emr", "E1", "P00000001", birth_date=day(1961, 1, 1))
    w.patient("lab", "L2", "P00000002", sex="F", age_years=40, registered_date=day(2024, 3, 1))
    w.patient("lab", "L3", "P00000003", sex="F")
    w.patient("lab", "L4", "P00000004", age_years=50)  # an age, dated by the patient's lab request
    w.row("lab_order", "lab", "O4", person="P00000004", patient_key="L4", ordered_at=at(2024, 6, 1))
    w.patient("lab", "L9", None)  # a patient record link could not place
    # visits: a stay that ended in death with an ICU stay, an outpatient visit, a refunded registration
    w.visit(
        "V1",
        "P00000001",
        "inpatient",
        at(2024, 1, 1),
        at(2024, 1, 5),
        department_code="NK0301",
        died_in_hospital=True,
    )
    w.visit(
        "V1-ICU",
        "P00000001",
        "icu",
        at(2024, 1, 3),
        at(2024, 1, 4),
        parent_visit_id="V1",
        department_code="ICU",
    )
    w.visit("V2", "P00000002", "outpatient", at(2024, 3, 1), None, status="done")
    w.visit("V3", "P00000002", "outpatient", at(2024, 3, 2), None, status="refunded")
    w.row(
        "encounter",
        "his",
        "A1",
        person="P00000001",
        visit="V1",
        encounter_type="inpatient",
        start_at=at(2024, 1, 1),
        doctor="王医生",
    )
    w.row(
        "encounter",
        "emr",
        "F1",
        person="P00000001",
        visit="V1",
        encounter_type="inpatient",
        start_at=at(2024, 1, 1),
    )
    w.row(
        "encounter",
        "icu",
        "I1",
        person="P00000001",
        visit="V1-ICU",
        encounter_type="icu",
        start_at=at(2024, 1, 3),
    )
    w.row(
        "encounter",
        "his",
        "R2",
        person="P00000002",
        visit="V2",
        encounter_type="outpatient",
        start_at=at(2024, 3, 1),
    )
    w.row(
        "encounter",
        "his",
        "R3",
        person="P00000002",
        visit="V3",
        encounter_type="outpatient",
        start_at=at(2024, 3, 2),
        status="refunded",
    )
    w.row(
        "transfer",
        "his",
        "T1",
        person="P00000001",
        visit="V1",
        transferred_at=at(2024, 1, 2),
        to_department_code="WK0101",
    )
    # diagnoses: dated by visit; a pathology code; an orphan; a person without a year; an unmapped system
    dx: dict[str, Any] = {"code_system": "icd10_gb_clinical_2"}
    w.row(
        "diagnosis",
        "emr",
        "D1",
        person="P00000001",
        visit="V1",
        code="E11.900",
        rank=1,
        role="discharge",
        **dx,
    )
    w.row(
        "diagnosis",
        "emr",
        "D2",
        person="P00000001",
        visit="V1",
        code="M8140/3",
        role="pathology",
        diagnosed_at=at(2024, 1, 4),
        **dx,
    )
    w.row("diagnosis", "emr", "D3", person=None, code="I10.x00x002", diagnosed_at=at(2024, 1, 1), **dx)
    w.row("diagnosis", "lab", "D4", person="P00000003", code="I10.x00x002", diagnosed_at=at(2024, 1, 1), **dx)
    w.row(
        "diagnosis",
        "his",
        "D5",
        person="P00000002",
        visit="V2",
        code="E11.900",
        code_system="who_icd10",
        diagnosed_at=at(2024, 3, 1),
    )
    w.row("diagnosis", "his", "D6", person="P00000002", code="E11.900", **dx)  # no time, no visit
    w.row(
        "procedure",
        "emr",
        "PX1",
        person="P00000001",
        visit="V1",
        code="13.4100x001",
        code_system="icd9cm3_gb_clinical_3",
        role="front_sheet",
    )
    # lab results: converted, canonical, unknown unit, unmapped test, text only
    lab: dict[str, Any] = {
        "person": "P00000001",
        "visit": "V1",
        "code_system": "lis_item",
        "resulted_at": at(2024, 1, 2),
    }
    w.row("lab_order", "lis", "O1", person="P00000001", visit="V1")
    w.row(
        "specimen",
        "lis",
        "S1",
        person="P00000001",
        visit="V1",
        order_key="O1",
        collected_at=at(2024, 1, 2, 6),
    )
    w.row(
        "lab_result",
        "lis",
        "L1",
        item_code="GLU",
        value=126.0,
        unit="mg/dL",
        specimen_key="S1",
        reference_range="70-110",
        **lab,
    )
    w.row("lab_result", "lis", "L2", item_code="GLU", value=5.0, unit="mmol/l", **lab)
    w.row("lab_result", "lis", "L3", item_code="GLU", value=1.1, unit="g/L", **lab)
    w.row("lab_result", "lis", "L4", item_code="XYZ", value=3.0, unit="U/L", **lab)
    w.row("lab_result", "lis", "L5", item_code="GLU", value_text="阴性", **lab)
    w.row(
        "medication_order",
        "his",
        "M1",
        person="P00000001",
        visit="V1",
        drug_code="XA10BA02",
        started_at=at(2024, 1, 2),
    )
    w.row("note", "emr", "N1", person="P00000001", visit="V1", text="入院记录", written_at=at(2024, 1, 1))
    w.row("note", "emr", "N2", person="P00000001", visit="V1", written_at=at(2024, 1, 1))
    w.row(
        "imaging_exam",
        "ris",
        "X1",
        person="P00000001",
        visit="V1",
        modality="CT",
        exam_name="胸部CT",
        performed_at=at(2024, 1, 2),
        findings="双肺纹理清晰",
        reporter="李医生",
    )
    w.row("imaging_study", "pacs", "1.2.3", person="P00000001", visit="V1")
    w.row("charge", "his", "C1", person="P00000001", visit="V1", amount=100.0)
    w.row("charge", "his", "C2", person="P00000001", visit="V1", amount=-20.0)
    w.row("charge", "his", "C3", person="P00000002", amount=5.0)
    w.row(
        "settlement",
        "insurance",
        "ST1",
        person="P00000001",
        visit="V1",
        insurance_type="职工",
        admitted_at=at(2024, 1, 1),
        discharged_at=at(2024, 1, 5),
        total_cost=80.0,
        fund_paid=60.0,
        self_paid=20.0,
    )
    return w


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tiny_hospital().write(tmp_path_factory.mktemp("tiny"))
    build_cdm(ws)
    return ws


def rows(ws: Path, name: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = pq.read_table(ws / "cdm" / f"{name}.parquet").to_pylist()
    return out


def manifest(ws: Path) -> dict[str, Any]:
    out: dict[str, Any] = json.loads((ws / "cdm" / "manifest.json").read_text(encoding="utf-8"))
    return out


def test_persons_take_each_fact_by_precedence_and_a_year_from_an_age(built: Path) -> None:
    people = {p["person_id"]: p for p in rows(built, "person")}
    assert set(people) == {1, 2, 4}  # P3 has no year of birth
    assert (people[1]["year_of_birth"], people[1]["month_of_birth"]) == (1961, 1)  # EMR before HIS
    assert people[1]["gender_concept_id"] == 8507  # only HIS knows the sex
    assert people[1]["location_id"] is not None
    assert (people[2]["year_of_birth"], people[2]["birth_datetime"]) == (1984, None)
    assert people[4]["year_of_birth"] == 1974


def test_visits_details_and_death(built: Path) -> None:
    v = rows(built, "visit_occurrence")
    assert sorted(r["visit_source_value"] for r in v) == ["V1", "V2"]
    open_visit = next(r for r in v if r["visit_source_value"] == "V2")
    assert open_visit["visit_end_date"] == open_visit["visit_start_date"]
    details = sorted(rows(built, "visit_detail"), key=lambda r: r["visit_detail_start_datetime"])
    assert [d["visit_detail_source_value"] for d in details] == ["NK0301", "WK0101", "ICU"]
    assert details[0]["visit_detail_end_datetime"] == at(2024, 1, 2)  # admitting ward until the transfer
    assert details[1]["visit_detail_end_datetime"] == at(2024, 1, 5)
    assert rows(built, "death") == [
        {
            "person_id": 1,
            "death_date": day(2024, 1, 5),
            "death_datetime": at(2024, 1, 5),
            "death_type_concept_id": 32817,
            "cause_concept_id": 0,
            "cause_source_value": None,
            "cause_source_concept_id": 0,
        }
    ]


def test_conditions_by_code_system_and_observations_by_role(built: Path) -> None:
    c = {
        r["condition_source_value"] + ":" + str(r["person_id"]): r
        for r in rows(built, "condition_occurrence")
    }
    assert set(c) == {"E11.900:1", "E11.900:2"}
    assert c["E11.900:1"]["condition_concept_id"] == 201826  # type 2 diabetes mellitus
    assert c["E11.900:1"]["condition_start_date"] == day(2024, 1, 1)  # dated by its visit
    assert c["E11.900:2"]["condition_concept_id"] == 0  # a code system no mapping knows: kept, concept 0
    (o,) = rows(built, "observation")
    assert (o["value_as_string"], o["qualifier_source_value"]) == ("M8140/3", "pathology")


def test_a_procedure_without_time_takes_its_visit_start(built: Path) -> None:
    p = {r["procedure_source_value"]: r for r in rows(built, "procedure_occurrence")}
    assert p["13.4100x001"]["procedure_date"] == day(2024, 1, 1)
    assert p["CT:胸部CT"]["provider_id"] is not None
    staged = manifest(built)["staged"]
    assert staged["procedure"]["dated_by_visit"] == 1
    assert staged["diagnosis"]["dated_by_visit"] == 1


def test_units_converted_canonical_or_kept_with_their_unit(built: Path) -> None:
    m = {r["value_source_value"]: r for r in rows(built, "measurement")}
    assert m["126.0"]["value_as_number"] == pytest.approx(126 / GLU_FACTOR, rel=1e-4)
    assert m["126.0"]["unit_concept_id"] == 8753
    assert m["126.0"]["range_high"] == pytest.approx(110 / GLU_FACTOR, rel=1e-4)
    assert m["126.0"]["measurement_datetime"] == at(2024, 1, 2, 6)  # the specimen's collection
    assert (m["5.0"]["value_as_number"], m["5.0"]["unit_concept_id"]) == (5.0, 8753)
    unknown = m["1.1"]
    assert (unknown["value_as_number"], unknown["unit_source_value"], unknown["unit_concept_id"]) == (
        1.1,
        "g/L",
        0,
    )
    assert (m["3.0"]["value_as_number"], m["3.0"]["unit_concept_id"]) == (3.0, 0)
    assert m["阴性"]["value_as_number"] is None
    assert manifest(built)["measurement_units"] == {
        "canonical": 1,
        "converted": 1,
        "unknown_unit": 2,
        "no_value": 1,
    }


def test_drugs_notes_costs_and_plans(built: Path) -> None:
    (d,) = rows(built, "drug_exposure")
    assert d["drug_exposure_end_date"] == d["drug_exposure_start_date"]
    notes = sorted(r["note_text"] for r in rows(built, "note"))
    assert notes == ["入院记录", "双肺纹理清晰"]
    cost = sorted(rows(built, "cost"), key=lambda r: r["cost_type_concept_id"])
    assert [(c["cost_type_concept_id"], c["total_charge"], c["total_paid"]) for c in cost] == [
        (32810, None, 80.0),
        (32817, 80.0, None),
    ]
    (plan,) = rows(built, "payer_plan_period")
    assert plan["payer_plan_period_start_date"] == day(2024, 1, 1)
    assert cost[0]["payer_plan_period_id"] == plan["payer_plan_period_id"]


def test_every_staged_row_is_accounted_for(built: Path) -> None:
    staged = manifest(built)["staged"]
    assert set(staged) == set(model_schemas())
    for table, entry in staged.items():
        n = pq.read_metadata(built / "staging" / f"{table}.parquet").num_rows
        assert entry["rows"] == n, table
        assert sum(entry["written"].values()) + sum(entry["excluded"].values()) == n, table
    assert staged["diagnosis"]["written"] == {"condition_occurrence": 2, "observation": 1}
    assert staged["diagnosis"]["excluded"] == {"orphan": 2, "no_date": 1}
    assert staged["encounter"]["written"] == {"visit_occurrence": 3, "visit_detail": 1}
    assert staged["encounter"]["excluded"] == {"not_a_visit": 1}
    assert staged["encounter"]["also_written"] == {"death": 2}
    assert staged["patient"]["excluded"] == {"orphan": 2}
    assert staged["charge"]["excluded"] == {"no_visit": 1}
    assert staged["imaging_exam"]["also_written"] == {"note": 1}
    assert staged["imaging_study"]["excluded"] == {"no_cdm_table": 1}


def test_no_required_field_is_null(built: Path) -> None:
    for path in sorted((built / "cdm").glob("*.parquet")):
        table = pq.read_table(path)
        spec = cdm_schema()[path.stem]
        assert table.column_names == list(spec.field_names)
        for f in spec.fields:
            if f.required:
                assert table.column(f.name).null_count == 0, f"{path.stem}.{f.name}"


def test_a_site_without_a_table_builds_the_rest(tmp_path: Path) -> None:
    ws = tiny_hospital().write(tmp_path)
    for table in ("lab_result", "imaging_exam", "transfer", "death", "settlement"):
        (ws / "staging" / f"{table}.parquet").unlink()
    relineage(ws)
    report = build_cdm(ws)
    assert report.tables["measurement"] == 0
    assert report.tables["payer_plan_period"] == 0
    assert report.tables["person"] == 3
    assert report.staged["lab_result"] == {"rows": 0, "written": {}, "excluded": {}, "dated_by_visit": 0}
