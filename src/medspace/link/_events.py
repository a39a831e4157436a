"""Event linkage: every staged record reaches its visit and its person, or is reported as an orphan.

Lab results reach their request by request number, requests and exams reach a visit by the visit serial
(就诊流水号) they carry, operations, notes and orders reach a stay by inpatient number and admission count,
settlements by inpatient number and admission date. A carried visit serial is checked against the time of
the event: when the visit happened on another day (a request filed against the patient's other visit), the
event is re-linked to the person's visit at that time, and the change is explained. A record whose parent is
missing from its parent export is an orphan; when another path still finds its visit (an inpatient request
carries the inpatient number too), it is linked and still reported as an orphan of that export.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ibis

from ._staged import StagedTables

HOUR = 3600
# How far an event may lie from its visit: outpatient work happens the same day or, for emergencies
# late at night, early the next; inpatient work between admission and discharge.
OUTPATIENT_WINDOW = (ibis.interval(hours=-1), ibis.interval(hours=26))
INPATIENT_WINDOW = (ibis.interval(days=-1), ibis.interval(days=1))


def event_rows(
    t: Any,
    system: str,
    table: str,
    *,
    key: Any,
    person: Any,
    visit: Any,
    status: Any,
    missing: Any,
    reason: Any,
) -> Any:
    """The rows of ``events.parquet`` for one staged table: what each row is, where it came from (lineage),
    which person and visit it reached, how, and why."""
    return t.select(
        system=ibis.literal(system),
        table=ibis.literal(table),
        record_key=key.cast("string"),
        source_file=t._source_file,
        source_row=t._source_row,
        person_id=person,
        visit_id=visit,
        status=status,
        parent_missing=missing,
        reason=reason,
    )


@dataclass(frozen=True)
class SerialChild:
    """A table whose rows carry a visit serial."""

    system: str
    table: str
    key: str
    serial: str
    time: str
    identity: str  # prefix + column giving the row's identity record, e.g. "lis:" + lis_patient_id
    identity_column: str
    inpatient_no: str | None = None  # a second path to the stay for inpatient rows
    patient_type: str | None = None  # the kind of visit the row says it belongs to (LIS: 门诊/急诊/体检/住院)


# How LIS writes the kind of visit a request was made in, as the visit types of the visit index.
PATIENT_TYPES = {"门诊": "outpatient", "急诊": "emergency", "体检": "checkup", "住院": "inpatient"}


def _type_agrees(visit_type: Any, patient_type: Any) -> Any:
    """Whether a visit's type is the one the row names (true when the row names none)."""
    named = ibis.cases(*((patient_type == k, v) for k, v in PATIENT_TYPES.items()), else_=ibis.null("string"))
    return named.isnull() | (named == visit_type)


SERIAL_CHILDREN = (
    SerialChild(
        "lis",
        "requests",
        "request_no",
        "visit_serial",
        "ordered_at",
        "lis:",
        "lis_patient_id",
        "inpatient_no",
        "patient_type",
    ),
    SerialChild("ris", "exams", "accession_no", "visit_serial", "requested_at", "ris:", "accession_no"),
    SerialChild(
        "his", "prescriptions", "prescription_id", "visit_serial", "prescribed_at", "his:", "his_patient_id"
    ),
    SerialChild("his", "bills", "bill_id", "visit_serial", "charged_at", "his:", "his_patient_id"),
)


def visit_index(st: StagedTables, persons: Any) -> Any:
    """All visits: HIS registrations and every stay (front sheets, with the HIS visit serial where known).

    Columns: visit_id, his_visit_serial, person_id, visit_type, status, start, end, department_code,
    diagnosis_code, inpatient_no, admission_count.
    """
    his_person = persons.filter(persons.source == "his").select(
        his_record=persons.record_id, person_id=persons.person_id
    )
    emr_person = persons.filter(persons.source == "emr").select(
        emr_record=persons.record_id, person_id=persons.person_id
    )
    reg = st.table("his", "registrations")
    reg = reg.mutate(his_record="his:" + reg.his_patient_id)
    reg = reg.left_join(his_person, "his_record")
    outpatient = reg.select(
        visit_id=reg.visit_serial,
        his_visit_serial=reg.visit_serial,
        person_id=reg.person_id,
        visit_type=reg.visit_type,
        status=reg.status,
        start=reg.registered_at.cast("timestamp"),
        end=reg.registered_at.cast("timestamp"),
        department_code=reg.department_code,
        diagnosis_code=reg.diagnosis_code,
        inpatient_no=ibis.null("string"),
        admission_count=ibis.null("int64"),
    )
    fs = st.table("emr", "front_sheets")
    adm = st.table("his", "admissions")
    first_rows = (
        adm.filter(~adm.recalled.fill_null(False))
        .select(adm_ino=adm.inpatient_no, adm_count=adm.admission_count, his_visit_serial=adm.visit_serial)
        .distinct(on=("adm_ino", "adm_count"), keep="first")
    )
    fs = fs.left_join(
        first_rows, [fs.inpatient_no == first_rows.adm_ino, fs.admission_count == first_rows.adm_count]
    )
    fs = fs.mutate(emr_record="emr:" + fs.inpatient_no)
    fs = fs.left_join(emr_person, "emr_record")
    stays = fs.select(
        visit_id=ibis.coalesce(
            fs.his_visit_serial, "FS:" + fs.inpatient_no + "-" + fs.admission_count.cast("string")
        ),
        his_visit_serial=fs.his_visit_serial,
        person_id=fs.person_id,
        visit_type=ibis.literal("inpatient"),
        status=ibis.literal("done"),
        start=fs.admitted_at.cast("timestamp"),
        end=fs.discharged_at.cast("timestamp"),
        department_code=fs.admit_department_code,
        diagnosis_code=fs.main_diagnosis_code,
        inpatient_no=fs.inpatient_no,
        admission_count=fs.admission_count.cast("int64"),
    ).distinct(on="visit_id", keep="first")
    return ibis.union(outpatient, stays, distinct=False)


def _within(visit_type: Any, start: Any, end: Any, at: Any) -> Any:
    """Whether an event at ``at`` falls in the window of a visit of that type, start and end."""
    inpatient = visit_type == "inpatient"
    lo = ibis.cases((inpatient, start + INPATIENT_WINDOW[0]), else_=start + OUTPATIENT_WINDOW[0])
    hi = ibis.cases((inpatient, end + INPATIENT_WINDOW[1]), else_=end + OUTPATIENT_WINDOW[1])
    return (at >= lo) & (at <= hi)


def serial_events(st: StagedTables, child: SerialChild, visits: Any, persons: Any) -> Any:
    """Link one serial-carrying table to visits; one row per staged row with the outcome and its reason."""
    t = st.table(child.system, child.table)
    record_person = persons.select(identity=persons.record_id, row_person=persons.person_id)
    ptype = t[child.patient_type] if child.patient_type is not None else ibis.null("string")
    t = t.mutate(
        identity=child.identity + t[child.identity_column], at=t[child.time].cast("timestamp"), ptype=ptype
    )
    t = t.left_join(record_person, "identity")
    # every HIS serial, including a recalled stay's continuation row (serial + "R"), leads to its visit
    adm = st.table("his", "admissions")
    serials = ibis.union(
        visits.filter(visits.his_visit_serial.notnull()).select(
            serial=visits.his_visit_serial, visit_id=visits.visit_id
        ),
        st.table("his", "registrations").select(serial="visit_serial", visit_id="visit_serial"),
        adm.select(serial=adm.visit_serial, visit_id=adm.visit_serial.re_replace("R$", "")),
        distinct=True,
    )
    parents = serials.select("serial").distinct()
    t = t.left_join(parents.mutate(parent_found=ibis.literal(True)), t[child.serial] == parents.serial)
    t = t.mutate(parent_missing=t.parent_found.isnull()).drop("parent_found", "serial")
    carried = t.left_join(serials, t[child.serial] == serials.serial).drop("serial")
    v = visits.select(
        vid=visits.visit_id,
        vperson=visits.person_id,
        vtype=visits.visit_type,
        start=visits.start,
        end=visits.end,
        vino=visits.inpatient_no,
    )
    carried = carried.left_join(v, carried.visit_id == v.vid)
    carried = carried.mutate(
        consistent=(
            carried.vid.notnull()
            & _within(carried.vtype, carried.start, carried.end, carried.at)
            & _type_agrees(carried.vtype, carried.ptype)
        ).fill_null(False)
    )
    carried = carried.drop("vid", "vperson", "vtype", "start", "end", "vino")

    # Re-link: the person's visit whose window holds the event (nearest start first); for inpatient rows
    # also the stay their inpatient number names.
    cols = [child.key, "at", "ptype", "vid", "vperson", "vtype", "start", "end"]
    need = carried.filter(~carried.consistent)
    by_person = need.select(child.key, "at", "ptype", p=need.row_person)
    by_person = by_person.join(v, by_person.p == v.vperson)
    cand = by_person.filter(_within(by_person.vtype, by_person.start, by_person.end, by_person.at)).select(
        *cols
    )
    if child.inpatient_no is not None:
        by_ino = need.select(child.key, "at", "ptype", ino=need[child.inpatient_no])
        by_ino = by_ino.join(v, by_ino.ino == v.vino)
        by_ino = by_ino.filter(_within(by_ino.vtype, by_ino.start, by_ino.end, by_ino.at)).select(*cols)
        cand = ibis.union(cand, by_ino, distinct=True)
    # the visit of the kind the row names comes first, then the one that started nearest the event
    cand = cand.mutate(
        gap=(cand.at.epoch_seconds() - cand.start.epoch_seconds()).abs(),
        mismatch=ibis.cases((_type_agrees(cand.vtype, cand.ptype), 0), else_=1),
    )
    order = [cand.mismatch, cand.gap, cand.vid]
    cand = cand.mutate(rank=ibis.row_number().over(group_by=child.key, order_by=order))
    best = cand.filter(cand.rank == 0).select(
        best_key=cand[child.key], best_visit=cand.vid, best_person=cand.vperson
    )
    out = carried.left_join(best, carried[child.key] == best.best_key)
    status = ibis.cases(
        (out.consistent & ~out.parent_missing, "linked"),
        (out.best_visit.notnull() & ~out.parent_missing, "relinked"),
        (out.best_visit.notnull() & out.parent_missing, "recovered"),
        else_="orphan",
    )
    reason = ibis.cases(
        (out.consistent & ~out.parent_missing, "visit serial found; event time within the visit"),
        (
            out.best_visit.notnull() & ~out.parent_missing,
            "carried visit serial belongs to another visit of the "
            "person (event time outside it); re-linked to the person's visit at the event time",
        ),
        (
            out.best_visit.notnull() & out.parent_missing,
            "visit serial not in the HIS export; stay found by inpatient number and event time",
        ),
        (
            out.visit_id.notnull(),
            "carried visit does not cover the event time and no other visit of the person does",
        ),
        else_="visit serial not in the HIS export (row lost, or after the export's sync cut-off)",
    )
    return event_rows(
        out,
        child.system,
        child.table,
        key=out[child.key],
        person=ibis.coalesce(out.best_person, out.row_person),
        visit=ibis.cases((out.consistent, out.visit_id), else_=out.best_visit),
        status=status,
        missing=out.parent_missing,
        reason=reason,
    )


@dataclass(frozen=True)
class StayChild:
    """A table whose rows name a stay by inpatient number and admission count (or admission date)."""

    system: str
    table: str
    key: str | tuple[str, ...]
    parent: str  # "his_admissions": the HIS export must hold the stay; "front_sheets": the EMR must
    identity: str | None = None  # identity record prefix and column, when the table has its own patients
    identity_column: str | None = None


STAY_CHILDREN = (
    StayChild("his", "orders", "order_id", "his_admissions"),
    StayChild("his", "transfers", "transfer_id", "his_admissions"),
    StayChild("surgery", "operations", "operation_id", "front_sheets", "surgery:", "surgery_patient_id"),
    StayChild("emr", "notes", "note_id", "front_sheets", "emr_notes:", "emr_patient_id"),
    StayChild("insurance", "settlements", "settlement_id", "front_sheets", "insurance:", "insured_id"),
)


def _stay_key(t: Any, child: StayChild) -> tuple[Any, Any]:
    """(inpatient number, admission count or None) of each row."""
    if child.table == "notes":
        parts = t.encounter_ref.split("-")
        return parts[0], parts[1].cast("int64")
    if child.table == "settlements":
        return t.inpatient_no, None
    return t.inpatient_no, t.admission_count.cast("int64")


def stay_events(st: StagedTables, child: StayChild, visits: Any, persons: Any) -> Any:
    t = st.table(child.system, child.table)
    ino, count = _stay_key(t, child)
    t = t.mutate(_ino=ino, _count=count if count is not None else ibis.null("int64"))
    if child.identity is not None and child.identity_column is not None:
        own = persons.select(identity=persons.record_id, row_person=persons.person_id)
        t = t.mutate(identity=child.identity + t[child.identity_column]).left_join(own, "identity")
    else:
        t = t.mutate(row_person=ibis.null("string"))
    stays = visits.filter(visits.visit_type == "inpatient").select(
        vid=visits.visit_id,
        vperson=visits.person_id,
        vino=visits.inpatient_no,
        vcount=visits.admission_count,
        vday=visits.start.date(),
    )
    if child.table == "settlements":
        # the settlement list has no admission count: the stay is the one admitted on that day
        cond = [t._ino == stays.vino, t.admitted_at.cast("timestamp").date() == stays.vday]
    else:
        cond = [t._ino == stays.vino, t._count == stays.vcount]
    j = t.left_join(stays, cond)
    if child.parent == "his_admissions":
        adm = st.table("his", "admissions").select(pino="inpatient_no", pcount="admission_count").distinct()
        adm = adm.mutate(pcount=adm.pcount.cast("int64"), present=ibis.literal(True))
        j = j.left_join(adm, [j._ino == adm.pino, j._count == adm.pcount])
        missing = j.present.isnull()
    else:
        missing = j.vid.isnull()
    key = child.key if isinstance(child.key, str) else child.key[0]
    status = ibis.cases(
        (~missing & j.vid.notnull(), "linked"), (missing & j.vid.notnull(), "recovered"), else_="orphan"
    )
    reason = ibis.cases(
        (~missing & j.vid.notnull(), "stay found by inpatient number and admission"),
        (missing & j.vid.notnull(), "stay missing from the HIS export; found in the EMR front sheets"),
        else_="no stay with this inpatient number and admission",
    )
    return event_rows(
        j,
        child.system,
        child.table,
        key=j[key],
        person=ibis.coalesce(j.vperson, j.row_person),
        visit=j.vid,
        status=status,
        missing=missing,
        reason=reason,
    )


def inherited_events(
    st: StagedTables, system: str, table: str, key: Any, parent_key: str, parent: Any, what: str
) -> Any:
    """Rows that reach a visit through a parent record (results and tubes via their request, PACS studies via
    their RIS exam): they inherit the parent's person and visit."""
    t = st.table(system, table)
    p = parent.select(
        pkey=parent.record_key, pperson=parent.person_id, pvisit=parent.visit_id, pstatus=parent.status
    )
    j = t.left_join(p, t[parent_key].cast("string") == p.pkey)
    found = j.pkey.notnull()
    return event_rows(
        j,
        system,
        table,
        key=key(j),
        person=j.pperson,
        visit=j.pvisit,
        status=ibis.cases((found, j.pstatus), else_="orphan"),
        missing=~found,
        reason=ibis.cases((found, f"via its {what}"), else_=f"{what} not found"),
    )
