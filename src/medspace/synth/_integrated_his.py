"""The integrated HIS's exports: patients, visits (outpatient, emergency, check-up and inpatient in one
table), diagnoses in a long table, procedures (operations included), lab orders with their results in one
table, medication orders, charges, and the EMR module's documents as a tab-separated dump.

One vendor writes them all: English snake_case column names, ISO 8601 dates and times (local time, no
offset), its own patient numbers (``patient_no``), one visit number sequence for every kind of visit
(``visit_no``) and a new inpatient number per admission (``admission_no``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from ._chunk import ChunkState
from ._conflicts import newborn_mothers, reused_owners
from ._encounters import (
    DAY,
    STATUS_CANCELLED,
    STATUS_DONE,
    STATUS_REFUND,
    VISIT_CHECKUP,
    VISIT_EMERGENCY,
    VISIT_OUTPATIENT,
    Stay,
)
from ._exports import ChunkEvents
from ._formats import day_format, ts_format
from ._identity import patient_numbers
from ._numbering import zero_padded
from ._population import EPOCH

PATIENTS = "his/patients.csv"
VISITS = "his/visits.csv"
DIAGNOSES = "his/diagnoses.csv"
PROCEDURES = "his/procedures.csv"
LAB_RESULTS = "his/lab_results.csv"
MEDICATION_ORDERS = "his/medication_orders.csv"
CHARGES = "his/charges.csv"
DOCUMENTS = "his/emr_documents.tsv"

ISO_DATETIME = "%Y-%m-%dT%H:%M:%S"
VISIT_TYPE = {VISIT_OUTPATIENT: "OP", VISIT_EMERGENCY: "ER", VISIT_CHECKUP: "PE"}
VISIT_STATUS = {STATUS_DONE: "completed", STATUS_REFUND: "refunded", STATUS_CANCELLED: "cancelled"}
# Front sheet B34C codes as this vendor names them.
DISPOSITION = {
    "1": "routine",
    "2": "transfer_hospital",
    "3": "transfer_community",
    "4": "against_advice",
    "5": "died",
    "9": "other",
}
ADMISSION_SOURCE = {"1": "emergency", "2": "outpatient", "3": "referral", "9": "other"}
PAYER = {
    "1": "employee_insurance",
    "2": "resident_insurance",
    "3": "rural_insurance",
    "7": "self_pay",
    "8": "other",
}


@dataclass
class DiagnosisRow:
    person: int
    visit_no: str
    seq: int
    diagnosis: int  # index into Diagnoses.all
    at: int


@dataclass
class MedicationRow:
    person: int
    visit_no: str
    order_no: str
    drug: int  # index into catalogue.drugs
    quantity: int
    start: int
    stop: int
    setting: str  # OP | IP
    long_term: bool


@dataclass
class HisRecords:
    """What the HIS exported, for the regional platform's uploads."""

    in_his: NDArray[np.int64]  # chunk persons the HIS knows
    diagnoses: list[DiagnosisRow] = field(default_factory=list)
    medications: list[MedicationRow] = field(default_factory=list)


def iso_datetime(ts: NDArray[np.int64]) -> pa.Array:
    return ts_format(np.asarray(ts, dtype=np.int64), ISO_DATETIME)


def write_integrated_his(c: ChunkState, e: ChunkEvents, admission_no: dict[str, str]) -> HisRecords:
    visits, stays = e.visits, e.stays
    stay_person = np.array([s.person for s in stays], dtype=np.int64)
    in_his = np.unique(np.concatenate([visits.person, stay_person]))
    patient_no = _patients(c, e, in_his)
    records = HisRecords(in_his=in_his)
    _visits(c, e, admission_no, patient_no)
    _diagnoses(c, e, patient_no, records)
    _procedures(c, stays, patient_no)
    _lab_results(c, e, patient_no)
    _medication_orders(c, e, patient_no, records)
    _charges(c, e, patient_no, records)
    _documents(c, e, admission_no, patient_no)
    return records


class PatientNumber:
    """The HIS patient number in force for a person at a time: a person registered twice uses the second
    number from the day of the second registration on."""

    def __init__(
        self,
        first: NDArray[np.str_],
        second: NDArray[np.str_],
        duplicated: NDArray[np.bool_],
        switch_at: NDArray[np.int64],
    ) -> None:
        self.first, self.second, self.duplicated, self.switch_at = first, second, duplicated, switch_at

    def __call__(self, person: NDArray[np.int64], at: NDArray[np.int64]) -> NDArray[np.str_]:
        person = np.asarray(person, dtype=np.int64)
        at = np.asarray(at, dtype=np.int64)
        later = self.duplicated[person] & (at >= self.switch_at[person])
        return np.where(later, self.second[person], self.first[person])


def _patients(c: ChunkState, e: ChunkEvents, in_his: NDArray[np.int64]) -> PatientNumber:
    rates = c.config.defects
    rng = c.rng
    ident = c.identity()
    first = patient_numbers("integrated", c.global_index)
    second = patient_numbers("integrated_duplicate", c.global_index)
    duplicated = np.zeros(len(c.pop), dtype=bool)
    duplicated[in_his] = rng.random(len(in_his)) < rates.duplicate_patient_id
    c.out.eligible["duplicate_patient_id"] += len(in_his)
    start = (c.config.start - EPOCH).days * DAY
    switch_at = start + rng.integers(0, (c.config.end - c.config.start).days, len(c.pop)) * DAY
    # capped at the full export's cut-off whatever this export's is, so a registration keeps its date
    first_seen = np.full(len(c.pop), c.full_cutoff, dtype=np.int64)
    np.minimum.at(first_seen, e.visits.person, e.visits.start)
    if e.stays:
        np.minimum.at(first_seen, np.array([s.person for s in e.stays]), np.array([s.admit for s in e.stays]))
    rows = np.concatenate([in_his, np.nonzero(duplicated)[0]])
    is_dup = np.concatenate([np.zeros(len(in_his), bool), np.ones(int(duplicated.sum()), bool)])
    created = np.where(is_dup, np.maximum(switch_at[rows], first_seen[rows]), first_seen[rows]) - 600
    keys = np.where(is_dup, second[rows], first[rows])
    no_id = rng.random(len(rows)) < c.config.integrated.resident_id_missing
    c.out.eligible["resident_id_missing"] += len(rows)
    # A few newborns registered under their mother's resident ID (a key conflict, off by default).
    mothers = {
        r: m for r, m in newborn_mothers(c, rows, is_dup, created).items() if not no_id[r] and not no_id[m]
    }
    resident_id = np.where(no_id, "", ident.resident_id[rows])
    later_id = None if ident.later is None else np.where(no_id, "", ident.later.resident_id[rows])
    for r, m in mothers.items():
        resident_id[r] = resident_id[m]
        if later_id is not None:
            later_id[r] = later_id[m]
        c.out.key_conflicts.append(
            (
                "newborn_parent_id",
                "resident_id",
                str(resident_id[m]),
                str(c.pop.person_id[rows[r]]),
                str(c.pop.person_id[rows[m]]),
                PATIENTS,
                str(keys[r]),
                ((PATIENTS, str(keys[m])),),
            )
        )
    identity = c.identity_defects(
        ident,
        rows,
        {
            "name_typo": "patient_name",
            "birth_date_typo": "birth_date",
            "resident_id_typo": "id_card_no",
            "phone_missing": "mobile_phone",
            "address_variant": "home_address",
        },
    )
    if mothers:
        # the newborn's row shows the mother's ID, so its own ID's typo is not in the file
        newborns = np.array(sorted(mothers), dtype=np.int64)
        identity = [
            (kind, fld, np.setdiff1d(at_rows, newborns) if kind == "resident_id_typo" else at_rows, detail)
            for kind, fld, at_rows, detail in identity
        ]
        identity.append(
            ("newborn_parent_id", "id_card_no", newborns, "newborn registered under the mother's ID")
        )
    c.out.emit(
        PATIENTS,
        {
            "patient_no": keys,
            "patient_name": ident.name[rows],
            "gender": c.pop.sex[rows],
            "birth_date": day_format(ident.birth_day[rows], "%Y-%m-%d"),
            "id_card_no": resident_id,
            "mobile_phone": ident.phone[rows],
            "home_address": ident.address[rows],
            "created_at": iso_datetime(created),
        },
        c.persons(rows),
        keys,
        at=created,
        later=None
        if ident.later is None
        else {
            "patient_name": ident.later.name[rows],
            "birth_date": day_format(ident.later.birth_day[rows], "%Y-%m-%d"),
            "id_card_no": later_id,
        },
        patient_key="patient_no",
        defects=[
            *identity,
            (
                "duplicate_patient_id",
                "patient_no",
                np.nonzero(is_dup)[0],
                "second HIS patient number for the same person",
            ),
            ("resident_id_missing", "id_card_no", np.nonzero(no_id)[0], "registered without a resident ID"),
        ],
    )
    return PatientNumber(first, second, duplicated, switch_at)


def _until(c: ChunkState, stop: NDArray[np.int64]) -> pa.Array:
    """Stop times of orders; an as-of export leaves those still running empty."""
    text = iso_datetime(stop)
    if c.as_of is None:
        return text
    return pa.array(np.where(stop >= c.as_of, "", text.to_numpy(zero_copy_only=False)))


def _both(visit_part: object, stay_part: object) -> NDArray[np.str_]:
    """A visits.csv column: the registrations' values, then the stays' values, as text."""
    return np.concatenate(
        [np.asarray(visit_part, dtype=str).reshape(-1), np.asarray(stay_part, dtype=str).reshape(-1)]
    )


def _visits(c: ChunkState, e: ChunkEvents, admission_no: dict[str, str], patient_no: PatientNumber) -> None:
    v, stays = e.visits, e.stays
    n_v, n_s = len(v.person), len(stays)
    stay_person = np.array([s.person for s in stays], dtype=np.int64)
    admit = np.array([s.admit for s in stays], dtype=np.int64)
    discharge = np.array([s.discharge for s in stays], dtype=np.int64)
    start = np.concatenate([v.start, admit])
    person = np.concatenate([v.person, stay_person])
    stay_dept = np.array([s.department for s in stays], dtype=np.int64)
    blank = np.full(n_v, "")
    keys = _both(v.serial, [s.serial for s in stays])
    # In an as-of export a stay not yet discharged is still open: no discharge, days, cost or outcome.
    is_open = np.zeros(n_s, dtype=bool) if c.as_of is None else discharge >= c.as_of

    def closed(values: object) -> NDArray[np.str_]:
        return np.where(is_open, "", np.asarray(values, dtype=str).reshape(-1)) if n_s else np.array([], str)

    c.out.emit(
        VISITS,
        {
            "visit_no": keys,
            "patient_no": patient_no(person, start),
            "visit_type": _both([VISIT_TYPE[int(k)] for k in v.kind], np.full(n_s, "IP")),
            "visit_status": _both(
                [VISIT_STATUS[int(x)] for x in v.status], np.where(is_open, "admitted", "discharged")
            ),
            "admission_no": _both(blank, [admission_no[s.serial] for s in stays]),
            "dept_code": _both(c.dept_code[v.department], c.dept_code[stay_dept]),
            "dept_name": _both(c.dept_name[v.department], c.dept_name[stay_dept]),
            "doctor_name": _both(v.doctor, c.rng.choice(c.doctors, n_s)),
            "visit_time": iso_datetime(start),
            "discharge_time": _both(blank, closed(iso_datetime(discharge).to_numpy(zero_copy_only=False))),
            "discharge_dept_code": _both(blank, closed([c.dept_code[s.discharge_department] for s in stays])),
            "admission_source": _both(blank, [ADMISSION_SOURCE[s.route] for s in stays]),
            "discharge_disposition": _both(blank, closed([DISPOSITION[s.discharge_mode] for s in stays])),
            "day_surgery": _both(blank, ["Y" if s.day_surgery else "N" for s in stays]),
            "los_days": _both(blank, closed([s.bed_days for s in stays])),
            "payer_type": _both(blank, [PAYER[s.payment] for s in stays]),
            "registration_fee": _both(np.char.mod("%.2f", v.fee), np.full(n_s, "")),
            "total_cost": _both(blank, closed([f"{s.total_cost:.2f}" for s in stays])),
        },
        c.persons(person),
        keys,
        at=start,
        defects=[
            (
                "registration_refund",
                "visit_status",
                np.nonzero(v.status == STATUS_REFUND)[0],
                "registration refunded (退号)",
            ),
            (
                "registration_cancelled",
                "visit_status",
                np.nonzero(v.status == STATUS_CANCELLED)[0],
                "registration cancelled",
            ),
        ],
    )
    c.out.eligible["registration_refund"] += n_v
    c.out.eligible["registration_cancelled"] += n_v
    for serial in v.serial.tolist():
        c.visit_file[serial] = VISITS
    for s in stays:
        c.visit_file[s.serial] = VISITS


def _diagnoses(c: ChunkState, e: ChunkEvents, patient_no: PatientNumber, records: HisRecords) -> None:
    v = e.visits
    for j in np.nonzero(v.status == STATUS_DONE)[0]:
        records.diagnoses.append(
            DiagnosisRow(int(v.person[j]), str(v.serial[j]), 1, int(v.diagnosis[j]), int(v.start[j]) + 900)
        )
    for s in e.stays:
        for seq, d in enumerate([s.diagnosis, *s.other_diagnoses], start=1):
            # coded at discharge
            records.diagnoses.append(DiagnosisRow(s.person, s.serial, seq, d, s.discharge - 3600))
    rows = records.diagnoses
    dx = c.dx.all
    person = np.array([r.person for r in rows], dtype=np.int64)
    coded = np.array([r.at for r in rows], dtype=np.int64)
    keys = np.array([f"{r.visit_no}-{r.seq}" for r in rows], dtype=str)
    c.out.emit(
        DIAGNOSES,
        {
            "visit_no": pa.array([r.visit_no for r in rows], pa.string()),
            "patient_no": patient_no(person, coded),
            "seq_no": pa.array([r.seq for r in rows], pa.int64()),
            "diagnosis_type": pa.array(["main" if r.seq == 1 else "secondary" for r in rows], pa.string()),
            "icd_code": pa.array([dx[r.diagnosis].clinical for r in rows], pa.string()),
            "diagnosis_name": pa.array([dx[r.diagnosis].name for r in rows], pa.string()),
            "diagnosed_at": iso_datetime(coded),
        },
        c.persons(person),
        keys,
        at=coded,
    )
    for r, key in zip(rows, keys.tolist(), strict=True):
        c.out.link("diagnosis->visit", DIAGNOSES, key, VISITS, r.visit_no)


def _procedures(c: ChunkState, stays: list[Stay], patient_no: PatientNumber) -> None:
    rows = [(s, op, k + 1) for s in stays for k, op in enumerate(s.operations)]
    person = np.array([s.person for s, _, _ in rows], dtype=np.int64)
    begin = np.array([op.start for _, op, _ in rows], dtype=np.int64)
    keys = np.array([f"{s.serial}-{seq}" for s, _, seq in rows], dtype=str)
    c.out.emit(
        PROCEDURES,
        {
            "visit_no": pa.array([s.serial for s, _, _ in rows], pa.string()),
            "patient_no": patient_no(person, begin),
            "seq_no": pa.array([seq for _, _, seq in rows], pa.int64()),
            "procedure_code": pa.array([op.procedure.clinical for _, op, _ in rows], pa.string()),
            "procedure_name": pa.array([op.procedure.name for _, op, _ in rows], pa.string()),
            "start_time": iso_datetime(begin),
            "end_time": iso_datetime(np.array([op.end for _, op, _ in rows], dtype=np.int64)),
            "session_no": pa.array([op.session for _, op, _ in rows], pa.int64()),
            "op_grade": pa.array([op.procedure.grade for _, op, _ in rows], pa.int64()),
            "is_minimally_invasive": pa.array(
                ["1" if op.procedure.minimally_invasive else "0" for _, op, _ in rows], pa.string()
            ),
            "is_interventional": pa.array(
                ["1" if op.procedure.interventional else "0" for _, op, _ in rows], pa.string()
            ),
            "is_day_surgery": pa.array(["1" if s.day_surgery else "0" for s, _, _ in rows], pa.string()),
            "urgency": pa.array(
                ["elective" if op.elective else "emergency" for _, op, _ in rows], pa.string()
            ),
            "anaesthesia": pa.array(
                ["local" if op.procedure.grade <= 2 else "general" for _, op, _ in rows], pa.string()
            ),
            "surgeon_name": pa.array([op.surgeon for _, op, _ in rows], pa.string()),
            "dept_code": pa.array(
                [str(c.dept_code[c.dx.department_index[op.procedure.department]]) for _, op, _ in rows],
                pa.string(),
            ),
        },
        c.persons(person),
        keys,
        at=np.array([op.end for _, op, _ in rows], dtype=np.int64),
    )
    for (s, _, _), key in zip(rows, keys.tolist(), strict=True):
        c.out.link("procedure->visit", PROCEDURES, key, VISITS, s.serial)


def _lab_results(c: ChunkState, e: ChunkEvents, patient_no: PatientNumber) -> None:
    """One row per result item, carrying its order and its specimen: the lab module keeps no separate
    request or tube export. One laboratory, canonical units, the central lab's reference ranges."""
    lab = e.lab
    tests = c.cat.lab_tests
    n_req = len(lab.req_person)
    order_no = np.char.add(f"LAB{c.index:04d}", zero_padded(np.arange(1, n_req + 1), 7))
    sample_no = np.char.add(f"S{c.index:04d}", zero_padded(np.arange(1, len(lab.tube_request) + 1), 8))
    req = lab.tube_request[lab.item_tube]
    person = lab.req_person[req]
    code = np.array([t.code for t in tests])[lab.item_test]
    value = lab.item_value
    low = np.array([np.nan if t.central_range[0] is None else t.central_range[0] for t in tests])[
        lab.item_test
    ]
    high = np.array([np.nan if t.central_range[1] is None else t.central_range[1] for t in tests])[
        lab.item_test
    ]
    ref = np.array(
        [
            f"<{t.central_range[1]:g}"
            if t.central_range[0] is None
            else f"{t.central_range[0]:g}-{t.central_range[1]:g}"
            for t in tests
        ]
    )[lab.item_test]
    keys = np.char.add(np.char.add(order_no[req], "-"), code)
    position = c.out.emit(
        LAB_RESULTS,
        {
            "result_id": keys,
            "order_no": order_no[req],
            "patient_no": patient_no(person, lab.req_time[req]),
            "visit_no": lab.req_visit[req],
            "order_time": iso_datetime(lab.req_time[req]),
            "sample_no": sample_no[lab.item_tube],
            "specimen_type": lab.tube_panel_kind[lab.item_tube],
            "collect_time": iso_datetime(lab.tube_collect[lab.item_tube]),
            "item_code": code,
            "item_name": np.array([t.name for t in tests])[lab.item_test],
            "result_value": np.char.mod("%g", value),
            "result_unit": np.array([t.unit for t in tests])[lab.item_test],
            "reference_range": ref,
            "abnormal_flag": np.where(value > high, "H", np.where(value < low, "L", "N")),
            "report_time": iso_datetime(lab.item_report),
            "dept_name": c.dept_name[lab.req_department[req]],
        },
        c.persons(person),
        keys,
        at=lab.item_report,
    )
    # an as-of export links only the orders it holds a result of (the link's key is the order, not a row's)
    held = None if c.as_of is None else set(order_no[req][position != -2].tolist())
    for r in range(n_req):
        if held is None or str(order_no[r]) in held:
            c.out.link("lab_order->visit", LAB_RESULTS, str(order_no[r]), VISITS, str(lab.req_visit[r]))


def _medication_orders(c: ChunkState, e: ChunkEvents, patient_no: PatientNumber, records: HisRecords) -> None:
    """Outpatient prescriptions (drugs for the visit's condition, paracetamol at the emergency department)
    and inpatient long-term drug orders for the stay's main condition."""
    rng = c.rng
    v = e.visits
    cond_keys = [cond.key for cond in c.cat.conditions]
    drugs_for = [[i for i, d in enumerate(c.cat.drugs) if key in d.conditions] for key in cond_keys]
    paracetamol = next(i for i, d in enumerate(c.cat.drugs) if not d.conditions)
    rows = records.medications
    for j in np.nonzero(v.status == STATUS_DONE)[0]:
        d = int(v.diagnosis[j])
        options = (
            drugs_for[d] if d < len(cond_keys) else ([paracetamol] if v.kind[j] == VISIT_EMERGENCY else [])
        )
        if options and rng.random() < 0.7:
            chosen = rng.choice(options, size=min(len(options), int(rng.integers(1, 4))), replace=False)
            for drug in chosen:
                at = int(v.start[j]) + 1200
                rows.append(
                    MedicationRow(
                        int(v.person[j]),
                        str(v.serial[j]),
                        "",
                        int(drug),
                        int(rng.integers(1, 4)),
                        at,
                        at,
                        "OP",
                        False,
                    )
                )
    for s in e.stays:
        key = cond_keys[s.diagnosis] if s.diagnosis < len(cond_keys) else None
        for i, drug in enumerate(c.cat.drugs):
            if key in drug.conditions:
                days = max(1, s.bed_days)
                rows.append(
                    MedicationRow(
                        s.person, s.serial, "", i, days, s.admit + 3600, s.discharge - 3600, "IP", True
                    )
                )
    for k, r in enumerate(rows):
        r.order_no = f"RX{c.index:04d}{k + 1:07d}"
    drugs = c.cat.drugs
    person = np.array([r.person for r in rows], dtype=np.int64)
    start = np.array([r.start for r in rows], dtype=np.int64)
    price = np.array([drugs[r.drug].price for r in rows], dtype=np.float64)
    qty = np.array([r.quantity for r in rows], dtype=np.int64)
    keys = np.array([r.order_no for r in rows], dtype=str)
    c.out.emit(
        MEDICATION_ORDERS,
        {
            "order_no": keys,
            "visit_no": pa.array([r.visit_no for r in rows], pa.string()),
            "patient_no": patient_no(person, start),
            "setting": pa.array([r.setting for r in rows], pa.string()),
            "order_kind": pa.array(["long_term" if r.long_term else "temporary" for r in rows], pa.string()),
            "drug_code": pa.array([drugs[r.drug].code for r in rows], pa.string()),
            "drug_name": pa.array([drugs[r.drug].name for r in rows], pa.string()),
            "drug_spec": pa.array([drugs[r.drug].spec for r in rows], pa.string()),
            "quantity": pa.array(qty, pa.int64()),
            "unit_price": pa.array(price, pa.float64()),
            "amount": pa.array(np.round(price * qty, 2), pa.float64()),
            "start_time": iso_datetime(start),
            "stop_time": _until(c, np.array([r.stop for r in rows], dtype=np.int64)),
        },
        c.persons(person),
        keys,
        at=start,
    )
    for r in rows:
        c.out.link("medication_order->visit", MEDICATION_ORDERS, r.order_no, VISITS, r.visit_no)


def _charges(c: ChunkState, e: ChunkEvents, patient_no: PatientNumber, records: HisRecords) -> None:
    """Charges per visit: registration fees (a refund reverses its fee), drugs, lab and exam fees, and the
    stays' cost categories. Outpatient revenue (a KPI) counts the charges of outpatient visits."""
    v = e.visits
    rows: list[tuple[str, int, str, str, float, int]] = []  # visit_no, person, setting, item, amount, at
    kind_of = {str(s): int(k) for s, k in zip(v.serial, v.kind, strict=True)}
    for j in range(len(v.person)):
        if v.status[j] == STATUS_CANCELLED or v.fee[j] == 0:
            continue
        item = "急诊挂号费" if v.kind[j] == VISIT_EMERGENCY else "挂号费"
        rows.append((str(v.serial[j]), int(v.person[j]), "OP", item, float(v.fee[j]), int(v.start[j])))
        if v.status[j] == STATUS_REFUND:
            rows.append(
                (str(v.serial[j]), int(v.person[j]), "OP", item, -float(v.fee[j]), int(v.start[j]) + 3600)
            )
    drugs = c.cat.drugs
    for m in records.medications:
        if m.setting == "OP":
            rows.append(
                (m.visit_no, m.person, "OP", "西药费", round(drugs[m.drug].price * m.quantity, 2), m.start)
            )
    lab_fee = c.rng.integers(40, 300, len(e.lab.req_visit)).astype(float)
    for r in range(len(e.lab.req_visit)):
        serial = str(e.lab.req_visit[r])
        if serial in kind_of:
            rows.append(
                (serial, int(e.lab.req_person[r]), "OP", "检验费", float(lab_fee[r]), int(e.lab.req_time[r]))
            )
    exam_fee = {"CT": 320.0, "OP": 80.0, "OPT": 150.0, "US": 120.0}
    for x in e.exams:
        if x.visit in kind_of:
            rows.append(
                (x.visit, x.person, "OP", "检查费", exam_fee[c.cat.exams[x.exam].modality], x.requested)
            )
    for s in e.stays:
        for item, amount in s.costs.items():
            rows.append((s.serial, s.person, "IP", item, amount, s.discharge - 3600))
    started = dict(zip(v.serial.tolist(), v.start.tolist(), strict=True))
    c.out.kpi["outpatient_revenue_cents"] += sum(
        round(r[4] * 100)
        for r in rows
        if r[2] == "OP" and kind_of[r[0]] == VISIT_OUTPATIENT and started[r[0]] < c.cutoff
    )
    person = np.array([r[1] for r in rows], dtype=np.int64)
    at = np.array([r[5] for r in rows], dtype=np.int64)
    keys = np.char.add(f"CH{c.index:04d}", zero_padded(np.arange(1, len(rows) + 1), 8))
    c.out.emit(
        CHARGES,
        {
            "charge_no": keys,
            "visit_no": pa.array([r[0] for r in rows], pa.string()),
            "patient_no": patient_no(person, at),
            "setting": pa.array([r[2] for r in rows], pa.string()),
            "charge_item": pa.array([r[3] for r in rows], pa.string()),
            "amount": pa.array([r[4] for r in rows], pa.float64()),
            "charge_time": iso_datetime(at),
        },
        c.persons(person),
        keys,
        at=at,
    )


def _documents(
    c: ChunkState, e: ChunkEvents, admission_no: dict[str, str], patient_no: PatientNumber
) -> None:
    """The EMR module's documents, dumped as the database's tab-separated export: one document per line,
    line breaks inside the text written as the two characters ``\\n`` (a MySQL-style ``SELECT ... INTO
    OUTFILE``), no quoting. Identifier spans in ``truth/note_phi`` index the text with real line breaks."""
    notes = e.notes
    phi: dict[str, list[object]] = {"note_id": [], "type": [], "start": [], "end": [], "text": []}
    keys = [f"DOC{c.index:04d}{k + 1:07d}" for k in range(len(notes))]
    for note_id, note in zip(keys, notes, strict=True):
        if any(ch in note.text for ch in "\t\\\r"):
            raise AssertionError("a note holds a tab, backslash or carriage return the dump cannot escape")
        for kind, start, end in note.phi:
            phi["note_id"].append(note_id)
            phi["type"].append(kind)
            phi["start"].append(start)
            phi["end"].append(end)
            phi["text"].append(note.text[start:end])
        c.out.link("note->visit", DOCUMENTS, note_id, VISITS, note.stay)
    person = np.array([n.person for n in notes], dtype=np.int64)
    written = np.array([n.written for n in notes], dtype=np.int64)
    # A few documents may carry another patient's admission number (a key conflict, off by default).
    first_stay: dict[int, str] = {}
    for s in e.stays:
        first_stay.setdefault(s.person, s.serial)
    owners = reused_owners(c, person, np.array(sorted(first_stay), dtype=np.int64))
    shown_admission = [admission_no[n.stay] for n in notes]
    for k, owner in owners.items():
        shown_admission[k] = admission_no[first_stay[owner]]
        c.out.key_conflicts.append(
            (
                "reused_inpatient_no",
                "inpatient_no",
                shown_admission[k],
                str(c.pop.person_id[person[k]]),
                str(c.pop.person_id[owner]),
                DOCUMENTS,
                keys[k],
                ((VISITS, first_stay[owner]),),
            )
        )
    c.out.emit(
        DOCUMENTS,
        {
            "doc_no": pa.array(keys, pa.string()),
            "patient_no": patient_no(person, written),
            "visit_no": pa.array([n.stay for n in notes], pa.string()),
            "admission_no": pa.array(shown_admission, pa.string()),
            "doc_type": pa.array([n.kind for n in notes], pa.string()),
            "doc_title": pa.array([n.title for n in notes], pa.string()),
            "author": pa.array([n.author for n in notes], pa.string()),
            "created_at": iso_datetime(written),
            "content": pa.array([n.text.replace("\n", "\\n") for n in notes], pa.string()),
        },
        c.persons(person),
        np.array(keys, dtype=str),
        at=written,
        defects=[
            (
                "reused_inpatient_no",
                "admission_no",
                np.array(sorted(owners), dtype=np.int64),
                "another patient's admission number",
            )
        ]
        if owners
        else (),
    )
    c.out.note_phi = pa.table(
        {k: pa.array(v, pa.int64() if k in ("start", "end") else pa.string()) for k, v in phi.items()}
    )
