"""HIS exports: patient master, registrations, admissions, transfers, orders, prescriptions and bills.

HIS writes dates as yyyyMMdd (admission times are lost), missing values as '-', and pinyin-initial column
names (BRID 病人ID, XM 姓名, GHXH 挂号序号, ...). Its export is cut off early (batch sync) and loses rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from ._chunk import (
    HIS_ADMISSIONS,
    HIS_BILLS,
    HIS_ORDERS,
    HIS_PATIENTS,
    HIS_PRESCRIPTIONS,
    HIS_REGISTRATIONS,
    HIS_TRANSFERS,
    KIND_TEXT,
    ChunkState,
    HisNumber,
    ymd,
)
from ._conflicts import newborn_mothers
from ._documents import ExamEvent
from ._encounters import (
    DAY,
    STATUS_CANCELLED,
    STATUS_DONE,
    STATUS_REFUND,
    VISIT_CHECKUP,
    VISIT_EMERGENCY,
    VISIT_OUTPATIENT,
    Stay,
    Visits,
)
from ._formats import day_format, sex_code, ts_format
from ._identity import SystemIdentity, patient_numbers
from ._lab import LabWork
from ._numbering import zero_padded
from ._population import EPOCH


def write_his(c: ChunkState, visits: Visits, stays: list[Stay], lab: LabWork, exams: list[ExamEvent]) -> None:
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
    switch_at = (c.config.start - EPOCH).days * DAY + rng.integers(
        0, (c.config.end - c.config.start).days, len(c.pop)
    ) * DAY

    # Patient master: one row per HIS patient number.
    rows = np.concatenate([in_his, np.nonzero(duplicated)[0]])
    is_dup = np.concatenate([np.zeros(len(in_his), bool), np.ones(int(duplicated.sum()), bool)])
    # capped at the full export's cut-off whatever this export's is, so a registration keeps its date
    first_seen = np.full(len(c.pop), c.full_cutoff, dtype=np.int64)
    np.minimum.at(first_seen, visits.person, visits.start)
    if len(stay_person):
        np.minimum.at(first_seen, stay_person, np.array([s.admit for s in stays]))
    created = np.where(is_dup, np.maximum(switch_at[rows], first_seen[rows]), first_seen[rows])
    phone = np.where(ident.phone[rows] == "", "-", ident.phone[rows])  # HIS writes missing values as "-"
    keys = np.where(is_dup, dup_brid[rows], brid[rows])
    later = ident.later
    # A few newborns registered under their mother's resident ID (a key conflict, off by default).
    mothers = newborn_mothers(c, rows, is_dup, created)
    resident_id = ident.resident_id[rows].copy()
    later_id = None if later is None else later.resident_id[rows].copy()
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
                HIS_PATIENTS,
                str(keys[r]),
                ((HIS_PATIENTS, str(keys[m])),),
            )
        )
    identity = c.identity_defects(
        ident,
        rows,
        {
            "name_typo": "XM",
            "birth_date_typo": "CSRQ",
            "resident_id_typo": "SFZH",
            "phone_missing": "LXDH",
            "address_variant": "JTDZ",
        },
    )
    if mothers:
        # the newborn's row shows the mother's ID, so its own ID's typo is not in the file
        newborns = np.array(sorted(mothers), dtype=np.int64)
        identity = [
            (kind, fld, np.setdiff1d(at_rows, newborns) if kind == "resident_id_typo" else at_rows, detail)
            for kind, fld, at_rows, detail in identity
        ]
        identity.append(("newborn_parent_id", "SFZH", newborns, "newborn registered under the mother's ID"))
    c.out.emit(
        HIS_PATIENTS,
        {
            "BRID": keys,
            "XM": ident.name[rows],
            "XB": sex_code(c.pop.sex[rows]),
            "CSRQ": day_format(ident.birth_day[rows], "%Y%m%d"),
            "SFZH": resident_id,
            "LXDH": phone,
            "JTDZ": ident.address[rows],
            "ZYH": c.inpatient_no[rows],
            "JDRQ": ts_format(created, "%Y%m%d"),
        },
        c.persons(rows),
        keys,
        at=created,
        later=None
        if later is None
        else {
            "XM": later.name[rows],
            "CSRQ": day_format(later.birth_day[rows], "%Y%m%d"),
            "SFZH": later_id,
        },
        patient_key="BRID",
        defects=[
            *identity,
            (
                "duplicate_patient_id",
                "BRID",
                np.nonzero(is_dup)[0],
                "second HIS patient number for the same person",
            ),
        ],
    )

    def his_number(person: NDArray[np.int64], at: NDArray[np.int64]) -> NDArray[np.str_]:
        return np.where(duplicated[person] & (at >= switch_at[person]), dup_brid[person], brid[person])

    # Outpatient, emergency and check-up registrations.
    lost = rng.random(n_v) < rates.orphan_record
    lagged = visits.start >= c.cutoff
    c.out.eligible["lost_parent"] += n_v + len(stays)
    c.lost.update(visits.serial[lost & ~lagged].tolist())
    c.lagged.update(visits.serial[lagged].tolist())
    withhold = lost | lagged
    full_withhold = lost | (visits.start >= c.full_cutoff)
    stripped = rng.random(n_v) < rates.department_prefix_stripped
    c.out.eligible["department_prefix_stripped"] += int((~withhold).sum())
    dept_code = np.where(
        stripped,
        np.array([d.stripped_code for d in c.departments])[visits.department],
        c.dept_code[visits.department],
    )
    refund_time = visits.start + rng.integers(10, 240, n_v) * 60
    dx_clinical = np.array([d.clinical for d in c.dx.all])
    dx_name = np.array([d.name for d in c.dx.all])
    status = visits.status
    c.out.eligible["registration_refund"] += n_v
    c.out.eligible["registration_cancelled"] += n_v
    kinds = np.array([KIND_TEXT[int(k)] for k in visits.kind]) if n_v else np.array([], dtype=str)
    category = np.select(
        [visits.kind == VISIT_EMERGENCY, visits.kind == VISIT_CHECKUP, visits.fee > 25],
        ["急诊", "体检", "专家"],
        "普通",
    )
    reg_person = c.persons(visits.person)
    c.out.emit(
        HIS_REGISTRATIONS,
        {
            "GHXH": visits.serial,
            "BRID": his_number(visits.person, visits.start),
            "XM": ident.name[visits.person],
            "GHLB": category,
            "JZLX": kinds,
            "KSDM": dept_code,
            "KSMC": c.dept_name[visits.department],
            "YSXM": visits.doctor,
            "GHRQ": ts_format(visits.start, "%Y%m%d"),
            "GHSJ": ts_format(visits.start, "%H%M%S"),
            "GHF": visits.fee,
            "ZT": status.astype(str),
            "THSJ": pa.array(
                np.where(
                    status == STATUS_REFUND,
                    ts_format(refund_time, "%Y%m%d%H%M%S").to_numpy(zero_copy_only=False),
                    "",
                )
            ),
            "ZDDM": np.where(status == STATUS_DONE, dx_clinical[visits.diagnosis], ""),
            "ZDMC": np.where(status == STATUS_DONE, dx_name[visits.diagnosis], ""),
        },
        reg_person,
        visits.serial,
        duplicate_rate=rates.duplicate_record,
        rng=rng,
        withhold=withhold,
        draw_withhold=full_withhold,
        at=visits.start,
        later=None if later is None else {"XM": later.name[visits.person]},
        patient_key="BRID",
        defects=[
            (
                "department_prefix_stripped",
                "KSDM",
                np.nonzero(stripped)[0],
                "department code without its letter prefix",
            ),
            (
                "registration_refund",
                "ZT",
                np.nonzero(status == STATUS_REFUND)[0],
                "registration refunded (退号)",
            ),
            (
                "registration_cancelled",
                "ZT",
                np.nonzero(status == STATUS_CANCELLED)[0],
                "registration cancelled",
            ),
            (
                "lost_parent",
                "GHXH",
                np.nonzero(lost & ~lagged)[0],
                "row lost by the HIS export; its children are orphans",
            ),
        ],
    )
    for serial in visits.serial:
        c.visit_file[str(serial)] = HIS_REGISTRATIONS

    # Outpatient prescriptions and bills.
    _prescriptions_and_outpatient_bills(c, visits, lab, exams, his_number)
    _inpatient(c, stays, his_number, ident)


def _prescriptions_and_outpatient_bills(
    c: ChunkState, visits: Visits, lab: LabWork, exams: list[ExamEvent], his_number: HisNumber
) -> None:
    rng = c.rng
    cond_keys = [cond.key for cond in c.cat.conditions]
    drugs_for: list[list[int]] = [
        [i for i, d in enumerate(c.cat.drugs) if key in d.conditions] for key in cond_keys
    ]
    paracetamol = next(i for i, d in enumerate(c.cat.drugs) if not d.conditions)
    rx_visit: list[int] = []
    rx_drug: list[int] = []
    rx_qty: list[int] = []
    for j in range(len(visits.person)):
        if visits.status[j] != STATUS_DONE:
            continue
        d = int(visits.diagnosis[j])
        options = (
            drugs_for[d]
            if d < len(cond_keys)
            else ([paracetamol] if visits.kind[j] == VISIT_EMERGENCY else [])
        )
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
    rx_no = (
        np.char.add(np.char.add("CF", visits.serial[v]), zero_padded(np.arange(len(v)), 3))
        if len(v)
        else np.array([], dtype=str)
    )
    rx_time = visits.start[v] + 1200
    serial = visits.serial[v]
    withhold = (
        np.array([s in c.lost or s in c.lagged for s in serial], dtype=bool) if len(v) else np.zeros(0, bool)
    )
    lagged_rx = np.array([s in c.lagged for s in serial], dtype=bool) if len(v) else np.zeros(0, bool)
    person = c.persons(visits.person[v])
    orphan_rows = np.nonzero(withhold & ~lagged_rx)[0]
    brid = his_number(visits.person[v], visits.start[v])
    c.out.emit(
        HIS_PRESCRIPTIONS,
        {
            "CFH": rx_no,
            "GHXH": serial,
            "BRID": brid,
            "YPBM": np.array([d.code for d in c.cat.drugs])[drug] if len(drug) else np.array([], str),
            "YPMC": np.array([d.name for d in c.cat.drugs])[drug] if len(drug) else np.array([], str),
            "GG": np.array([d.spec for d in c.cat.drugs])[drug] if len(drug) else np.array([], str),
            "SL": qty,
            "DJ": price,
            "JE": amount,
            "KFSJ": ts_format(rx_time, "%Y%m%d%H%M%S"),
        },
        person,
        rx_no,
        withhold=lagged_rx,
        at=rx_time,
        defects=[
            ("orphan_record", "GHXH", orphan_rows, "registration lost from his/outpatient_registrations.csv")
        ],
    )
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
        fee_item = "急诊挂号费" if visits.kind[j] == VISIT_EMERGENCY else "挂号费"
        b_kind.append(fee_item)
        b_amount.append(float(visits.fee[j]))
        b_time.append(int(visits.start[j]))
        b_visit_kind.append(int(visits.kind[j]))
        if visits.status[j] == STATUS_REFUND:
            b_serial.append(str(visits.serial[j]))
            b_person.append(int(visits.person[j]))
            b_kind.append(fee_item)
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
        vj = visit_index.get(str(lab.req_visit[r]))
        if vj is not None:
            b_serial.append(str(lab.req_visit[r]))
            b_person.append(int(lab.req_person[r]))
            b_kind.append("检验费")
            b_amount.append(float(lab_fee[r]))
            b_time.append(int(lab.req_time[r]))
            b_visit_kind.append(int(visits.kind[vj]))
    exam_fee = {"CT": 320.0, "OP": 80.0, "OPT": 150.0, "US": 120.0}
    for e in exams:
        vj = visit_index.get(e.visit)
        if vj is not None:
            b_serial.append(e.visit)
            b_person.append(e.person)
            b_kind.append("检查费")
            b_amount.append(exam_fee[c.cat.exams[e.exam].modality])
            b_time.append(e.requested)
            b_visit_kind.append(int(visits.kind[vj]))
    bp = np.array(b_person, dtype=np.int64)
    bt = np.array(b_time, dtype=np.int64)
    bserial = np.array(b_serial, dtype=str)
    bamount = np.array(b_amount, dtype=np.float64)
    bvk = np.array(b_visit_kind, dtype=np.int64)
    # KPI: outpatient revenue counts outpatient visits only (emergency and check-ups excluded), in cents, of
    # visits in the reporting period (which closes at the HIS export's sync cut-off).
    started = dict(zip(visits.serial.tolist(), visits.start.tolist(), strict=True))
    in_period = np.array([started[s] < c.cutoff for s in b_serial], dtype=bool)
    counted = (bvk == VISIT_OUTPATIENT) & in_period if len(b_serial) else np.zeros(0, bool)
    c.out.kpi["outpatient_revenue_cents"] += int(np.round(bamount[counted] * 100).sum())
    _emit_bills(c, "1", bserial, bp, bt, b_kind, bamount, his_number)


def _emit_bills(
    c: ChunkState,
    kind: str,
    serial: NDArray[np.str_],
    person: NDArray[np.int64],
    at: NDArray[np.int64],
    item: list[str],
    amount: NDArray[np.float64],
    his_number: HisNumber,
) -> None:
    lagged = np.array([s in c.lagged for s in serial], dtype=bool) if len(serial) else np.zeros(0, bool)
    lost = np.array([s in c.lost for s in serial], dtype=bool) if len(serial) else np.zeros(0, bool)
    prefix = "SF" if kind == "1" else "ZF"
    key = (
        np.char.add(np.char.add(prefix, f"{c.index:04d}"), zero_padded(np.arange(len(serial)), 7))
        if len(serial)
        else np.array([], str)
    )
    key = np.char.add(key, "M" if kind == "1" else "Z") if len(serial) else key
    parent = HIS_REGISTRATIONS if kind == "1" else HIS_ADMISSIONS
    c.out.emit(
        HIS_BILLS,
        {
            "SFXH": key,
            "JZLSH": serial,
            "BRID": his_number(person, at),
            "MZZY": np.full(len(serial), kind),
            "FYLB": np.array(item, dtype=str),
            "JE": amount,
            "SFSJ": ts_format(at, "%Y%m%d%H%M%S"),
        },
        c.persons(person),
        key,
        withhold=lagged,
        at=at,
        defects=[("orphan_record", "JZLSH", np.nonzero(lost & ~lagged)[0], f"visit lost from {parent}")],
    )


def _inpatient(c: ChunkState, stays: list[Stay], his_number: HisNumber, ident: SystemIdentity) -> None:
    rates = c.config.defects
    rng = c.rng
    n = len(stays)
    c.out.eligible["recalled_discharge"] += n
    rows: list[dict[str, object]] = []
    row_person: list[int] = []
    row_key: list[str] = []
    row_at: list[int] = []
    row_name: list[str] = []  # the name the later export writes
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
            segments = [
                (s.serial, s.admit, s.recalled_at, "0"),
                (s.serial + "R", s.recalled_at, s.discharge, "1"),
            ]
        for serial, a, d, recalled in segments:
            if recalled == "1":
                recalled_rows.append(len(rows))
            # In an as-of export a stay not yet discharged is still open: no discharge, days or cost.
            is_open = c.as_of is not None and d >= c.as_of
            rows.append(
                {
                    "ZYH": str(c.inpatient_no[s.person]),
                    "ZYCS": s.times,
                    "JZLSH": serial,
                    "BRID": "",
                    "XM": str(ident.name[s.person]),
                    "RYKS": str(dept),
                    "CYKS": "" if is_open else str(out_dept),
                    "RYRQ": ymd(a),
                    "CYRQ": "" if is_open else ymd(d),
                    "ZT": "在院" if is_open else "出院",
                    "ZHBZ": recalled,
                    "CYFS": "" if is_open else s.discharge_mode,
                    "ZYTS": None if is_open else max(1, d // DAY - a // DAY),
                    "ZFY": None
                    if is_open
                    else s.total_cost
                    if recalled == "1" or s.recalled_at is None
                    else 0.0,
                }
            )
            row_name.append(str(ident.name[s.person] if ident.later is None else ident.later.name[s.person]))
            row_person.append(s.person)
            row_key.append(serial)
            row_at.append(a)
            # a lost admission loses all its rows, a recalled stay's continuation row included
            withhold.append(is_lagged or bool(lost[k]))
    person = np.array(row_person, dtype=np.int64)
    names = (
        "ZYH",
        "ZYCS",
        "JZLSH",
        "BRID",
        "XM",
        "RYKS",
        "CYKS",
        "RYRQ",
        "CYRQ",
        "ZT",
        "ZHBZ",
        "CYFS",
        "ZYTS",
        "ZFY",
    )
    columns: dict[str, Any] = {k: [r[k] for r in rows] for k in names}
    columns["BRID"] = his_number(person, np.array(row_at, dtype=np.int64))
    columns["ZYCS"] = pa.array(columns["ZYCS"], pa.int64())
    columns["ZYTS"] = pa.array(columns["ZYTS"], pa.int64())
    columns["ZFY"] = pa.array(columns["ZFY"], pa.float64())
    keys = np.array(row_key, dtype=str)
    c.out.emit(
        HIS_ADMISSIONS,
        columns,
        c.persons(person),
        keys,
        withhold=np.array(withhold, dtype=bool),
        at=np.array(row_at, dtype=np.int64),
        later=None if ident.later is None else {"XM": np.array(row_name, dtype=str)},
        patient_key="ZYH",
        defects=[
            (
                "recalled_discharge",
                "ZHBZ",
                np.array(recalled_rows, dtype=np.int64),
                "discharge recalled (出院召回): HIS added an admission, a discharge and bed-days",
            ),
            (
                "lost_parent",
                "JZLSH",
                np.array(lost_rows, dtype=np.int64),
                "row lost by the HIS export; its children are orphans",
            ),
        ],
    )

    # Transfers between departments (转科).
    t_rows = [s for s in stays if s.transfer_at is not None]
    tp = np.array([s.person for s in t_rows], dtype=np.int64)
    t_keys = np.array([f"{s.serial}T1" for s in t_rows], dtype=str)
    t_at = np.array([s.transfer_at for s in t_rows], dtype=np.int64)
    c.out.emit(
        HIS_TRANSFERS,
        {
            "ZKXH": t_keys,
            "ZYH": c.inpatient_no[tp],
            "ZYCS": pa.array([s.times for s in t_rows], pa.int64()),
            "ZCKS": c.dept_code[[s.department for s in t_rows]] if t_rows else np.array([], str),
            "ZRKS": c.dept_code[[s.discharge_department for s in t_rows]] if t_rows else np.array([], str),
            "ZKSJ": ts_format(t_at, "%Y%m%d%H%M"),
        },
        c.persons(tp),
        t_keys,
        withhold=np.array([s.admit >= c.cutoff for s in t_rows], dtype=bool),
        at=t_at,
        defects=[
            (
                "orphan_record",
                "ZYH",
                np.array([k for k, s in enumerate(t_rows) if s.serial in c.lost], dtype=np.int64),
                "admission lost from his/inpatient_admissions.csv",
            )
        ],
    )

    # Inpatient orders (医嘱): long-term drug orders, a nursing order and operation orders.
    o_rows: list[tuple[int, str, int, str, str, str, int, int]] = []
    cond_keys = [cond.key for cond in c.cat.conditions]
    for s in stays:
        key = cond_keys[s.diagnosis] if s.diagnosis < len(cond_keys) else None
        o_rows.append((s.person, s.serial, s.times, "1", "护理", "二级护理", s.admit + 1800, s.discharge))
        for drug in c.cat.drugs:
            if key in drug.conditions:
                o_rows.append(
                    (
                        s.person,
                        s.serial,
                        s.times,
                        "1",
                        "药品",
                        f"{drug.name} {drug.spec}|{drug.code}",
                        s.admit + 3600,
                        s.discharge - 3600,
                    )
                )
        for op in s.operations:
            o_rows.append(
                (
                    s.person,
                    s.serial,
                    s.times,
                    "2",
                    "手术",
                    f"拟于{ymd(op.start)}行{op.procedure.name}",
                    op.start - 12 * 3600,
                    op.start,
                )
            )
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
            "YZXH": o_keys,
            "ZYH": c.inpatient_no[op_],
            "ZYCS": pa.array([r[2] for r in o_rows], pa.int64()),
            "YZLB": [r[3] for r in o_rows],
            "YZLX": [r[4] for r in o_rows],
            "YZNR": content,
            "YPBM": code,
            "KSSJ": ts_format(np.array([r[6] for r in o_rows], np.int64), "%Y%m%d%H%M%S"),
            "TZSJ": _until(c, np.array([r[7] for r in o_rows], np.int64)),
        },
        c.persons(op_),
        o_keys,
        withhold=lagged_o,
        at=np.array([r[6] for r in o_rows], np.int64),
        defects=[
            (
                "orphan_record",
                "ZYH",
                np.nonzero(lost_o & ~lagged_o)[0],
                "admission lost from his/inpatient_admissions.csv",
            )
        ],
    )
    for k, s_ in enumerate(o_serial):
        c.out.link("order->stay", HIS_ORDERS, str(o_keys[k]), HIS_ADMISSIONS, s_)

    # Inpatient bill details: one row per cost category (their sum is the front sheet's D01).
    items = [(s, kind, amount) for s in stays for kind, amount in s.costs.items()]
    _emit_bills(
        c,
        "2",
        np.array([s.serial for s, _, _ in items], dtype=str),
        np.array([s.person for s, _, _ in items], dtype=np.int64),
        np.array([s.discharge - 3600 for s, _, _ in items], dtype=np.int64),
        [k for _, k, _ in items],
        np.array([a for _, _, a in items], dtype=np.float64),
        his_number,
    )


def _until(c: ChunkState, stop: NDArray[np.int64]) -> pa.Array:
    """Stop times of orders; an as-of export leaves those still running empty."""
    text = ts_format(stop, "%Y%m%d%H%M%S")
    if c.as_of is None:
        return text
    return pa.array(np.where(stop >= c.as_of, "", text.to_numpy(zero_copy_only=False)))
