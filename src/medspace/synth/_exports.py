"""Writes one chunk's true events as each hospital system exports them, injecting the defects of domain.md §1.

Each ``_his``/``_lis``/... function owns one system's files: its column names (the vendor's own), date formats,
keys and patient numbers. The ground truth (true person per row, true links, defects) is recorded beside.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from ._catalogue import Catalogue
from ._config import HospitalConfig
from ._documents import ExamEvent, Note, draw_exams, draw_notes
from ._encounters import (
    DAY, STATUS_CANCELLED, STATUS_DONE, STATUS_REFUND, VISIT_CHECKUP, VISIT_EMERGENCY, VISIT_OUTPATIENT,
    Diagnoses, Stay, Visits, draw_stays, draw_visits,
)  # fmt: skip
from ._formats import age_years, day_format, sex_code, sex_text, ts_format, ts_unpadded
from ._identity import SystemIdentity, patient_numbers, system_identity
from ._lab import LabWork, draw_lab
from ._population import EPOCH, Population, name_pools
from ._sink import ChunkOutput

HIS_PATIENTS = "his/patients.csv"
HIS_REGISTRATIONS = "his/outpatient_registrations.csv"
HIS_ADMISSIONS = "his/inpatient_admissions.csv"
HIS_TRANSFERS = "his/transfers.csv"
HIS_ORDERS = "his/orders.csv"
HIS_PRESCRIPTIONS = "his/prescriptions.csv"
HIS_BILLS = "his/bills.csv"
LIS_REQUESTS = "lis/requests.csv"
LIS_SPECIMENS = "lis/specimens.csv"
LIS_RESULTS = "lis/results.csv"
EMR_FRONT_SHEETS = "emr/front_sheets.csv"
EMR_NOTES = "emr/notes.ndjson"
RIS_EXAMS = "ris/exams.csv"
PACS_STUDIES = "pacs/dicom_studies.ndjson"
SURGERY_OPERATIONS = "surgery/operations.csv"
INSURANCE_SETTLEMENTS = "insurance/settlement_{month}.xlsx"
# Departments whose front-sheet template (template B) writes discharge mode "other" as 6 (domain.md §1.3).
TEMPLATE_B_DEPARTMENTS = ("orthopaedics", "neurology")
KIND_TEXT = {VISIT_OUTPATIENT: "1", VISIT_EMERGENCY: "2", VISIT_CHECKUP: "3"}
KIND_NAME = {VISIT_OUTPATIENT: "outpatient", VISIT_EMERGENCY: "emergency", VISIT_CHECKUP: "checkup"}


class _Chunk:
    """State shared by the system writers of one chunk."""

    def __init__(self, catalogue: Catalogue, config: HospitalConfig, pop: Population, index: int, first_person: int, doctors: NDArray[np.str_]) -> None:
        self.cat = catalogue
        self.config = config
        self.pop = pop
        self.index = index
        self.rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1, index]))
        self.global_index = np.arange(first_person, first_person + len(pop), dtype=np.int64)
        self.doctors = doctors
        self.out = ChunkOutput(index=index, patients=len(pop))
        self.dx = Diagnoses(catalogue)
        self.pools = name_pools(tuple(sorted(catalogue.hospital.local_regions)))
        self.cutoff = ((config.end - EPOCH).days - config.defects.sync_lag_days) * DAY
        self.departments = catalogue.departments
        self.dept_code = np.array([d.code for d in catalogue.departments])
        self.dept_name = np.array([d.name for d in catalogue.departments])
        self.inpatient_no = patient_numbers("inpatient", self.global_index)
        self.lost: set[str] = set()  # HIS visit serials the HIS export lost (orphan parents)
        self.lagged: set[str] = set()  # HIS visit serials after the sync cut-off
        self.visit_file: dict[str, str] = {}
        self.visit_person: dict[str, int] = {}
        self.stay_times: dict[str, int] = {}

    def identity(self) -> SystemIdentity:
        return system_identity(self.pop, self.pools, self.config.defects, self.rng, self.cat.hospital.city)

    def identity_defects(self, ident: SystemIdentity, rows_person: NDArray[np.int64], fields: dict[str, str]) -> list[tuple[str, str, NDArray[np.int64], str]]:
        """Row-level defects for the identity variants this system's rows carry, and their eligible counts."""
        present = np.unique(rows_person)
        result = []
        for kind, fld in fields.items():
            flags = getattr(ident, kind)
            self.out.eligible[kind] += len(present)
            rows = np.nonzero(flags[rows_person])[0]
            result.append((kind, fld, rows, f"{kind.replace('_', ' ')} in this system's patient index"))
        return result

    def persons(self, local: NDArray[np.int64]) -> NDArray[np.str_]:
        return self.pop.person_id[local]


def build_chunk(catalogue: Catalogue, config: HospitalConfig, pop: Population, index: int, first_person: int, doctors: NDArray[np.str_]) -> ChunkOutput:
    c = _Chunk(catalogue, config, pop, index, first_person, doctors)
    visits = draw_visits(catalogue, config, pop, c.rng, index, doctors)
    stays = draw_stays(catalogue, config, pop, c.rng, index, doctors)
    lab = draw_lab(catalogue, pop, visits, stays, c.rng, config.defects.branch_lab_share)
    exams = draw_exams(catalogue, pop, visits, stays, c.rng)
    relatives = np.char.add(c.rng.choice(c.pools.surnames, len(pop), p=c.pools.surname_p), c.rng.choice(c.pools.given_female, len(pop)))
    notes = draw_notes(catalogue, pop, stays, {int(s.person): str(c.inpatient_no[s.person]) for s in stays}, relatives, c.rng, doctors)

    c.visit_person = {str(v): int(p) for v, p in zip(visits.serial, visits.person, strict=True)}
    c.visit_person.update({s.serial: s.person for s in stays})
    c.stay_times = {s.serial: s.times for s in stays}
    _his(c, visits, stays, lab, exams)
    _lis(c, lab)
    _emr(c, stays, notes)
    _ris_pacs(c, exams)
    _surgery(c, stays)
    _insurance(c, stays)
    _truth_visits(c, visits, stays)
    return c.out


# ----------------------------------------------------------------------------------------------------- HIS
def _his(c: _Chunk, visits: Visits, stays: list[Stay], lab: LabWork, exams: list[ExamEvent]) -> None:
    rates = c.config.defects
    rng = c.rng
    ident = c.identity()
    n_v = len(visits.person)
    brid = patient_numbers("his", c.global_index)
    dup_brid = patient_numbers("his_duplicate", c.global_index)
    stay_person = np.array([s.person for s in stays], dtype=np.int64)
    in_his = np.unique(np.concatenate([visits.person, stay_person]))
    duplicated = np.zeros(len(c.pop), dtype=bool)
    duplicated[in_his] = rng.random(len(in_his)) < rates.duplicate_patient_id
    c.out.eligible["duplicate_patient_id"] += len(in_his)
    # A person registered twice uses the second number from a random day on.
    switch_at = (c.config.start - EPOCH).days * DAY + rng.integers(0, (c.config.end - c.config.start).days, len(c.pop)) * DAY

    # Patient master: one row per HIS patient number.
    rows = np.concatenate([in_his, np.nonzero(duplicated)[0]])
    is_dup = np.concatenate([np.zeros(len(in_his), bool), np.ones(int(duplicated.sum()), bool)])
    first_seen = np.full(len(c.pop), c.cutoff, dtype=np.int64)
    np.minimum.at(first_seen, visits.person, visits.start)
    if len(stay_person):
        np.minimum.at(first_seen, stay_person, np.array([s.admit for s in stays]))
    created = np.where(is_dup, np.maximum(switch_at[rows], first_seen[rows]), first_seen[rows])
    phone = np.where(ident.phone[rows] == "", "-", ident.phone[rows])  # HIS writes missing values as "-"
    keys = np.where(is_dup, dup_brid[rows], brid[rows])
    c.out.emit(
        HIS_PATIENTS,
        {
            "BRID": keys, "XM": ident.name[rows], "XB": sex_code(c.pop.sex[rows]),
            "CSRQ": day_format(ident.birth_day[rows], "%Y%m%d"), "SFZH": ident.resident_id[rows], "LXDH": phone,
            "JTDZ": ident.address[rows], "ZYH": c.inpatient_no[rows], "JDRQ": ts_format(created, "%Y%m%d"),
        },
        c.persons(rows), keys,
        defects=[
            *c.identity_defects(ident, rows, {"name_typo": "XM", "birth_date_typo": "CSRQ", "resident_id_typo": "SFZH", "phone_missing": "LXDH", "address_variant": "JTDZ"}),
            ("duplicate_patient_id", "BRID", np.nonzero(is_dup)[0], "second HIS patient number for the same person"),
        ],
    )  # fmt: skip

    def his_number(person: NDArray[np.int64], at: NDArray[np.int64]) -> NDArray[np.str_]:
        return np.where(duplicated[person] & (at >= switch_at[person]), dup_brid[person], brid[person])

    # Outpatient, emergency and check-up registrations.
    lost = rng.random(n_v) < rates.orphan_record
    lagged = visits.start >= c.cutoff
    c.out.eligible["lost_parent"] += n_v + len(stays)
    c.lost.update(visits.serial[lost & ~lagged].tolist())
    c.lagged.update(visits.serial[lagged].tolist())
    withhold = lost | lagged
    stripped = rng.random(n_v) < rates.department_prefix_stripped
    c.out.eligible["department_prefix_stripped"] += int((~withhold).sum())
    dept_code = np.where(stripped, np.array([d.stripped_code for d in c.departments])[visits.department], c.dept_code[visits.department])
    refund_time = visits.start + rng.integers(10, 240, n_v) * 60
    dx_clinical = np.array([d.clinical for d in c.dx.all])
    dx_name = np.array([d.name for d in c.dx.all])
    status = visits.status
    c.out.eligible["registration_refund"] += n_v
    c.out.eligible["registration_cancelled"] += n_v
    kinds = np.array([KIND_TEXT[int(k)] for k in visits.kind]) if n_v else np.array([], dtype=str)
    category = np.select([visits.kind == VISIT_EMERGENCY, visits.kind == VISIT_CHECKUP, visits.fee > 25], ["急诊", "体检", "专家"], "普通")
    reg_person = c.persons(visits.person)
    c.out.emit(
        HIS_REGISTRATIONS,
        {
            "GHXH": visits.serial, "BRID": his_number(visits.person, visits.start), "XM": ident.name[visits.person],
            "GHLB": category, "JZLX": kinds, "KSDM": dept_code, "KSMC": c.dept_name[visits.department],
            "YSXM": visits.doctor, "GHRQ": ts_format(visits.start, "%Y%m%d"), "GHSJ": ts_format(visits.start, "%H%M%S"),
            "GHF": visits.fee, "ZT": status.astype(str),
            "THSJ": pa.array(np.where(status == STATUS_REFUND, ts_format(refund_time, "%Y%m%d%H%M%S").to_numpy(zero_copy_only=False), "")),
            "ZDDM": np.where(status == STATUS_DONE, dx_clinical[visits.diagnosis], ""),
            "ZDMC": np.where(status == STATUS_DONE, dx_name[visits.diagnosis], ""),
        },
        reg_person, visits.serial,
        duplicate_rate=rates.duplicate_record, rng=rng, withhold=withhold,
        defects=[
            ("department_prefix_stripped", "KSDM", np.nonzero(stripped)[0], "department code without its letter prefix"),
            ("registration_refund", "ZT", np.nonzero(status == STATUS_REFUND)[0], "registration refunded (退号)"),
            ("registration_cancelled", "ZT", np.nonzero(status == STATUS_CANCELLED)[0], "registration cancelled"),
            ("lost_parent", "GHXH", np.nonzero(lost & ~lagged)[0], "row lost by the HIS export; its children are orphans"),
        ],
    )  # fmt: skip
    for serial in visits.serial:
        c.visit_file[str(serial)] = HIS_REGISTRATIONS

    # Outpatient prescriptions and bills.
    _prescriptions_and_outpatient_bills(c, visits, lab, exams, his_number)
    _inpatient(c, stays, his_number, ident)


def _prescriptions_and_outpatient_bills(c: _Chunk, visits: Visits, lab: LabWork, exams: list[ExamEvent], his_number: object) -> None:
    rng = c.rng
    cond_keys = [cond.key for cond in c.cat.conditions]
    drugs_for: list[list[int]] = [[i for i, d in enumerate(c.cat.drugs) if key in d.conditions] for key in cond_keys]
    paracetamol = next(i for i, d in enumerate(c.cat.drugs) if not d.conditions)
    rx_visit: list[int] = []
    rx_drug: list[int] = []
    rx_qty: list[int] = []
    for j in range(len(visits.person)):
        if visits.status[j] != STATUS_DONE:
            continue
        d = int(visits.diagnosis[j])
        options = drugs_for[d] if d < len(cond_keys) else ([paracetamol] if visits.kind[j] == VISIT_EMERGENCY else [])
        if options and rng.random() < 0.7:
            for drug in rng.choice(options, size=min(len(options), int(rng.integers(1, 4))), replace=False):
                rx_visit.append(j)
                rx_drug.append(int(drug))
                rx_qty.append(int(rng.integers(1, 4)))
    v = np.array(rx_visit, dtype=np.int64)
    drug = np.array(rx_drug, dtype=np.int64)
    qty = np.array(rx_qty, dtype=np.int64)
    price = np.array([d.price for d in c.cat.drugs])[drug] if len(drug) else np.zeros(0)
    amount = np.round(price * qty, 2)
    rx_no = np.char.add(np.char.add("CF", visits.serial[v]), np.char.zfill(np.arange(len(v)).astype(str), 3)) if len(v) else np.array([], dtype=str)
    rx_time = visits.start[v] + 1200
    serial = visits.serial[v]
    withhold = np.array([s in c.lost or s in c.lagged for s in serial], dtype=bool) if len(v) else np.zeros(0, bool)
    lagged_rx = np.array([s in c.lagged for s in serial], dtype=bool) if len(v) else np.zeros(0, bool)
    person = c.persons(visits.person[v])
    orphan_rows = np.nonzero(withhold & ~lagged_rx)[0]
    brid = his_number(visits.person[v], visits.start[v])  # type: ignore[operator]
    c.out.emit(
        HIS_PRESCRIPTIONS,
        {
            "CFH": rx_no, "GHXH": serial, "BRID": brid, "YPBM": np.array([d.code for d in c.cat.drugs])[drug] if len(drug) else np.array([], str),
            "YPMC": np.array([d.name for d in c.cat.drugs])[drug] if len(drug) else np.array([], str),
            "GG": np.array([d.spec for d in c.cat.drugs])[drug] if len(drug) else np.array([], str),
            "SL": qty, "DJ": price, "JE": amount, "KFSJ": ts_format(rx_time, "%Y%m%d%H%M%S"),
        },
        person, rx_no, withhold=lagged_rx,
        defects=[("orphan_record", "GHXH", orphan_rows, "registration lost from his/outpatient_registrations.csv")],
    )  # fmt: skip
    for k in range(len(v)):
        c.out.link("prescription->visit", HIS_PRESCRIPTIONS, str(rx_no[k]), HIS_REGISTRATIONS, str(serial[k]))

    # Bills: registration fee (refunds reversed by a negative row), drugs, lab and exam fees per visit.
    b_serial: list[str] = []
    b_person: list[int] = []
    b_kind: list[str] = []
    b_amount: list[float] = []
    b_time: list[int] = []
    b_visit_kind: list[int] = []
    for j in range(len(visits.person)):
        if visits.status[j] == STATUS_CANCELLED or visits.fee[j] == 0:
            continue
        b_serial.append(str(visits.serial[j]))
        b_person.append(int(visits.person[j]))
        b_kind.append("挂号费")
        b_amount.append(float(visits.fee[j]))
        b_time.append(int(visits.start[j]))
        b_visit_kind.append(int(visits.kind[j]))
        if visits.status[j] == STATUS_REFUND:
            b_serial.append(str(visits.serial[j]))
            b_person.append(int(visits.person[j]))
            b_kind.append("挂号费")
            b_amount.append(-float(visits.fee[j]))
            b_time.append(int(visits.start[j]) + 3600)
            b_visit_kind.append(int(visits.kind[j]))
    visit_index = {str(s): j for j, s in enumerate(visits.serial)}
    for k in range(len(v)):
        b_serial.append(str(serial[k]))
        b_person.append(int(visits.person[v[k]]))
        b_kind.append("西药费")
        b_amount.append(float(amount[k]))
        b_time.append(int(rx_time[k]))
        b_visit_kind.append(int(visits.kind[v[k]]))
    lab_fee = rng.integers(40, 300, len(lab.req_visit)).astype(float)
    for r in range(len(lab.req_visit)):
        j = visit_index.get(str(lab.req_visit[r]))
        if j is not None:
            b_serial.append(str(lab.req_visit[r]))
            b_person.append(int(lab.req_person[r]))
            b_kind.append("检验费")
            b_amount.append(float(lab_fee[r]))
            b_time.append(int(lab.req_time[r]))
            b_visit_kind.append(int(visits.kind[j]))
    exam_fee = {"CT": 320.0, "OP": 80.0, "OPT": 150.0, "US": 120.0}
    for e in exams:
        j = visit_index.get(e.visit)
        if j is not None:
            b_serial.append(e.visit)
            b_person.append(e.person)
            b_kind.append("检查费")
            b_amount.append(exam_fee[c.cat.exams[e.exam].modality])
            b_time.append(e.requested)
            b_visit_kind.append(int(visits.kind[j]))
    bp = np.array(b_person, dtype=np.int64)
    bt = np.array(b_time, dtype=np.int64)
    bserial = np.array(b_serial, dtype=str)
    bamount = np.array(b_amount, dtype=np.float64)
    bvk = np.array(b_visit_kind, dtype=np.int64)
    # KPI: outpatient revenue counts outpatient visits only (emergency and check-ups excluded), in cents.
    c.out.kpi["outpatient_revenue_cents"] += int(np.round(bamount[bvk == VISIT_OUTPATIENT] * 100).sum())
    _emit_bills(c, "1", bserial, bp, bt, b_kind, bamount, his_number)


def _emit_bills(c: _Chunk, kind: str, serial: NDArray[np.str_], person: NDArray[np.int64], at: NDArray[np.int64], item: list[str], amount: NDArray[np.float64], his_number: object) -> None:
    lagged = np.array([s in c.lagged for s in serial], dtype=bool) if len(serial) else np.zeros(0, bool)
    lost = np.array([s in c.lost for s in serial], dtype=bool) if len(serial) else np.zeros(0, bool)
    prefix = "SF" if kind == "1" else "ZF"
    key = np.char.add(np.char.add(prefix, f"{c.index:04d}"), np.char.zfill(np.arange(len(serial)).astype(str), 7)) if len(serial) else np.array([], str)
    key = np.char.add(key, "M" if kind == "1" else "Z") if len(serial) else key
    parent = HIS_REGISTRATIONS if kind == "1" else HIS_ADMISSIONS
    c.out.emit(
        HIS_BILLS,
        {
            "SFXH": key, "JZLSH": serial, "BRID": his_number(person, at), "MZZY": np.full(len(serial), kind),  # type: ignore[operator]
            "FYLB": np.array(item, dtype=str), "JE": amount, "SFSJ": ts_format(at, "%Y%m%d%H%M%S"),
        },
        c.persons(person), key, withhold=lagged,
        defects=[("orphan_record", "JZLSH", np.nonzero(lost & ~lagged)[0], f"visit lost from {parent}")],
    )  # fmt: skip


def _inpatient(c: _Chunk, stays: list[Stay], his_number: object, ident: SystemIdentity) -> None:
    rates = c.config.defects
    rng = c.rng
    n = len(stays)
    c.out.eligible["recalled_discharge"] += n
    rows: list[dict[str, object]] = []
    row_person: list[int] = []
    row_key: list[str] = []
    row_at: list[int] = []
    recalled_rows: list[int] = []
    lost_rows: list[int] = []
    withhold: list[bool] = []
    lost = rng.random(n) < rates.orphan_record
    for k, s in enumerate(stays):
        is_lagged = s.admit >= c.cutoff
        if is_lagged:
            c.lagged.add(s.serial)
        elif lost[k]:
            c.lost.add(s.serial)
            lost_rows.append(len(rows))
        c.visit_file[s.serial] = HIS_ADMISSIONS
        dept = c.dept_code[s.department]
        out_dept = c.dept_code[s.discharge_department]
        # HIS keeps dates only (time lost: domain.md §1.4); bed-days counted per HIS row.
        segments = [(s.serial, s.admit, s.discharge, "0")]
        if s.recalled_at is not None:
            segments = [(s.serial, s.admit, s.recalled_at, "0"), (s.serial + "R", s.recalled_at, s.discharge, "1")]
        for serial, a, d, recalled in segments:
            if recalled == "1":
                recalled_rows.append(len(rows))
            rows.append({
                "ZYH": str(c.inpatient_no[s.person]), "ZYCS": s.times, "JZLSH": serial, "BRID": "", "XM": str(ident.name[s.person]),
                "RYKS": str(dept), "CYKS": str(out_dept), "RYRQ": _ymd(a), "CYRQ": _ymd(d), "ZT": "出院", "ZHBZ": recalled,
                "CYFS": s.discharge_mode, "ZYTS": max(1, d // DAY - a // DAY), "ZFY": s.total_cost if recalled == "1" or s.recalled_at is None else 0.0,
            })  # fmt: skip
            row_person.append(s.person)
            row_key.append(serial)
            row_at.append(a)
            withhold.append(is_lagged or (bool(lost[k]) and recalled == "0"))
    person = np.array(row_person, dtype=np.int64)
    columns = {k: [r[k] for r in rows] for k in rows[0]} if rows else {k: [] for k in ("ZYH", "ZYCS", "JZLSH", "BRID", "XM", "RYKS", "CYKS", "RYRQ", "CYRQ", "ZT", "ZHBZ", "CYFS", "ZYTS", "ZFY")}
    columns["BRID"] = his_number(person, np.array(row_at, dtype=np.int64)) if rows else []  # type: ignore[operator]
    columns["ZYCS"] = pa.array(columns["ZYCS"], pa.int64())
    columns["ZYTS"] = pa.array(columns["ZYTS"], pa.int64())
    columns["ZFY"] = pa.array(columns["ZFY"], pa.float64())
    keys = np.array(row_key, dtype=str)
    c.out.emit(
        HIS_ADMISSIONS, columns, c.persons(person), keys, withhold=np.array(withhold, dtype=bool),
        defects=[
            ("recalled_discharge", "ZHBZ", np.array(recalled_rows, dtype=np.int64), "discharge recalled (出院召回): HIS added an admission, a discharge and bed-days"),
            ("lost_parent", "JZLSH", np.array(lost_rows, dtype=np.int64), "row lost by the HIS export; its children are orphans"),
        ],
    )  # fmt: skip

    # Transfers between departments (转科).
    t_rows = [s for s in stays if s.transfer_at is not None]
    tp = np.array([s.person for s in t_rows], dtype=np.int64)
    t_keys = np.array([f"{s.serial}T1" for s in t_rows], dtype=str)
    t_at = np.array([s.transfer_at for s in t_rows], dtype=np.int64)
    c.out.emit(
        HIS_TRANSFERS,
        {
            "ZKXH": t_keys, "ZYH": c.inpatient_no[tp], "ZYCS": pa.array([s.times for s in t_rows], pa.int64()),
            "ZCKS": c.dept_code[[s.department for s in t_rows]] if t_rows else np.array([], str),
            "ZRKS": c.dept_code[[s.discharge_department for s in t_rows]] if t_rows else np.array([], str),
            "ZKSJ": ts_format(t_at, "%Y%m%d%H%M"),
        },
        c.persons(tp), t_keys, withhold=np.array([s.admit >= c.cutoff for s in t_rows], dtype=bool),
    )  # fmt: skip

    # Inpatient orders (医嘱): long-term drug orders, a nursing order and operation orders.
    o_rows: list[tuple[int, str, int, str, str, str, int, int]] = []
    cond_keys = [cond.key for cond in c.cat.conditions]
    for s in stays:
        key = cond_keys[s.diagnosis] if s.diagnosis < len(cond_keys) else None
        o_rows.append((s.person, s.serial, s.times, "1", "护理", "二级护理", s.admit + 1800, s.discharge))
        for d in c.cat.drugs:
            if key in d.conditions:
                o_rows.append((s.person, s.serial, s.times, "1", "药品", f"{d.name} {d.spec}|{d.code}", s.admit + 3600, s.discharge - 3600))
        for op in s.operations:
            o_rows.append((s.person, s.serial, s.times, "2", "手术", f"拟于{_ymd(op.start)}行{op.procedure.name}", op.start - 12 * 3600, op.start))
    op_ = np.array([r[0] for r in o_rows], dtype=np.int64)
    o_keys = np.array([f"{r[1]}Y{k:03d}" for k, r in enumerate(o_rows)], dtype=str)
    content = [r[5].split("|")[0] for r in o_rows]
    code = [r[5].split("|")[1] if "|" in r[5] else "" for r in o_rows]
    o_serial = [r[1] for r in o_rows]
    lost_o = np.array([s in c.lost for s in o_serial], dtype=bool)
    lagged_o = np.array([s in c.lagged for s in o_serial], dtype=bool)
    c.out.emit(
        HIS_ORDERS,
        {
            "YZXH": o_keys, "ZYH": c.inpatient_no[op_], "ZYCS": pa.array([r[2] for r in o_rows], pa.int64()),
            "YZLB": [r[3] for r in o_rows], "YZLX": [r[4] for r in o_rows], "YZNR": content, "YPBM": code,
            "KSSJ": ts_format(np.array([r[6] for r in o_rows], np.int64), "%Y%m%d%H%M%S"),
            "TZSJ": ts_format(np.array([r[7] for r in o_rows], np.int64), "%Y%m%d%H%M%S"),
        },
        c.persons(op_), o_keys, withhold=lagged_o,
        defects=[("orphan_record", "ZYH", np.nonzero(lost_o & ~lagged_o)[0], "admission lost from his/inpatient_admissions.csv")],
    )  # fmt: skip
    for k, s_ in enumerate(o_serial):
        c.out.link("order->stay", HIS_ORDERS, str(o_keys[k]), HIS_ADMISSIONS, s_)

    # Inpatient bill details: one row per cost category (their sum is the front sheet's D01).
    items = [(s, kind, amount) for s in stays for kind, amount in s.costs.items()]
    _emit_bills(
        c, "2", np.array([s.serial for s, _, _ in items], dtype=str), np.array([s.person for s, _, _ in items], dtype=np.int64),
        np.array([s.discharge - 3600 for s, _, _ in items], dtype=np.int64), [k for _, k, _ in items],
        np.array([a for _, _, a in items], dtype=np.float64), his_number,
    )  # fmt: skip


def _ymd(ts: int) -> str:
    return str(np.datetime64(ts // DAY, "D")).replace("-", "")


# ----------------------------------------------------------------------------------------------------- LIS
def _lis(c: _Chunk, lab: LabWork) -> None:
    rates = c.config.defects
    rng = c.rng
    ident = c.identity()
    tests = c.cat.lab_tests
    n_req = len(lab.req_person)
    lis_no = patient_numbers("lis", c.global_index)
    req_no = np.char.add(np.char.add("LR", f"{c.index:04d}"), np.char.zfill(np.arange(1, n_req + 1).astype(str), 7))
    # Wrong visit: the request carries the number of another visit of the same person (domain.md §1.9).
    visits_of: dict[int, list[str]] = {}
    for serial, person in c.visit_person.items():
        visits_of.setdefault(person, []).append(serial)
    shown_visit = lab.req_visit.copy()
    wrong: list[int] = []
    for r in range(n_req):
        others = visits_of.get(int(lab.req_person[r]), [])
        if len(others) > 1:
            c.out.eligible["lab_wrong_visit"] += 1
            if rng.random() < rates.lab_wrong_visit:
                choices = [s for s in sorted(others) if s != lab.req_visit[r]]
                shown_visit[r] = choices[int(rng.integers(len(choices)))]
                wrong.append(r)
    dx_name = np.array([d.name for d in c.dx.all])
    inpatient = lab.req_kind == "住院"
    orphan = [r for r in range(n_req) if shown_visit[r] in c.lost or shown_visit[r] in c.lagged]
    orphan_detail = ["sync lag: visit after the HIS export cut-off" if shown_visit[r] in c.lagged else "visit lost from the HIS export" for r in orphan]
    persons = c.persons(lab.req_person)
    c.out.emit(
        LIS_REQUESTS,
        {
            "RequestNo": req_no, "PatientNo": lis_no[lab.req_person], "PatientName": ident.name[lab.req_person],
            "Sex": sex_text(c.pop.sex[lab.req_person]),
            "Age": np.char.add(age_years(ident.birth_day[lab.req_person], lab.req_time).astype(str), "岁"),
            "PatientType": lab.req_kind, "VisitSerial": shown_visit,
            "InpatientNo": np.where(inpatient, c.inpatient_no[lab.req_person], ""),
            "DeptName": c.dept_name[lab.req_department], "ClinicalDiagnosis": dx_name[lab.req_diagnosis],
            "OrderTime": ts_unpadded(lab.req_time), "Doctor": rng.choice(c.doctors, n_req),
        },
        persons, req_no,
        defects=[
            *c.identity_defects(ident, lab.req_person, {"name_typo": "PatientName", "birth_date_typo": "Age"}),
            ("lab_wrong_visit", "VisitSerial", np.array(wrong, dtype=np.int64), "request carries another visit's number"),
            ("orphan_record", "VisitSerial", np.array(orphan, dtype=np.int64), np.array(orphan_detail, dtype=str)),
        ],
    )  # fmt: skip
    for r in range(n_req):
        c.out.link("lab_request->visit", LIS_REQUESTS, str(req_no[r]), c.visit_file[str(lab.req_visit[r])], str(lab.req_visit[r]))

    n_t = len(lab.tube_request)
    barcode = np.char.add(f"{c.index:04d}", np.char.zfill(np.arange(1, n_t + 1).astype(str), 8))
    c.out.emit(
        LIS_SPECIMENS,
        {
            "BarCode": barcode, "RequestNo": req_no[lab.tube_request], "SpecimenType": lab.tube_panel_kind,
            "TubeType": lab.tube_tube, "CollectTime": ts_unpadded(lab.tube_collect), "ReceiveTime": ts_unpadded(lab.tube_receive),
        },
        persons[lab.tube_request], barcode,
    )  # fmt: skip

    # Results: the branch lab reports glucose, lipids, creatinine and uric acid in conventional units and HbA1c
    # in IFCC mmol/mol, with its own reference ranges (domain.md §1.5-6).
    item_req = lab.tube_request[lab.item_tube]
    branch = lab.req_branch[item_req]
    has_alt = np.array([t.alt_unit is not None for t in tests])[lab.item_test]
    alt = branch & has_alt
    value = lab.item_value.copy()
    factor = np.array([t.alt_factor or 1.0 for t in tests])[lab.item_test]
    is_ifcc = np.array([t.alt_formula == "hba1c_ifcc" for t in tests])[lab.item_test]
    alt_value = np.where(is_ifcc, np.round((value - 2.15) * 10.929), np.round(value * factor, 2))
    shown = np.where(alt, alt_value, value)
    unit = np.where(alt, np.array([t.alt_unit or "" for t in tests])[lab.item_test], np.array([t.unit for t in tests])[lab.item_test])

    def convert(x: float | None, t_index: int) -> float | None:
        t = tests[t_index]
        if x is None:
            return None
        return round((x - 2.15) * 10.929) if t.alt_formula else round(x * (t.alt_factor or 1.0), 2)

    low = np.full(len(value), np.nan)
    high = np.full(len(value), np.nan)
    ref_text = np.empty(len(value), dtype=object)
    for ti, t in enumerate(tests):
        for is_branch in (False, True):
            for is_alt in (False, True):
                mask = (lab.item_test == ti) & (branch == is_branch) & (alt == is_alt)
                if not mask.any():
                    continue
                lo, hi = t.branch_range if is_branch else t.central_range
                if is_alt:
                    lo, hi = convert(lo, ti), convert(hi, ti)
                low[mask] = np.nan if lo is None else lo
                high[mask] = np.nan if hi is None else hi
                ref_text[mask] = f"<{hi:g}" if lo is None else f"{lo:g}-{hi:g}"
    flag = np.where(shown > high, "H", np.where(shown < low, "L", ""))
    n_i = len(value)
    report = ts_unpadded(lab.item_report).to_numpy(zero_copy_only=False)
    other_format = rng.random(n_i) < rates.mixed_date_format
    c.out.eligible["mixed_date_format"] += n_i
    report = np.where(other_format, ts_format(lab.item_report, "%Y-%m-%d %H:%M:%S").to_numpy(zero_copy_only=False), report)
    c.out.eligible["mixed_unit"] += int(has_alt.sum())
    result_key = np.char.add(np.char.add(barcode[lab.item_tube], "-"), np.array([t.code for t in tests])[lab.item_test])
    c.out.emit(
        LIS_RESULTS,
        {
            "BarCode": barcode[lab.item_tube], "RequestNo": req_no[item_req], "ItemCode": np.array([t.code for t in tests])[lab.item_test],
            "ItemName": np.array([t.name for t in tests])[lab.item_test], "Result": np.char.mod("%g", shown), "Unit": unit,
            "RefRange": ref_text.astype(str), "Flag": flag, "ReportTime": report, "Reviewer": rng.choice(c.doctors, n_i),
            "ReviewTime": ts_unpadded(lab.item_review), "LabSite": np.where(branch, "分院", "总院"),
        },
        persons[item_req], result_key, duplicate_rate=rates.duplicate_record, rng=rng,
        defects=[
            ("mixed_unit", "Unit", np.nonzero(alt)[0], "reported in the branch lab's conventional unit"),
            ("mixed_date_format", "ReportTime", np.nonzero(other_format)[0], "time written as yyyy-MM-dd HH:mm:ss"),
        ],
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------------- EMR
def _emr(c: _Chunk, stays: list[Stay], notes: list[Note]) -> None:
    rates = c.config.defects
    rng = c.rng
    ident = c.identity()
    dx = c.dx.all
    template_b = {c.dx.department_index[k] for k in TEMPLATE_B_DEPARTMENTS}
    rows: list[dict[str, object]] = []
    legacy_rows: list[int] = []
    drift_rows: list[int] = []
    for k, s in enumerate(stays):
        p = s.person
        main = dx[s.diagnosis]
        code = main.clinical
        c.out.eligible["mixed_code_edition"] += 1
        if rng.random() < rates.mixed_code_edition:
            code = main.legacy
            legacy_rows.append(k)
        mode = s.discharge_mode
        if mode == "9" and s.discharge_department in template_b:
            c.out.eligible["value_set_drift"] += 1
            if rng.random() < rates.value_set_drift:
                mode = "6"
                drift_rows.append(k)
        row: dict[str, object] = {
            "A48": str(c.inpatient_no[p]), "A49": s.times, "A11": str(ident.name[p]), "A12C": "1" if c.pop.sex[p] == "M" else "2",
            "A13": str(np.datetime64(int(ident.birth_day[p]), "D")), "A20": str(ident.resident_id[p]),
            "A26": str(ident.address[p]), "A47": str(ident.phone[p]), "A46C": s.payment, "B11C": s.route,
            "B12": _iso(s.admit), "B13C": str(c.dept_code[s.department]), "B15": _iso(s.discharge),
            "B16C": str(c.dept_code[s.discharge_department]), "B20": s.bed_days, "B34C": mode, "B38": "1" if s.day_surgery else "2",
            "C03C": code, "C04N": main.name,
            "C09C": main.pathology or "", "C12C": main.external_cause or "",
        }
        for i in range(3):
            other = dx[s.other_diagnoses[i]] if i < len(s.other_diagnoses) else None
            row[f"C06x{i + 1:02d}C"] = other.clinical if other else ""
            row[f"C07x{i + 1:02d}N"] = other.name if other else ""
        for i in range(5):
            op = s.operations[i] if i < len(s.operations) else None
            row[f"C14x{i + 1:02d}C"] = op.procedure.clinical if op else ""
            row[f"C15x{i + 1:02d}N"] = op.procedure.name if op else ""
            row[f"C16x{i + 1:02d}"] = _iso(op.start) if op else ""
            row[f"C17x{i + 1:02d}"] = str(op.procedure.grade) if op else ""
            row[f"C18x{i + 1:02d}"] = op.surgeon if op else ""
        row["D01"] = s.total_cost
        row["D09"] = round(s.total_cost * (1.0 if s.payment == "7" else 0.3), 2)
        for i, kind in enumerate(("床位费", "护理费", "西药费", "检验费", "检查费", "手术费", "材料费")):
            row[f"D{11 + i}"] = s.costs.get(kind, 0.0)
        rows.append(row)
    person = np.array([s.person for s in stays], dtype=np.int64)
    keys = np.array([f"{c.inpatient_no[s.person]}-{s.times}" for s in stays], dtype=str)
    columns = {k: [r[k] for r in rows] for k in rows[0]} if rows else {}
    if rows:
        for k in ("A49", "B20"):
            columns[k] = pa.array(columns[k], pa.int64())
        c.out.emit(
            EMR_FRONT_SHEETS, columns, c.persons(person), keys, duplicate_rate=rates.duplicate_record, rng=rng,
            defects=[
                *c.identity_defects(ident, person, {"name_typo": "A11", "birth_date_typo": "A13", "resident_id_typo": "A20", "phone_missing": "A47", "address_variant": "A26"}),
                ("mixed_code_edition", "C03C", np.array(legacy_rows, dtype=np.int64), "main diagnosis coded in a legacy edition"),
                ("value_set_drift", "B34C", np.array(drift_rows, dtype=np.int64), "template B codes discharge mode 'other' as 6, not 9"),
            ],
        )  # fmt: skip
        for k, s in enumerate(stays):
            c.out.link("front_sheet->stay", EMR_FRONT_SHEETS, str(keys[k]), HIS_ADMISSIONS, s.serial)

    emr_no = patient_numbers("emr", c.global_index)
    lines = []
    note_keys = []
    phi: dict[str, list[object]] = {"note_id": [], "type": [], "start": [], "end": [], "text": []}
    for k, note in enumerate(notes):
        note_id = f"DOC{c.index:04d}{k:07d}"
        note_keys.append(note_id)
        lines.append(json.dumps({
            "resourceType": "DocumentReference", "id": note_id, "status": "current",
            "type": {"coding": [{"system": "urn:medspace:emr-note-type", "code": note.kind, "display": note.title}]},
            "subject": {"identifier": {"system": "urn:medspace:emr-patient", "value": str(emr_no[note.person])}},
            "context": {"encounter": [{"identifier": {"system": "urn:medspace:his-inpatient-number", "value": f"{c.inpatient_no[note.person]}-{c.stay_times[note.stay]}"}}]},
            "date": _iso(note.written).replace(" ", "T") + "+08:00", "author": [{"display": note.author}],
            "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "title": note.title, "text": note.text}}],
        }, ensure_ascii=False, separators=(",", ":")))  # fmt: skip
        for kind, start, end in note.phi:
            phi["note_id"].append(note_id)
            phi["type"].append(kind)
            phi["start"].append(start)
            phi["end"].append(end)
            phi["text"].append(note.text[start:end])
        c.out.link("note->stay", EMR_NOTES, note_id, HIS_ADMISSIONS, note.stay)
    npers = np.array([n.person for n in notes], dtype=np.int64)
    c.out.emit(EMR_NOTES, {"json": lines}, c.persons(npers), np.array(note_keys, dtype=str))
    c.out.note_phi = pa.table({k: pa.array(v, pa.int64() if k in ("start", "end") else pa.string()) for k, v in phi.items()})


def _iso(ts: int) -> str:
    return str(np.datetime64(ts, "s")).replace("T", " ")


# ------------------------------------------------------------------------------------------------ RIS/PACS
def _ris_pacs(c: _Chunk, exams: list[ExamEvent]) -> None:
    ident_ris = c.identity()
    ident_pacs = c.identity()
    n = len(exams)
    person = np.array([e.person for e in exams], dtype=np.int64)
    requested = np.array([e.requested for e in exams], dtype=np.int64)
    performed = np.array([e.performed for e in exams], dtype=np.int64)
    reported = np.array([e.reported for e in exams], dtype=np.int64)
    modality = np.array([c.cat.exams[e.exam].modality for e in exams], dtype=str)
    request_no = np.char.add(np.char.add("JC", f"{c.index:04d}"), np.char.zfill(np.arange(1, n + 1).astype(str), 6))
    accession = np.char.add(np.char.add(np.char.add(modality, ts_format(performed, "%y%m%d").to_numpy(zero_copy_only=False)), f"{c.index:04d}"), np.char.zfill(np.arange(1, n + 1).astype(str), 5)) if n else np.array([], str)
    visit = np.array([e.visit for e in exams], dtype=str)
    orphan = [k for k in range(n) if visit[k] in c.lost or visit[k] in c.lagged]
    detail = np.array(["sync lag: visit after the HIS export cut-off" if visit[k] in c.lagged else "visit lost from the HIS export" for k in orphan], dtype=str)
    c.out.emit(
        RIS_EXAMS,
        {
            "申请单号": request_no, "检查号": accession, "就诊流水号": visit, "患者姓名": ident_ris.name[person],
            "性别": sex_text(c.pop.sex[person]), "年龄": np.char.add(age_years(ident_ris.birth_day[person], requested).astype(str), "岁"),
            "检查项目": np.array([c.cat.exams[e.exam].name for e in exams], dtype=str), "检查类别": modality,
            "申请科室": c.dept_name[[e.department for e in exams]] if n else np.array([], str),
            "申请时间": ts_format(requested, "%Y-%m-%d %H:%M"), "检查时间": ts_format(performed, "%Y-%m-%d %H:%M"),
            "报告时间": ts_format(reported, "%Y-%m-%d %H:%M"),
            "客观所见": np.array([e.findings for e in exams], dtype=str), "主观提示": np.array([e.impression for e in exams], dtype=str),
            "报告医生": c.rng.choice(c.doctors, n), "审核医生": c.rng.choice(c.doctors, n),
        },
        c.persons(person), accession,
        defects=[
            *c.identity_defects(ident_ris, person, {"name_typo": "患者姓名", "birth_date_typo": "年龄"}),
            ("orphan_record", "就诊流水号", np.array(orphan, dtype=np.int64), detail),
        ],
    )  # fmt: skip
    pacs_no = patient_numbers("pacs", c.global_index)
    lines = []
    for k, e in enumerate(exams):
        exam = c.cat.exams[e.exam]
        p = e.person
        lines.append(json.dumps({
            "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},
            "00080020": {"vr": "DA", "Value": [_ymd(e.performed)]},
            "00080030": {"vr": "TM", "Value": [str(np.datetime64(e.performed, "s"))[11:].replace(":", "")]},
            "00080050": {"vr": "SH", "Value": [str(accession[k])]},
            "00080060": {"vr": "CS", "Value": [exam.modality]},
            "00080080": {"vr": "LO", "Value": [c.cat.hospital.name]},
            "00081030": {"vr": "LO", "Value": [exam.name]},
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": str(ident_pacs.name[p])}]},
            "00100020": {"vr": "LO", "Value": [str(pacs_no[p])]},
            "00100030": {"vr": "DA", "Value": [str(np.datetime64(int(ident_pacs.birth_day[p]), "D")).replace("-", "")]},
            "00100040": {"vr": "CS", "Value": ["M" if c.pop.sex[p] == "M" else "F"]},
            "0020000D": {"vr": "UI", "Value": [f"1.2.156.600734.1.{c.index}.{k + 1}"]},
            "00201208": {"vr": "IS", "Value": [int(c.rng.integers(1, 400))]},
        }, ensure_ascii=False, separators=(",", ":")))  # fmt: skip
        c.out.link("exam->visit", RIS_EXAMS, str(accession[k]), c.visit_file[e.visit], e.visit)
        c.out.link("study->exam", PACS_STUDIES, f"1.2.156.600734.1.{c.index}.{k + 1}", RIS_EXAMS, str(accession[k]))
    study_uid = np.array([f"1.2.156.600734.1.{c.index}.{k + 1}" for k in range(n)], dtype=str)
    c.out.emit(
        PACS_STUDIES, {"json": lines}, c.persons(person), study_uid,
        defects=c.identity_defects(ident_pacs, person, {"name_typo": "00100010", "birth_date_typo": "00100030"}),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- surgery
def _surgery(c: _Chunk, stays: list[Stay]) -> None:
    ident = c.identity()
    ss_no = patient_numbers("surgery", c.global_index)
    rows = [(s, op, i) for s in stays for i, op in enumerate(s.operations)]
    if not rows:
        return
    person = np.array([s.person for s, _, _ in rows], dtype=np.int64)
    keys = np.array([f"SS{c.index:04d}{k:06d}" for k in range(len(rows))], dtype=str)
    seq_in_session = [sum(1 for o in s.operations[:i] if o.session == op.session) + 1 for s, op, i in rows]

    def fmt(ts: list[int]) -> pa.Array:
        return ts_format(np.array(ts, dtype=np.int64), "%Y-%m-%d %H:%M")

    c.out.emit(
        SURGERY_OPERATIONS,
        {
            "OPER_NO": keys, "SS_PATIENT_ID": ss_no[person], "INP_NO": c.inpatient_no[person],
            "VISIT_ID": pa.array([s.times for s, _, _ in rows], pa.int64()), "PATIENT_NAME": ident.name[person],
            "SEX": sex_text(c.pop.sex[person]), "DEPT_CODE": c.dept_code[[c.dx.department_index[op.procedure.department] for _, op, _ in rows]],
            "THEATRE": [op.theatre for _, op, _ in rows], "SESSION_NO": pa.array([op.session for _, op, _ in rows], pa.int64()),
            "SEQ_IN_SESSION": pa.array(seq_in_session, pa.int64()),
            "OPER_CODE": [op.procedure.clinical for _, op, _ in rows], "OPER_NAME": [op.procedure.name for _, op, _ in rows],
            "OPER_GRADE": pa.array([op.procedure.grade for _, op, _ in rows], pa.int64()),
            "MINIMALLY_INVASIVE": ["Y" if op.procedure.minimally_invasive else "N" for _, op, _ in rows],
            "INTERVENTIONAL": ["Y" if op.procedure.interventional else "N" for _, op, _ in rows],
            "DAY_SURGERY": ["Y" if s.day_surgery else "N" for s, _, _ in rows],
            "URGENCY": ["择期" if op.elective else "急诊" for _, op, _ in rows],
            "ANES_METHOD": ["局部麻醉" if op.procedure.grade <= 2 else "全身麻醉" for _, op, _ in rows],
            "ANES_START": fmt([op.start - 1200 for _, op, _ in rows]), "OPER_START": fmt([op.start for _, op, _ in rows]),
            "OPER_END": fmt([op.end for _, op, _ in rows]), "ANES_END": fmt([op.end + 600 for _, op, _ in rows]),
            "OUT_ROOM_TIME": fmt([op.end + 1800 for _, op, _ in rows]),
            "BLOOD_LOSS_ML": pa.array([op.blood_loss_ml for _, op, _ in rows], pa.int64()),
            "TRANSFUSION_ML": pa.array([op.transfusion_ml for _, op, _ in rows], pa.int64()),
            "DESTINATION": ["ICU" if op.procedure.grade == 4 and op.blood_loss_ml > 300 else "病房" for _, op, _ in rows],
            "SURGEON": [op.surgeon for _, op, _ in rows],
        },
        c.persons(person), keys, duplicate_rate=c.config.defects.duplicate_record, rng=c.rng,
        defects=c.identity_defects(ident, person, {"name_typo": "PATIENT_NAME"}),
    )  # fmt: skip
    for k, (s, _, _) in enumerate(rows):
        c.out.link("operation->stay", SURGERY_OPERATIONS, str(keys[k]), HIS_ADMISSIONS, s.serial)


# -------------------------------------------------------------------------------------------- insurance
def _insurance(c: _Chunk, stays: list[Stay]) -> None:
    """Settlement lists (医保结算清单), exported monthly as XLSX; insured stays only (A46C 1-3)."""
    rates = c.config.defects
    ident = c.identity()
    insured = [s for s in stays if s.payment in ("1", "2", "3")]
    by_month: dict[str, list[Stay]] = {}
    for s in insured:
        by_month.setdefault(_ymd(s.discharge)[:4] + "-" + _ymd(s.discharge)[4:6], []).append(s)
    dx = c.dx.all
    for month in sorted(by_month):
        group = by_month[month]
        file = INSURANCE_SETTLEMENTS.format(month=month)
        person = np.array([s.person for s in group], dtype=np.int64)
        mismatch = c.rng.random(len(group)) < rates.settlement_cost_mismatch
        c.out.eligible["settlement_cost_mismatch"] += len(group)
        total = np.array([s.total_cost for s in group])
        shown = np.where(mismatch, np.round(total + c.rng.choice([-1, 1], len(group)) * c.rng.uniform(10, 500, len(group)), 2), total)
        fund = np.round(shown * np.where(np.array([s.payment for s in group]) == "1", 0.75, 0.6), 2)
        keys = np.array([f"JS{month.replace('-', '')}{c.index:04d}{k:05d}" for k in range(len(group))], dtype=str)
        c.out.emit(
            file,
            {
                "清单流水号": keys, "参保人员编号": ident.resident_id[person], "姓名": ident.name[person],
                "性别": sex_text(c.pop.sex[person]),
                "出生日期": pa.array(ident.birth_day[person].astype("datetime64[D]").astype("datetime64[s]").astype(np.int64), pa.timestamp("s")),
                "险种类型": ["职工基本医疗保险" if s.payment == "1" else "城乡居民基本医疗保险" for s in group],
                "住院号": c.inpatient_no[person], "入院日期": pa.array([s.admit for s in group], pa.timestamp("s")),
                "出院日期": pa.array([s.discharge for s in group], pa.timestamp("s")),
                "主要诊断编码": [dx[s.diagnosis].insurance for s in group], "主要诊断名称": [dx[s.diagnosis].name for s in group],
                "主要手术编码": [s.operations[0].procedure.insurance if s.operations else "" for s in group],
                "医疗总费用": shown, "统筹基金支付": fund, "个人自付": np.round(shown - fund, 2),
                "结算日期": pa.array([s.discharge + 3600 for s in group], pa.timestamp("s")),
            },
            c.persons(person), keys,
            defects=[
                *c.identity_defects(ident, person, {"name_typo": "姓名", "resident_id_typo": "参保人员编号"}),
                ("settlement_cost_mismatch", "医疗总费用", np.nonzero(mismatch)[0], "settlement total differs from the bill total"),
            ],
        )  # fmt: skip
        for k, s in enumerate(group):
            c.out.link("settlement->stay", file, str(keys[k]), HIS_ADMISSIONS, s.serial)


# ---------------------------------------------------------------------------------------- truth: visits
def _truth_visits(c: _Chunk, visits: Visits, stays: list[Stay]) -> None:
    """The true visits and stays, with what each KPI needs (never read by the pipeline)."""
    kpi = c.out.kpi
    done = visits.status == STATUS_DONE
    kpi["outpatient_visits"] += int((done & (visits.kind == VISIT_OUTPATIENT)).sum())
    kpi["emergency_visits"] += int((done & (visits.kind == VISIT_EMERGENCY)).sum())
    kpi["checkup_visits"] += int((done & (visits.kind == VISIT_CHECKUP)).sum())
    kpi["registrations"] += len(visits.person)
    kpi["discharges"] += len(stays)
    kpi["bed_days"] += sum(s.bed_days for s in stays)
    kpi["inpatient_cost_cents"] += sum(round(s.total_cost * 100) for s in stays)
    kpi["operated_discharges"] += sum(1 for s in stays if s.operations)
    kpi["operations"] += sum(len(s.operations) for s in stays)
    kpi["minimally_invasive_operations"] += sum(op.procedure.minimally_invasive for s in stays for op in s.operations)
    kpi["grade4_operations"] += sum(op.procedure.grade == 4 for s in stays for op in s.operations)
    kpi["elective_operations"] += sum(op.elective for s in stays for op in s.operations)
    kpi["day_surgery_operations"] += sum(len(s.operations) for s in stays if s.day_surgery)
    kpi["recalled_discharges"] += sum(1 for s in stays if s.recalled_at is not None)
    kpi["operation_sessions"] += sum(len({op.session for op in s.operations}) for s in stays)

    dx = c.dx.all
    n_v = len(visits.person)
    status_name = np.array(["done", "refunded", "cancelled"])
    c.out.visits = pa.table({
        "visit_serial": pa.array(np.concatenate([visits.serial, np.array([s.serial for s in stays], dtype=str)])),
        "person_id": pa.array(np.concatenate([c.persons(visits.person), c.persons(np.array([s.person for s in stays], dtype=np.int64))])),
        "kind": pa.array([KIND_NAME[int(k)] for k in visits.kind] + ["inpatient"] * len(stays)),
        "status": pa.array(np.concatenate([status_name[visits.status], np.full(len(stays), "done")])),
        "start": pa.array(np.concatenate([visits.start, np.array([s.admit for s in stays], dtype=np.int64)]), pa.timestamp("s")),
        "end": pa.array([None] * n_v + [s.discharge for s in stays], pa.timestamp("s")),
        "department": pa.array([c.departments[int(d)].key for d in visits.department] + [c.departments[s.department].key for s in stays]),
        "diagnosis_icd10": pa.array([dx[int(d)].icd10 for d in visits.diagnosis] + [dx[s.diagnosis].icd10 for s in stays]),
        "in_his_export": pa.array([s not in c.lost and s not in c.lagged for s in visits.serial.tolist()] + [s.serial not in c.lost and s.serial not in c.lagged for s in stays]),
        "bed_days": pa.array([None] * n_v + [s.bed_days for s in stays], pa.int64()),
        "total_cost": pa.array([None] * n_v + [s.total_cost for s in stays], pa.float64()),
        "operations": pa.array([0] * n_v + [len(s.operations) for s in stays], pa.int64()),
        "day_surgery": pa.array([False] * n_v + [s.day_surgery for s in stays]),
        "recalled_discharge": pa.array([False] * n_v + [s.recalled_at is not None for s in stays]),
        "transferred": pa.array([False] * n_v + [s.transfer_at is not None for s in stays]),
        "discharge_mode": pa.array([None] * n_v + [s.discharge_mode for s in stays], pa.string()),
    })  # fmt: skip
