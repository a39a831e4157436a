"""Identity records and the deterministic links between them.

An identity record is one system's view of one patient: every (system, patient_key) that any canonical table
carries, with the identity fields of that system's ``patient`` rows (a system without a patient index stages
one patient row per record that carries the patient's name, sex or age; they are grouped here). Records are
linked through key nodes they share: a checksum-, date- and region-valid resident ID (GB 11643), an inpatient
number where the site numbers inpatients per patient, a visit serial, an imaging accession number (DICOM
0008,0050). Records and keys form one graph; a person is a connected component of it. Keys make the graph
shallow, so components converge in a few rounds.
"""

from __future__ import annotations

from typing import Any

import ibis
import pyarrow as pa

from medspace.core import check_resident_id, small_table

from ._staged import StagedTables

# The identity fields a patient row may carry, with their types, as the matcher compares them.
IDENTITY_FIELDS = {
    "name": "string",
    "sex": "string",
    "birth_date": "date",
    "age_years": "int64",
    "phone": "string",
    "address": "string",
    "resident_id": "string",
}

# Tables whose rows carry the imaging accession number shared by the imaging order and its study.
IMAGING_TABLES = ("imaging_exam", "imaging_study")


def record_id(system: Any, patient_key: Any) -> Any:
    """The identity record of a row: ``<system>:<patient_key>`` (null without a patient key)."""
    return system + ":" + patient_key


def tables_with(st: StagedTables, *columns: str) -> list[str]:
    """The staged canonical tables that have all the given columns and at least one row."""
    return [t for t in st.tables if st.rows(t) and set(columns) <= st.columns(t)]


def identity_records(st: StagedTables) -> Any:
    """One row per (system, patient_key) of any table: record_id, system, patient_key and identity fields.

    Identity fields come from the system's ``patient`` rows of that key (the largest value where several
    rows disagree, as a system-local index keeps one value per patient); keys seen only on other tables (a
    charge naming a patient the export's index lacks) have them null.
    """
    keys = [
        st.table(t).select("system", "patient_key").filter(lambda r: r.patient_key.notnull())
        for t in tables_with(st, "patient_key")
    ]
    if not keys:
        return None
    distinct = ibis.union(*keys, distinct=True)
    if st.rows("patient"):
        p = st.table("patient")
        p = p.filter(p.patient_key.notnull())
        attributes = p.group_by(["system", "patient_key"]).aggregate(
            **{name: p[name].max() for name in IDENTITY_FIELDS}
        )
        out = distinct.left_join(attributes, ["system", "patient_key"])
    else:
        out = distinct.mutate(**{name: ibis.null(kind) for name, kind in IDENTITY_FIELDS.items()})
    return out.select(
        record_id=record_id(out.system, out.patient_key),
        system=out.system,
        patient_key=out.patient_key,
        **{name: out[name].cast(kind) for name, kind in IDENTITY_FIELDS.items()},
    )


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

    def edge(table: str, column: str, prefix: str, rule: str) -> Any:
        t = st.table(table)
        t = t.filter(t.patient_key.notnull() & t[column].notnull())
        return t.select(
            a=record_id(t.system, t.patient_key), b=prefix + t[column].cast("string"), rule=ibis.literal(rule)
        )

    if not st.per_admission:
        # one inpatient number per patient across admissions: whoever carries it is that patient
        edges += [
            edge(t, "inpatient_no", "ino:", "inpatient_no")
            for t in tables_with(st, "patient_key", "inpatient_no")
        ]
    edges += [
        edge(t, "visit_serial", "visit:", "visit_serial")
        for t in tables_with(st, "patient_key", "visit_serial")
    ]
    # an ICU stay names its hospital stay: the same patient
    edges += [
        edge(t, "parent_visit_serial", "visit:", "visit_serial")
        for t in tables_with(st, "patient_key", "parent_visit_serial")
    ]
    edges += [
        edge(t, "accession_no", "acc:", "accession_no")
        for t in tables_with(st, "patient_key", "accession_no")
        if t in IMAGING_TABLES
    ]
    return ibis.union(*edges, distinct=True)
