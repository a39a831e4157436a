"""Insurance settlement lists (医保结算清单), exported as one XLSX workbook per month."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ._chunk import HIS_ADMISSIONS, INSURANCE_SETTLEMENTS, ChunkState, ymd
from ._encounters import (
    Stay,
)
from ._formats import sex_text


def write_insurance(c: ChunkState, stays: list[Stay]) -> None:
    """Settlement lists (医保结算清单), exported monthly as XLSX; insured stays only (A46C 1-3)."""
    rates = c.config.defects
    ident = c.identity()
    insured = [s for s in stays if s.payment in ("1", "2", "3")]
    by_month: dict[str, list[Stay]] = {}
    for s in insured:
        by_month.setdefault(ymd(s.discharge)[:4] + "-" + ymd(s.discharge)[4:6], []).append(s)
    dx = c.dx.all
    for month in sorted(by_month):
        group = by_month[month]
        file = INSURANCE_SETTLEMENTS.format(month=month)
        person = np.array([s.person for s in group], dtype=np.int64)
        mismatch = c.rng.random(len(group)) < rates.settlement_cost_mismatch
        c.out.eligible["settlement_cost_mismatch"] += len(group)
        total = np.array([s.total_cost for s in group])
        shown = np.where(
            mismatch,
            np.round(total + c.rng.choice([-1, 1], len(group)) * c.rng.uniform(10, 500, len(group)), 2),
            total,
        )
        fund = np.round(shown * np.where(np.array([s.payment for s in group]) == "1", 0.75, 0.6), 2)
        keys = np.array(
            [f"JS{month.replace('-', '')}{c.index:04d}{k:05d}" for k in range(len(group))], dtype=str
        )
        c.out.emit(
            file,
            {
                "清单流水号": keys,
                "参保人员编号": ident.resident_id[person],
                "姓名": ident.name[person],
                "性别": sex_text(c.pop.sex[person]),
                "出生日期": pa.array(
                    ident.birth_day[person].astype("datetime64[D]").astype("datetime64[s]").astype(np.int64),
                    pa.timestamp("s"),
                ),
                "险种类型": [
                    "职工基本医疗保险" if s.payment == "1" else "城乡居民基本医疗保险" for s in group
                ],
                "住院号": c.inpatient_no[person],
                "入院日期": pa.array([s.admit for s in group], pa.timestamp("s")),
                "出院日期": pa.array([s.discharge for s in group], pa.timestamp("s")),
                "主要诊断编码": [dx[s.diagnosis].insurance for s in group],
                "主要诊断名称": [dx[s.diagnosis].name for s in group],
                "主要手术编码": [s.operations[0].procedure.insurance if s.operations else "" for s in group],
                "医疗总费用": shown,
                "统筹基金支付": fund,
                "个人自付": np.round(shown - fund, 2),
                "结算日期": pa.array([s.discharge + 3600 for s in group], pa.timestamp("s")),
            },
            c.persons(person),
            keys,
            at=np.array([s.discharge + 3600 for s in group], dtype=np.int64),
            later=None
            if ident.later is None
            else {
                "参保人员编号": ident.later.resident_id[person],
                "姓名": ident.later.name[person],
                "出生日期": pa.array(
                    ident.later.birth_day[person]
                    .astype("datetime64[D]")
                    .astype("datetime64[s]")
                    .astype(np.int64),
                    pa.timestamp("s"),
                ),
            },
            patient_key="参保人员编号",
            defects=[
                *c.identity_defects(ident, person, {"name_typo": "姓名", "resident_id_typo": "参保人员编号"}),
                (
                    "settlement_cost_mismatch",
                    "医疗总费用",
                    np.nonzero(mismatch)[0],
                    "settlement total differs from the bill total",
                ),
            ],
        )
        for k, s in enumerate(group):
            c.out.link("settlement->stay", file, str(keys[k]), HIS_ADMISSIONS, s.serial)
