"""LIS exports: requests (申请单), specimens (条码) and results, in the LIS vendor's English column names and
its unpadded .NET date format; the branch lab reports in conventional units with its own reference ranges.
"""

from __future__ import annotations

import numpy as np

from ._chunk import LIS_REQUESTS, LIS_RESULTS, LIS_SPECIMENS, ChunkState
from ._formats import age_years, sex_text, ts_format, ts_unpadded
from ._identity import patient_numbers
from ._lab import LabWork
from ._numbering import zero_padded


def write_lis(c: ChunkState, lab: LabWork) -> None:
    rates = c.config.defects
    rng = c.rng
    ident = c.identity()
    tests = c.cat.lab_tests
    n_req = len(lab.req_person)
    lis_no = patient_numbers("lis", c.global_index)
    req_no = np.char.add(np.char.add("LR", f"{c.index:04d}"), zero_padded(np.arange(1, n_req + 1), 7))
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
    orphan_detail = [
        "sync lag: visit after the HIS export cut-off"
        if shown_visit[r] in c.lagged
        else "visit lost from the HIS export"
        for r in orphan
    ]
    persons = c.persons(lab.req_person)
    c.out.emit(
        LIS_REQUESTS,
        {
            "RequestNo": req_no,
            "PatientNo": lis_no[lab.req_person],
            "PatientName": ident.name[lab.req_person],
            "Sex": sex_text(c.pop.sex[lab.req_person]),
            "Age": np.char.add(age_years(ident.birth_day[lab.req_person], lab.req_time).astype(str), "岁"),
            "PatientType": lab.req_kind,
            "VisitSerial": shown_visit,
            "InpatientNo": np.where(inpatient, c.inpatient_no[lab.req_person], ""),
            "DeptName": c.dept_name[lab.req_department],
            "ClinicalDiagnosis": dx_name[lab.req_diagnosis],
            "OrderTime": ts_unpadded(lab.req_time),
            "Doctor": rng.choice(c.doctors, n_req),
        },
        persons,
        req_no,
        at=lab.req_time,
        later=None
        if ident.later is None
        else {
            "PatientName": ident.later.name[lab.req_person],
            "Age": np.char.add(
                age_years(ident.later.birth_day[lab.req_person], lab.req_time).astype(str), "岁"
            ),
        },
        patient_key="PatientNo",
        defects=[
            *c.identity_defects(
                ident, lab.req_person, {"name_typo": "PatientName", "birth_date_typo": "Age"}
            ),
            (
                "lab_wrong_visit",
                "VisitSerial",
                np.array(wrong, dtype=np.int64),
                "request carries another visit's number",
            ),
            (
                "orphan_record",
                "VisitSerial",
                np.array(orphan, dtype=np.int64),
                np.array(orphan_detail, dtype=str),
            ),
        ],
    )
    for r in range(n_req):
        c.out.link(
            "lab_request->visit",
            LIS_REQUESTS,
            str(req_no[r]),
            c.visit_file[str(lab.req_visit[r])],
            str(lab.req_visit[r]),
        )

    n_t = len(lab.tube_request)
    barcode = np.char.add(f"{c.index:04d}", zero_padded(np.arange(1, n_t + 1), 8))
    c.out.emit(
        LIS_SPECIMENS,
        {
            "BarCode": barcode,
            "RequestNo": req_no[lab.tube_request],
            "SpecimenType": lab.tube_panel_kind,
            "TubeType": lab.tube_tube,
            "CollectTime": ts_unpadded(lab.tube_collect),
            "ReceiveTime": ts_unpadded(lab.tube_receive),
        },
        persons[lab.tube_request],
        barcode,
        at=lab.tube_collect,
    )

    # Results: the branch lab reports glucose, lipids, creatinine and uric acid in conventional units and
    # HbA1c in IFCC mmol/mol, with its own reference ranges (domain.md §1.5-6).
    item_req = lab.tube_request[lab.item_tube]
    branch = lab.req_branch[item_req]
    has_alt = np.array([t.alt_unit is not None for t in tests])[lab.item_test]
    alt = branch & has_alt
    value = lab.item_value.copy()
    factor = np.array([t.alt_factor or 1.0 for t in tests])[lab.item_test]
    is_ifcc = np.array([t.alt_formula == "hba1c_ifcc" for t in tests])[lab.item_test]
    alt_value = np.where(is_ifcc, np.round((value - 2.15) * 10.929), np.round(value * factor, 2))
    shown = np.where(alt, alt_value, value)
    unit = np.where(
        alt,
        np.array([t.alt_unit or "" for t in tests])[lab.item_test],
        np.array([t.unit for t in tests])[lab.item_test],
    )

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
    report = np.where(
        other_format, ts_format(lab.item_report, "%Y-%m-%d %H:%M:%S").to_numpy(zero_copy_only=False), report
    )
    c.out.eligible["mixed_unit"] += int(has_alt.sum())
    result_key = np.char.add(
        np.char.add(barcode[lab.item_tube], "-"), np.array([t.code for t in tests])[lab.item_test]
    )
    c.out.emit(
        LIS_RESULTS,
        {
            "BarCode": barcode[lab.item_tube],
            "RequestNo": req_no[item_req],
            "ItemCode": np.array([t.code for t in tests])[lab.item_test],
            "ItemName": np.array([t.name for t in tests])[lab.item_test],
            "Result": np.char.mod("%g", shown),
            "Unit": unit,
            "RefRange": ref_text.astype(str),
            "Flag": flag,
            "ReportTime": report,
            "Reviewer": rng.choice(c.doctors, n_i),
            "ReviewTime": ts_unpadded(lab.item_review),
            "LabSite": np.where(branch, "分院", "总院"),
        },
        persons[item_req],
        result_key,
        duplicate_rate=rates.duplicate_record,
        rng=rng,
        at=lab.item_report,
        defects=[
            ("mixed_unit", "Unit", np.nonzero(alt)[0], "reported in the branch lab's conventional unit"),
            (
                "mixed_date_format",
                "ReportTime",
                np.nonzero(other_format)[0],
                "time written as yyyy-MM-dd HH:mm:ss",
            ),
        ],
    )
