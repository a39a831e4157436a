"""Anaesthesia/surgery system (手麻) export: one row per procedure per theatre session."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ._chunk import HIS_ADMISSIONS, SURGERY_OPERATIONS, ChunkState
from ._encounters import (
    Stay,
)
from ._formats import sex_text, ts_format
from ._identity import patient_numbers


def write_surgery(c: ChunkState, stays: list[Stay]) -> None:
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
            "OPER_NO": keys,
            "SS_PATIENT_ID": ss_no[person],
            "INP_NO": c.inpatient_no[person],
            "VISIT_ID": pa.array([s.times for s, _, _ in rows], pa.int64()),
            "PATIENT_NAME": ident.name[person],
            "SEX": sex_text(c.pop.sex[person]),
            "DEPT_CODE": c.dept_code[[c.dx.department_index[op.procedure.department] for _, op, _ in rows]],
            "THEATRE": [op.theatre for _, op, _ in rows],
            "SESSION_NO": pa.array([op.session for _, op, _ in rows], pa.int64()),
            "SEQ_IN_SESSION": pa.array(seq_in_session, pa.int64()),
            "OPER_CODE": [op.procedure.clinical for _, op, _ in rows],
            "OPER_NAME": [op.procedure.name for _, op, _ in rows],
            "OPER_GRADE": pa.array([op.procedure.grade for _, op, _ in rows], pa.int64()),
            "MINIMALLY_INVASIVE": ["Y" if op.procedure.minimally_invasive else "N" for _, op, _ in rows],
            "INTERVENTIONAL": ["Y" if op.procedure.interventional else "N" for _, op, _ in rows],
            "DAY_SURGERY": ["Y" if s.day_surgery else "N" for s, _, _ in rows],
            "URGENCY": ["择期" if op.elective else "急诊" for _, op, _ in rows],
            "ANES_METHOD": ["局部麻醉" if op.procedure.grade <= 2 else "全身麻醉" for _, op, _ in rows],
            "ANES_START": fmt([op.start - 1200 for _, op, _ in rows]),
            "OPER_START": fmt([op.start for _, op, _ in rows]),
            "OPER_END": fmt([op.end for _, op, _ in rows]),
            "ANES_END": fmt([op.end + 600 for _, op, _ in rows]),
            "OUT_ROOM_TIME": fmt([op.end + 1800 for _, op, _ in rows]),
            "BLOOD_LOSS_ML": pa.array([op.blood_loss_ml for _, op, _ in rows], pa.int64()),
            "TRANSFUSION_ML": pa.array([op.transfusion_ml for _, op, _ in rows], pa.int64()),
            "DESTINATION": [
                "ICU" if op.procedure.grade == 4 and op.blood_loss_ml > 300 else "病房" for _, op, _ in rows
            ],
            "SURGEON": [op.surgeon for _, op, _ in rows],
        },
        c.persons(person),
        keys,
        duplicate_rate=c.config.defects.duplicate_record,
        rng=c.rng,
        at=np.array([op.end + 1800 for _, op, _ in rows], dtype=np.int64),
        later=None if ident.later is None else {"PATIENT_NAME": ident.later.name[person]},
        patient_key="SS_PATIENT_ID",
        defects=c.identity_defects(ident, person, {"name_typo": "PATIENT_NAME"}),
    )
    for k, (s, _, _) in enumerate(rows):
        c.out.link("operation->stay", SURGERY_OPERATIONS, str(keys[k]), HIS_ADMISSIONS, s.serial)
