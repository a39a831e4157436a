"""Identity records and the deterministic links between them.

An identity record is one system's view of one patient: a HIS patient number, an EMR medical-record number,
an insurance member number, a LIS / PACS / surgery-system patient number, or (RIS has none) one exam. Records
are linked through key nodes they share: a checksum-valid resident ID (GB 11643), an inpatient number (住院号,
per patient in this hospital), a visit serial (就诊流水号) carried by requests and registrations, an accession
number carried by PACS studies and RIS exams. Records and keys form one graph; a person is a connected
component of it. Keys make the graph shallow, so components converge in a few rounds.
"""

from __future__ import annotations

from typing import Any

import ibis
import pyarrow as pa

from medspace.core import check_resident_id, small_table

from ._staged import StagedTables

IDENTITY_COLUMNS = (
    "record_id",
    "source",
    "name",
    "sex",
    "birth_date",
    "age_years",
    "phone",
    "address",
    "resident_id",
)


def _typed(t: Any, source: str, record_id: Any, **values: Any) -> Any:
    """One source's identity records in the common shape (missing attributes as typed nulls)."""
    defaults: dict[str, Any] = {
        "name": ibis.null("string"),
        "sex": ibis.null("string"),
        "birth_date": ibis.null("date"),
        "age_years": ibis.null("int64"),
        "phone": ibis.null("string"),
        "address": ibis.null("string"),
        "resident_id": ibis.null("string"),
    }
    defaults.update(values)
    return t.select(
        record_id=record_id,
        source=ibis.literal(source),
        name=defaults["name"].cast("string"),
        sex=defaults["sex"].cast("string"),
        birth_date=defaults["birth_date"].cast("date"),
        age_years=defaults["age_years"].cast("int64"),
        phone=defaults["phone"].cast("string"),
        address=defaults["address"].cast("string"),
        resident_id=defaults["resident_id"].cast("string"),
    )


def identity_records(st: StagedTables) -> Any:
    """Every system's patient identities, one row per system-local patient (per exam for RIS)."""
    parts = []
    his = st.table("his", "patients")
    parts.append(
        _typed(
            his,
            "his",
            "his:" + his.his_patient_id,
            name=his.name,
            sex=his.sex,
            birth_date=his.birth_date,
            phone=his.phone,
            address=his.address,
            resident_id=his.resident_id,
        )
    )
    fs = st.table("emr", "front_sheets")
    fs = fs.group_by("inpatient_no").aggregate(
        name=fs.name.max(),
        sex=fs.sex.max(),
        birth_date=fs.birth_date.max(),
        phone=fs.phone.max(),
        address=fs.address.max(),
        resident_id=fs.resident_id.max(),
    )
    parts.append(
        _typed(
            fs,
            "emr",
            "emr:" + fs.inpatient_no,
            name=fs.name,
            sex=fs.sex,
            birth_date=fs.birth_date,
            phone=fs.phone,
            address=fs.address,
            resident_id=fs.resident_id,
        )
    )
    ins = st.table("insurance", "settlements")
    ins = ins.group_by("insured_id").aggregate(
        name=ins.name.max(), sex=ins.sex.max(), birth_date=ins.birth_date.max()
    )
    parts.append(
        _typed(
            ins,
            "insurance",
            "insurance:" + ins.insured_id,
            name=ins.name,
            sex=ins.sex,
            birth_date=ins.birth_date,
            resident_id=ins.insured_id,
        )
    )
    lis = st.table("lis", "requests")
    lis = lis.group_by("lis_patient_id").aggregate(
        name=lis.name.max(), sex=lis.sex.max(), age_years=lis.age_years.max()
    )
    parts.append(
        _typed(lis, "lis", "lis:" + lis.lis_patient_id, name=lis.name, sex=lis.sex, age_years=lis.age_years)
    )
    pacs = st.table("pacs", "studies")
    pacs = pacs.group_by("pacs_patient_id").aggregate(
        name=pacs.name.max(), sex=pacs.sex.max(), birth_date=pacs.birth_date.max()
    )
    parts.append(
        _typed(
            pacs,
            "pacs",
            "pacs:" + pacs.pacs_patient_id,
            name=pacs.name,
            sex=pacs.sex,
            birth_date=pacs.birth_date,
        )
    )
    ris = st.table("ris", "exams")
    parts.append(
        _typed(ris, "ris", "ris:" + ris.accession_no, name=ris.name, sex=ris.sex, age_years=ris.age_years)
    )
    ops = st.table("surgery", "operations")
    ops = ops.group_by("surgery_patient_id").aggregate(name=ops.name.max(), sex=ops.sex.max())
    parts.append(_typed(ops, "surgery", "surgery:" + ops.surgery_patient_id, name=ops.name, sex=ops.sex))
    notes = st.table("emr", "notes")
    notes = notes.select("emr_patient_id").distinct()
    parts.append(_typed(notes, "emr_notes", "emr_notes:" + notes.emr_patient_id))
    return ibis.union(*parts, distinct=False)


def valid_resident_ids(con: Any, records: Any) -> Any:
    """The checksum-, date- and region-valid resident IDs among the records, as a small table.

    Validation runs in Python on the distinct IDs only (one per person at most), which is a small aggregate
    next to the event tables, and reuses the one GB 11643 check medspace has.
    """
    distinct = records.filter(records.resident_id.notnull()).select("resident_id").distinct().to_pyarrow()
    ids = distinct.column("resident_id").to_pylist()
    valid = [i for i in ids if check_resident_id(i).valid]
    return small_table(
        con, "link_valid_resident_ids", pa.table({"valid_resident_id": pa.array(valid, pa.string())})
    )


def key_edges(st: StagedTables, records: Any) -> Any:
    """Edges ``a`` (record) - ``b`` (key node) with the ``rule`` that made them.

    Key nodes are prefixed by kind (``rid:``, ``ino:``, ``visit:``, ``acc:``) so they never collide with
    record ids; they are removed again once components are known.
    """
    valid = valid_resident_ids(st.con, records)
    with_id = records.join(valid, records.resident_id == valid.valid_resident_id)
    edges = [
        with_id.select(a=with_id.record_id, b="rid:" + with_id.resident_id, rule=ibis.literal("resident_id"))
    ]

    def edge(t: Any, a: Any, b: Any, rule: str) -> Any:
        return t.filter(b.notnull()).select(a=a, b=b, rule=ibis.literal(rule))

    his = st.table("his", "patients")
    edges.append(edge(his, "his:" + his.his_patient_id, "ino:" + his.inpatient_no, "inpatient_no"))
    fs = st.table("emr", "front_sheets")
    edges.append(edge(fs, "emr:" + fs.inpatient_no, "ino:" + fs.inpatient_no, "inpatient_no"))
    ins = st.table("insurance", "settlements")
    edges.append(edge(ins, "insurance:" + ins.insured_id, "ino:" + ins.inpatient_no, "inpatient_no"))
    ops = st.table("surgery", "operations")
    edges.append(edge(ops, "surgery:" + ops.surgery_patient_id, "ino:" + ops.inpatient_no, "inpatient_no"))
    notes = st.table("emr", "notes")
    edges.append(
        edge(
            notes,
            "emr_notes:" + notes.emr_patient_id,
            "ino:" + notes.encounter_ref.split("-")[0],
            "inpatient_no",
        )
    )
    reg = st.table("his", "registrations")
    edges.append(edge(reg, "his:" + reg.his_patient_id, "visit:" + reg.visit_serial, "visit_serial"))
    adm = st.table("his", "admissions")
    edges.append(edge(adm, "his:" + adm.his_patient_id, "visit:" + adm.visit_serial, "visit_serial"))
    lis = st.table("lis", "requests")
    edges.append(edge(lis, "lis:" + lis.lis_patient_id, "visit:" + lis.visit_serial, "visit_serial"))
    ris = st.table("ris", "exams")
    edges.append(edge(ris, "ris:" + ris.accession_no, "visit:" + ris.visit_serial, "visit_serial"))
    pacs = st.table("pacs", "studies")
    edges.append(edge(pacs, "pacs:" + pacs.pacs_patient_id, "ris:" + pacs.accession_no, "accession_no"))
    return ibis.union(*edges, distinct=True)
