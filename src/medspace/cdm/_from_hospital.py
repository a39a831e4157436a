"""Builds OMOP CDM v5.4 tables from a hospital's staged and linked data.

Each ``_<table>`` function is one Ibis expression over the staged tables (``staging/``) and the link stage's
output (``link/``); `conform` gives it exactly the columns and types of the official spec, so the same code
runs on DuckDB and on Spark and every table is checked against the schema it claims. Source codes are kept in
``*_source_value``; concepts come from the mapping tables (data files), 0 where none is known. Units are
converted to one canonical unit per test with the conversions in ``unit_conversions.csv``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa

from medspace.core import (
    EngineName,
    InputError,
    Workspace,
    connect,
    materialise,
    refresh_catalog,
    replace_folder,
    small_table,
    write_parquet,
)

from ._mappings import Mappings, load_mappings
from ._schema import cdm_schema
from ._units import to_canonical_ibis

# OMOP standard concepts used as constants.
EHR = 32817  # Type Concept "EHR": every record here comes from the hospital's own systems
CLAIM = 32810  # Type Concept "Claim": insurance settlement lists
_IBIS_TYPES = {
    "integer": "int64",
    "float": "float64",
    "date": "date",
    "datetime": "timestamp",
    "varchar": "string",
}
# Addresses keep the district at most: the CDM needs where people live, not their street.
_DISTRICT = r"^(?:[^市省]+[市省])?(?:[^市]+市)?([^区县市]+(?:新区|区|县))"
_CITY = r"^([^市省]+[市省])"


def conform(expr: Any, table: str) -> Any:
    """Exactly the spec's columns of ``table``, in its order and types (missing columns as nulls)."""
    columns = {}
    for f in cdm_schema()[table].fields:
        dtype = _IBIS_TYPES[f.datatype]
        columns[f.name] = expr[f.name].cast(dtype) if f.name in expr.columns else ibis.null(dtype)
    return expr.select(**columns)


class HospitalData:
    """The staged tables, the link stage's output and the mappings of one workspace, on one backend."""

    def __init__(self, con: Any, workspace: Path, mappings: Mappings | None = None) -> None:
        self.con = con
        self.workspace = workspace
        self.mappings = mappings or load_mappings()

    def staged(self, system: str, table: str) -> Any:
        path = self.workspace / "staging" / system / f"{table}.parquet"
        return self.con.read_parquet(str(path), table_name=f"cdm_in_{system}_{table}")

    def linked(self, name: str) -> Any:
        return self.con.read_parquet(
            str(self.workspace / "link" / f"{name}.parquet"), table_name=f"cdm_link_{name}"
        )

    def events(self, system: str, table: str) -> Any:
        e = self.linked("events")
        e = e.filter((e.system == system) & (e.table == table))
        return e.select(
            ev_file=e.source_file,
            ev_row=e.source_row,
            ev_person=e.person_id,
            ev_visit=e.visit_id,
            ev_status=e.status,
        )

    def with_events(self, system: str, table: str) -> Any:
        """Staged rows with the person and visit the link stage gave them (rows without a person dropped)."""
        t = self.staged(system, table)
        e = self.events(system, table)
        j = t.join(e, [t._source_file == e.ev_file, t._source_row == e.ev_row])
        return j.filter(j.ev_person.notnull())

    def table(self, name: str, rows: list[dict[str, Any]], schema: pa.Schema) -> Any:
        return small_table(self.con, f"cdm_map_{name}", pa.Table.from_pylist(rows, schema=schema))


def person_key(text: Any) -> Any:
    """medspace person ids (``P00001234``) as OMOP integer ids."""
    return text.substr(1).cast("int64")


def _with_visit_occurrence(t: Any, ids: Any, visit: str, how: str = "left") -> Any:
    """Add ``v_occ``, the ``visit_occurrence_id`` of the linked visit named in column ``visit``."""
    vmap = ids.select(v_id="visit_id", v_occ="visit_occurrence_id")
    return t.join(vmap, t[visit] == vmap.v_id, how=how)


def _ranked(t: Any, *order: Any) -> Any:
    """An id for each distinct value of ``order`` (rows sharing it share the id)."""
    return (ibis.dense_rank().over(order_by=list(order)) + 1).cast("int64")


def _numbered(t: Any, *order: Any) -> Any:
    """A unique id per row, in a deterministic order ending with the row's source (file, row, field)."""
    return (ibis.row_number().over(order_by=[*order, t.src]) + 1).cast("int64")


def _src(t: Any, tag: str = "") -> Any:
    """Where a row came from, as one sortable string: ``file:row`` (plus the field it was unpivoted from)."""
    return t._source_file + ":" + t._source_row.cast("string").lpad(9, "0") + tag


# ---------------------------------------------------------------------------------------- reference tables
def care_sites(h: HospitalData) -> Any:
    """Departments; a code without its letter prefix (domain.md §1.4) is resolved by the department name."""
    rows = [
        {"code": d.code, "stripped": d.stripped_code, "name": d.name} for d in h.mappings.departments.values()
    ]
    deps = h.table(
        "departments",
        rows,
        pa.schema([("code", pa.string()), ("stripped", pa.string()), ("name", pa.string())]),
    )
    return deps.mutate(
        care_site_id=_ranked(deps, deps.code),
        care_site_name=deps.name,
        place_of_service_concept_id=0,
        care_site_source_value=deps.code,
        place_of_service_source_value=deps.name,
    )


def resolve_department(h: HospitalData, t: Any, code: str, name: str | None, sites: Any) -> Any:
    """Add ``care_site_id`` to ``t`` from a department code (full, or stripped plus the department name)."""
    s = sites.select(s_code="code", s_stripped="stripped", s_name="name", care_site_id="care_site_id")
    full = t[code] == s.s_code
    stripped = t[code] == s.s_stripped
    cond = full | (stripped & (t[name] == s.s_name)) if name is not None else full
    return t.left_join(s, cond).drop("s_code", "s_stripped", "s_name")


def locations(h: HospitalData) -> Any:
    his = h.staged("his", "patients")
    loc = his.select(city=his.address.re_extract(_CITY, 1), county=his.address.re_extract(_DISTRICT, 1))
    loc = loc.filter(loc.county != "").distinct()
    return loc.mutate(
        location_id=_ranked(loc, loc.city, loc.county), location_source_value=loc.city + loc.county
    )


def providers(h: HospitalData) -> Any:
    reg = h.staged("his", "registrations")
    ops = h.staged("surgery", "operations")
    names = ibis.union(reg.select(name=reg.doctor), ops.select(name=ops.surgeon), distinct=True)
    names = names.filter(names.name.notnull())
    return names.mutate(
        provider_id=_ranked(names, names.name), provider_name=names.name, provider_source_value=names.name
    )


# ----------------------------------------------------------------------------------------------- persons
def persons(h: HospitalData, location: Any) -> Any:
    """One person per linked person; sex, birth date and district from the HIS master index when it knows
    the person (the first registration if registered twice), else from the EMR front sheet."""
    records = h.linked("person_records")
    his = h.staged("his", "patients")
    his = his.select(
        record_id="his:" + his.his_patient_id,
        sex=his.sex,
        birth_date=his.birth_date,
        address=his.address,
        order=his.registered_date.cast("string") + his.his_patient_id,
    )
    fs = h.staged("emr", "front_sheets")
    fs = fs.select(
        record_id="emr:" + fs.inpatient_no,
        sex=fs.sex,
        birth_date=fs.birth_date,
        address=fs.address,
        order="~" + fs.inpatient_no,
    )
    ident = ibis.union(his, fs, distinct=False)
    j = records.join(ident, "record_id")
    j = j.mutate(rank=ibis.row_number().over(group_by=j.person_id, order_by=j.order))
    j = j.filter(j.rank == 0)
    j = j.mutate(county=j.address.re_extract(_DISTRICT, 1), city=j.address.re_extract(_CITY, 1))
    loc = location.select(loc_city="city", loc_county="county", loc_id="location_id")
    j = j.left_join(loc, [j.city == loc.loc_city, j.county == loc.loc_county])
    everyone = records.select("person_id").distinct()
    p = everyone.left_join(j, "person_id")
    p = p.left_join(_year_from_age(h, records), "person_id")
    return p.select(
        person_id=person_key(p.person_id),
        gender_concept_id=ibis.cases((p.sex == "M", 8507), (p.sex == "F", 8532), else_=0),
        # persons known only from LIS or RIS (orphans) have an age, not a birth date: year only
        year_of_birth=ibis.coalesce(p.birth_date.year(), p.age_year),
        month_of_birth=p.birth_date.month(),
        day_of_birth=p.birth_date.day(),
        birth_datetime=p.birth_date.cast("timestamp"),
        race_concept_id=0,
        ethnicity_concept_id=0,
        location_id=p.loc_id,
        person_source_value=p.person_id,
        gender_source_value=p.sex,
        gender_source_concept_id=0,
    )


def _year_from_age(h: HospitalData, records: Any) -> Any:
    """Year of birth from the ages LIS requests and RIS exams state (the latest event wins)."""
    lis = h.with_events("lis", "requests").select(
        person_id="ev_person", age="age_years", at=ibis._.ordered_at.cast("timestamp")
    )
    ris = h.with_events("ris", "exams").select(
        person_id="ev_person", age="age_years", at=ibis._.requested_at.cast("timestamp")
    )
    ages = ibis.union(lis, ris, distinct=False)
    ages = ages.filter(ages.age.notnull())
    ages = ages.mutate(rank=ibis.row_number().over(group_by=ages.person_id, order_by=ibis.desc(ages.at)))
    ages = ages.filter(ages.rank == 0)
    return ages.select(person_id=ages.person_id, age_year=(ages.at.year() - ages.age).cast("int64"))


# ------------------------------------------------------------------------------------------------ visits
def visit_ids(h: HospitalData) -> Any:
    """Every linked visit that happened (refunded and cancelled registrations are not visits)."""
    v = h.linked("visits")
    v = v.filter(v.status == "done")
    return v.mutate(visit_occurrence_id=_ranked(v, v.visit_id))


def visits(h: HospitalData, ids: Any, sites: Any) -> Any:
    v = resolve_department(h, ids, "department_code", None, sites)
    fs = h.staged("emr", "front_sheets").select(
        fs_ino="inpatient_no", fs_count="admission_count", route="admission_route", mode="discharge_mode"
    )
    v = v.left_join(fs, [v.inpatient_no == fs.fs_ino, v.admission_count == fs.fs_count.cast("int64")])
    concept = {vt.visit_type: vt.visit_concept_id for vt in h.mappings.visit_types.values()}
    return v.select(
        visit_occurrence_id=v.visit_occurrence_id,
        person_id=person_key(v.person_id),
        visit_concept_id=ibis.cases(*((v.visit_type == k, c) for k, c in sorted(concept.items())), else_=0),
        visit_start_date=v.start.date(),
        visit_start_datetime=v.start,
        visit_end_date=v.end.date(),
        visit_end_datetime=v.end,
        visit_type_concept_id=EHR,
        care_site_id=v.care_site_id,
        visit_source_value=v.visit_id,
        visit_source_concept_id=0,
        admitted_from_concept_id=0,
        admitted_from_source_value=v.route,
        discharged_to_concept_id=0,
        discharged_to_source_value=v.mode,
    )


def visit_details(h: HospitalData, ids: Any, sites: Any) -> Any:
    """Ward segments of stays: the admitting department until a transfer, then the receiving one."""
    stays = ids.filter(ids.visit_type == "inpatient")
    tr = h.staged("his", "transfers").select(
        t_ino="inpatient_no", t_count="admission_count", at="transferred_at", to_code="to_department_code"
    )
    tr = tr.mutate(t_count=tr.t_count.cast("int64"))
    j = stays.left_join(tr, [stays.inpatient_no == tr.t_ino, stays.admission_count == tr.t_count])
    first = j.select(
        "visit_occurrence_id",
        "person_id",
        "visit_id",
        dept=j.department_code,
        start=j.start.cast("timestamp"),
        end=ibis.coalesce(j.at.cast("timestamp"), j.end.cast("timestamp")),
        seg=ibis.literal(1),
    )
    second = j.filter(j.at.notnull()).select(
        "visit_occurrence_id",
        "person_id",
        "visit_id",
        dept=j.to_code,
        start=j.at.cast("timestamp"),
        end=j.end.cast("timestamp"),
        seg=ibis.literal(2),
    )
    d = ibis.union(first, second, distinct=False)
    d = resolve_department(h, d, "dept", None, sites)
    d = d.mutate(visit_detail_id=_ranked(d, d.visit_id, d.seg))
    return d.select(
        visit_detail_id=d.visit_detail_id,
        person_id=person_key(d.person_id),
        visit_detail_concept_id=9201,
        visit_detail_start_date=d.start.date(),
        visit_detail_start_datetime=d.start,
        visit_detail_end_date=d.end.date(),
        visit_detail_end_datetime=d.end,
        visit_detail_type_concept_id=EHR,
        care_site_id=d.care_site_id,
        visit_detail_source_value=d.dept,
        visit_detail_source_concept_id=0,
        admitted_from_concept_id=0,
        discharged_to_concept_id=0,
        visit_occurrence_id=d.visit_occurrence_id,
    )


def observation_periods(visit: Any) -> Any:
    per = visit.group_by("person_id").aggregate(
        observation_period_start_date=visit.visit_start_date.min(),
        observation_period_end_date=visit.visit_end_date.max(),
    )
    return per.mutate(observation_period_id=per.person_id, period_type_concept_id=EHR)


def deaths(visit: Any) -> Any:
    """Deaths in hospital: stays discharged with mode 5 (front sheet B34C)."""
    d = visit.filter(visit.discharged_to_source_value == "5")
    d = d.group_by("person_id").aggregate(
        death_date=d.visit_end_date.max(), death_datetime=d.visit_end_datetime.max()
    )
    return d.mutate(death_type_concept_id=EHR, cause_concept_id=0)


# --------------------------------------------------------------------------------------------- clinical
def _diagnosis_map(h: HospitalData) -> Any:
    rows = [
        {
            "dx_code": d.code,
            "condition_concept_id": d.condition_concept_id,
            "source_concept": d.icd10_concept_id,
        }
        for d in h.mappings.diagnoses.values()
    ]
    schema = pa.schema(
        [("dx_code", pa.string()), ("condition_concept_id", pa.int64()), ("source_concept", pa.int64())]
    )
    return h.table("diagnoses", rows, schema)


def conditions(h: HospitalData, ids: Any) -> Any:
    reg = h.with_events("his", "registrations")
    reg = reg.filter((reg.status == "done") & reg.diagnosis_code.notnull() & (reg.diagnosis_code != ""))
    outpatient = reg.select(
        person=reg.ev_person,
        visit=reg.ev_visit,
        code=reg.diagnosis_code,
        day=reg.registered_at.cast("timestamp"),
        status=ibis.literal("outpatient"),
        src=_src(reg),
    )
    fs = h.with_events("emr", "front_sheets")
    columns = [("main_diagnosis_code", "main")] + [(f"other_diagnosis_code_{i}", "other") for i in (1, 2, 3)]
    stays = [
        fs.filter(fs[col].notnull() & (fs[col] != "")).select(
            person=fs.ev_person,
            visit=fs.ev_visit,
            code=fs[col],
            day=fs.admitted_at.cast("timestamp"),
            status=ibis.literal(status),
            src=_src(fs, col),
        )
        for col, status in columns
    ]
    c = ibis.union(outpatient, *stays, distinct=False)
    dx = _diagnosis_map(h)
    c = c.left_join(dx, c.code == dx.dx_code)
    c = _with_visit_occurrence(c, ids, "visit")
    c = c.mutate(condition_occurrence_id=_numbered(c, c.person, c.day))
    return c.select(
        condition_occurrence_id=c.condition_occurrence_id,
        person_id=person_key(c.person),
        condition_concept_id=c.condition_concept_id.fill_null(0),
        condition_start_date=c.day.date(),
        condition_start_datetime=c.day,
        condition_type_concept_id=EHR,
        condition_status_concept_id=0,
        visit_occurrence_id=c.v_occ,
        condition_source_value=c.code,
        condition_source_concept_id=c.source_concept.fill_null(0),
        condition_status_source_value=c.status,
    )


def drugs(h: HospitalData, ids: Any) -> Any:
    rx = h.with_events("his", "prescriptions")
    rx = rx.select(
        person=rx.ev_person,
        visit=rx.ev_visit,
        code=rx.drug_code,
        start=rx.prescribed_at.cast("timestamp"),
        end=rx.prescribed_at.cast("timestamp"),
        quantity=rx.quantity.cast("float64"),
        name=rx.drug_name,
        src=_src(rx),
    )
    orders = h.with_events("his", "orders")
    orders = orders.filter(orders.drug_code.notnull() & (orders.drug_code != ""))
    orders = orders.select(
        person=orders.ev_person,
        visit=orders.ev_visit,
        code=orders.drug_code,
        start=orders.started_at.cast("timestamp"),
        end=orders.stopped_at.cast("timestamp"),
        quantity=ibis.null("float64"),
        name=orders.content,
        src=_src(orders),
    )
    d = ibis.union(rx, orders, distinct=False)
    d = _with_visit_occurrence(d, ids, "visit")
    d = d.mutate(drug_exposure_id=_numbered(d, d.person, d.start))
    # No RxNorm mapping of the national insurance drug codes ships yet: concept 0, the code kept as source.
    return d.select(
        drug_exposure_id=d.drug_exposure_id,
        person_id=person_key(d.person),
        drug_concept_id=0,
        drug_exposure_start_date=d.start.date(),
        drug_exposure_start_datetime=d.start,
        drug_exposure_end_date=d.end.date(),
        drug_exposure_end_datetime=d.end,
        drug_type_concept_id=EHR,
        quantity=d.quantity,
        visit_occurrence_id=d.v_occ,
        drug_source_value=d.code,
        drug_source_concept_id=0,
    )


def procedures(h: HospitalData, ids: Any, provider: Any) -> Any:
    rows = [
        {
            "px_code": p.code,
            "procedure_concept_id": p.procedure_concept_id,
            "source_concept": p.icd9cm3_concept_id,
        }
        for p in h.mappings.procedures.values()
    ]
    schema = pa.schema(
        [("px_code", pa.string()), ("procedure_concept_id", pa.int64()), ("source_concept", pa.int64())]
    )
    ops = h.with_events("surgery", "operations")
    ops = ops.select(
        person=ops.ev_person,
        visit=ops.ev_visit,
        code=ops.procedure_code,
        at=ops.operation_start.cast("timestamp"),
        end=ops.operation_end.cast("timestamp"),
        who=ops.surgeon,
        src=_src(ops),
    )
    exams = h.with_events("ris", "exams")
    exams = exams.select(
        person=exams.ev_person,
        visit=exams.ev_visit,
        code=exams.modality + ":" + exams.exam_name,
        at=exams.performed_at.cast("timestamp"),
        end=exams.performed_at.cast("timestamp"),
        who=exams.reporter,
        src=_src(exams),
    )
    p = ibis.union(ops, exams, distinct=False)
    px = h.table("procedures", rows, schema)
    p = p.left_join(px, p.code == px.px_code)
    p = _with_visit_occurrence(p, ids, "visit")
    pv = provider.select(pv_name="provider_name", pv_id="provider_id")
    p = p.left_join(pv, p.who == pv.pv_name)
    p = p.mutate(procedure_occurrence_id=_numbered(p, p.person, p.at))
    return p.select(
        procedure_occurrence_id=p.procedure_occurrence_id,
        person_id=person_key(p.person),
        procedure_concept_id=p.procedure_concept_id.fill_null(0),
        procedure_date=p.at.date(),
        procedure_datetime=p.at,
        procedure_end_date=p.end.date(),
        procedure_end_datetime=p.end,
        procedure_type_concept_id=EHR,
        provider_id=p.pv_id,
        visit_occurrence_id=p.v_occ,
        procedure_source_value=p.code,
        procedure_source_concept_id=p.source_concept.fill_null(0),
    )


def _range_bound(text: Any, which: int) -> Any:
    """Reference ranges as the LIS writes them: ``3.9-6.1`` or ``<5.7``."""
    both = text.re_extract(r"^\s*([0-9.]+)\s*-\s*([0-9.]+)\s*$", which)
    upper_only = text.re_extract(r"^\s*<\s*([0-9.]+)\s*$", 1)
    value = both if which == 1 else ibis.cases((both != "", both), else_=upper_only)
    return ibis.cases((value != "", value.cast("float64")), else_=ibis.null("float64"))


def measurements(h: HospitalData, ids: Any) -> Any:
    """Lab results in each test's canonical unit (the unit as reported kept in ``unit_source_value``)."""
    labs = h.mappings.lab_tests.values()
    rows = [
        {
            "lab_code": t.code,
            "measurement_concept_id": t.measurement_concept_id,
            "unit_concept_id": t.unit_concept_id,
        }
        for t in labs
    ]
    schema = pa.schema(
        [("lab_code", pa.string()), ("measurement_concept_id", pa.int64()), ("unit_concept_id", pa.int64())]
    )
    r = h.with_events("lis", "results")
    tubes = h.staged("lis", "specimens").select(tube="barcode", collected="collected_at")
    r = r.left_join(tubes, r.barcode == tubes.tube)
    lab = h.table("lab_tests", rows, schema)
    r = r.left_join(lab, r.item_code == lab.lab_code)
    r = _with_visit_occurrence(r, ids, "ev_visit")
    at = ibis.coalesce(r.collected.cast("timestamp"), r.reported_at.cast("timestamp"))
    low, high = _range_bound(r.reference_range, 1), _range_bound(r.reference_range, 2)
    r = r.mutate(
        at=at,
        canonical=to_canonical_ibis(r.item_code, r.value, r.unit, mappings=h.mappings),
        low=to_canonical_ibis(r.item_code, low, r.unit, mappings=h.mappings),
        high=to_canonical_ibis(r.item_code, high, r.unit, mappings=h.mappings),
    )
    r = r.mutate(measurement_id=_ranked(r, r.ev_person, r.at, r.barcode, r.item_code))
    return r.select(
        measurement_id=r.measurement_id,
        person_id=person_key(r.ev_person),
        measurement_concept_id=r.measurement_concept_id.fill_null(0),
        measurement_date=r.at.date(),
        measurement_datetime=r.at,
        measurement_type_concept_id=EHR,
        operator_concept_id=0,
        value_as_number=r.canonical.round(4),
        unit_concept_id=r.unit_concept_id.fill_null(0),
        range_low=r.low.round(4),
        range_high=r.high.round(4),
        visit_occurrence_id=r.v_occ,
        measurement_source_value=r.item_code,
        measurement_source_concept_id=0,
        unit_source_value=r.unit,
        value_source_value=r.value_text,
    )


def observations(h: HospitalData, ids: Any) -> Any:
    """Front-sheet facts with no better home: pathology morphology (C09C) and external cause (C12C)."""
    fs = h.with_events("emr", "front_sheets")
    parts = [
        fs.filter(fs[col].notnull() & (fs[col] != "")).select(
            person=fs.ev_person,
            visit=fs.ev_visit,
            code=fs[col],
            day=fs.discharged_at.cast("timestamp"),
            field=ibis.literal(field),
            src=_src(fs, col),
        )
        for col, field in (
            ("pathology_code", "C09C pathology morphology"),
            ("external_cause_code", "C12C external cause"),
        )
    ]
    o = ibis.union(*parts, distinct=False)
    o = _with_visit_occurrence(o, ids, "visit")
    o = o.mutate(observation_id=_numbered(o, o.person, o.day))
    return o.select(
        observation_id=o.observation_id,
        person_id=person_key(o.person),
        observation_concept_id=0,
        observation_date=o.day.date(),
        observation_datetime=o.day,
        observation_type_concept_id=EHR,
        value_as_string=o.code,
        visit_occurrence_id=o.v_occ,
        observation_source_value=o.code,
        observation_source_concept_id=0,
        qualifier_source_value=o.field,
    )


def notes(h: HospitalData, ids: Any) -> Any:
    """EMR clinical notes and RIS reports (findings and impression), text as written."""
    emr = h.with_events("emr", "notes")
    emr = emr.select(
        person=emr.ev_person,
        visit=emr.ev_visit,
        at=emr.written_at.cast("timestamp"),
        title=emr.title,
        text=emr.text,
        kind=emr.note_type,
        key=emr.note_id,
    )
    ris = h.with_events("ris", "exams")
    ris = ris.select(
        person=ris.ev_person,
        visit=ris.ev_visit,
        at=ris.reported_at.cast("timestamp"),
        title=ris.exam_name,
        text=ris.findings + "\n" + ris.impression,
        kind=ibis.literal("radiology-report"),
        key=ris.accession_no,
    )
    n = ibis.union(emr, ris, distinct=False)
    n = _with_visit_occurrence(n, ids, "visit")
    n = n.mutate(note_id=_ranked(n, n.kind, n.key))
    return n.select(
        note_id=n.note_id,
        person_id=person_key(n.person),
        note_date=n.at.date(),
        note_datetime=n.at,
        note_type_concept_id=EHR,
        note_class_concept_id=0,
        note_title=n.title,
        note_text=n.text,
        encoding_concept_id=0,
        language_concept_id=0,
        visit_occurrence_id=n.v_occ,
        note_source_value=n.kind,
    )


# ----------------------------------------------------------------------------------------------- payment
def payer_plan_periods(h: HospitalData) -> Any:
    s = h.with_events("insurance", "settlements")
    p = s.group_by([s.ev_person, s.insurance_type]).aggregate(
        start=s.admitted_at.cast("timestamp").date().min(), end=s.discharged_at.cast("timestamp").date().max()
    )
    p = p.mutate(payer_plan_period_id=_ranked(p, p.ev_person, p.insurance_type))
    return p.select(
        payer_plan_period_id=p.payer_plan_period_id,
        person_id=person_key(p.ev_person),
        payer_plan_period_start_date=p.start,
        payer_plan_period_end_date=p.end,
        payer_concept_id=0,
        payer_source_value=p.insurance_type,
        plan_concept_id=0,
        plan_source_value=p.insurance_type,
        person_key=p.ev_person,
        insurance_type=p.insurance_type,
    )


def costs(h: HospitalData, ids: Any, plans: Any) -> Any:
    """Charges per visit from the HIS bills, and what insurance paid per stay from the settlement lists."""
    b = h.with_events("his", "bills")
    b = b.group_by("ev_visit").aggregate(total=b.amount.sum())
    b = _with_visit_occurrence(b, ids, "ev_visit", how="inner")
    bills = b.select(
        event=b.v_occ,
        total_charge=b.total.round(2),
        total_paid=ibis.null("float64"),
        paid_by_payer=ibis.null("float64"),
        paid_by_patient=ibis.null("float64"),
        kind=ibis.literal(EHR),
        plan=ibis.null("int64"),
        source=ibis.literal("his/bills"),
    )
    s = h.with_events("insurance", "settlements")
    s = _with_visit_occurrence(s, ids, "ev_visit", how="inner")
    pl = plans.select(pl_person="person_key", pl_type="insurance_type", pl_id="payer_plan_period_id")
    s = s.left_join(pl, [s.ev_person == pl.pl_person, s.insurance_type == pl.pl_type])
    settled = s.select(
        event=s.v_occ,
        total_charge=ibis.null("float64"),
        total_paid=s.total_cost,
        paid_by_payer=s.fund_paid,
        paid_by_patient=s.self_paid,
        kind=ibis.literal(CLAIM),
        plan=s.pl_id,
        source=ibis.literal("insurance"),
    )
    c = ibis.union(bills, settled, distinct=False)
    c = c.mutate(cost_id=_ranked(c, c.source, c.event))
    return c.select(
        cost_id=c.cost_id,
        cost_event_id=c.event,
        cost_domain_id=ibis.literal("Visit"),
        cost_type_concept_id=c.kind,
        currency_concept_id=0,
        total_charge=c.total_charge,
        total_paid=c.total_paid,
        paid_by_payer=c.paid_by_payer,
        paid_by_patient=c.paid_by_patient,
        payer_plan_period_id=c.plan,
    )


def build_tables(h: HospitalData) -> dict[str, Any]:
    """Every CDM table the hospital's data fills, as Ibis expressions conforming to the spec."""
    sites = care_sites(h)
    location = locations(h)
    provider = providers(h)
    ids = materialise(h.con, visit_ids(h), "cdm_visit_ids")
    visit = materialise(h.con, visits(h, ids, sites), "cdm_visits")
    plans = payer_plan_periods(h)
    tables = {
        "location": location,
        "care_site": sites,
        "provider": provider,
        "person": persons(h, location),
        "visit_occurrence": visit,
        "visit_detail": visit_details(h, ids, sites),
        "observation_period": observation_periods(visit),
        "death": deaths(visit),
        "condition_occurrence": conditions(h, ids),
        "drug_exposure": drugs(h, ids),
        "procedure_occurrence": procedures(h, ids, provider),
        "measurement": measurements(h, ids),
        "observation": observations(h, ids),
        "note": notes(h, ids),
        "payer_plan_period": plans,
        "cost": costs(h, ids, plans),
    }
    return {name: conform(expr, name) for name, expr in tables.items()}


@dataclass(frozen=True)
class CdmBuildReport:
    """Rows written per CDM table."""

    tables: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def build_cdm(
    workspace: Path, engine: EngineName = "duckdb", *, progress: Callable[[int, int], None] | None = None
) -> CdmBuildReport:
    """Build the OMOP CDM tables of a staged and linked workspace into ``<workspace>/cdm/``.

    Args:
        workspace: the workspace folder, with ``staging/`` and ``link/`` (from ``ingest`` and ``link``).
        engine: ``"duckdb"`` or ``"spark"``; both write the same tables.
        progress: called as ``progress(tables_done, tables_total)`` after each table is written.

    Returns:
        Row counts per table.

    Raises:
        InputError: a stage's output the build needs is missing.
    """
    began = time.perf_counter()
    ws = Workspace(Path(workspace))
    for stage in ("staging", "link"):
        if not (ws.stage(stage) / "manifest.json").exists():
            raise InputError(
                f"the workspace has no {stage} output; run `medspace run` (or the stage) first",
                file=str(ws.stage(stage)),
            )
    con = connect(engine)
    tables = build_tables(HospitalData(con, ws.root))
    counts: dict[str, int] = {}
    with replace_folder(ws.stage("cdm")) as out:
        for name, expr in tables.items():
            key = cdm_schema()[name].fields[0].name
            counts[name] = write_parquet(con, expr.order_by(key), out / f"{name}.parquet")
            if progress is not None:
                progress(len(counts), len(tables))
        manifest = {"cdm_version": "5.4", "engine": engine, "source": "medspace hospital", "tables": counts}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    refresh_catalog(ws.root)
    return CdmBuildReport(counts, time.perf_counter() - began)
