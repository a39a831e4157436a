"""RIS and PACS exports: exam requests and reports (GBK CSV with Chinese headers), and DICOM study headers
in the DICOM JSON model (NDJSON), whose PatientID is local to PACS.
"""

from __future__ import annotations

import json

import numpy as np

from ._chunk import PACS_STUDIES, RIS_EXAMS, ChunkState, ymd
from ._documents import ExamEvent
from ._formats import age_years, sex_text, ts_format
from ._identity import patient_numbers
from ._numbering import zero_padded


def write_ris_pacs(c: ChunkState, exams: list[ExamEvent]) -> None:
    ident_ris = c.identity()
    ident_pacs = c.identity(correctable=False)  # the PACS's DICOM headers are not compared
    n = len(exams)
    person = np.array([e.person for e in exams], dtype=np.int64)
    requested = np.array([e.requested for e in exams], dtype=np.int64)
    performed = np.array([e.performed for e in exams], dtype=np.int64)
    reported = np.array([e.reported for e in exams], dtype=np.int64)
    modality = np.array([c.cat.exams[e.exam].modality for e in exams], dtype=str)
    request_no = np.char.add(np.char.add("JC", f"{c.index:04d}"), zero_padded(np.arange(1, n + 1), 6))
    accession = (
        np.char.add(
            np.char.add(
                np.char.add(modality, ts_format(performed, "%y%m%d").to_numpy(zero_copy_only=False)),
                f"{c.index:04d}",
            ),
            zero_padded(np.arange(1, n + 1), 5),
        )
        if n
        else np.array([], str)
    )
    visit = np.array([e.visit for e in exams], dtype=str)
    orphan = [k for k in range(n) if visit[k] in c.lost or visit[k] in c.lagged]
    detail = np.array(
        [
            "sync lag: visit after the HIS export cut-off"
            if visit[k] in c.lagged
            else "visit lost from the HIS export"
            for k in orphan
        ],
        dtype=str,
    )
    c.out.emit(
        RIS_EXAMS,
        {
            "申请单号": request_no,
            "检查号": accession,
            "就诊流水号": visit,
            "患者姓名": ident_ris.name[person],
            "性别": sex_text(c.pop.sex[person]),
            "年龄": np.char.add(age_years(ident_ris.birth_day[person], requested).astype(str), "岁"),
            "检查项目": np.array([c.cat.exams[e.exam].name for e in exams], dtype=str),
            "检查类别": modality,
            "申请科室": c.dept_name[[e.department for e in exams]] if n else np.array([], str),
            "申请时间": ts_format(requested, "%Y-%m-%d %H:%M"),
            "检查时间": ts_format(performed, "%Y-%m-%d %H:%M"),
            "报告时间": ts_format(reported, "%Y-%m-%d %H:%M"),
            "客观所见": np.array([e.findings for e in exams], dtype=str),
            "主观提示": np.array([e.impression for e in exams], dtype=str),
            "报告医生": c.rng.choice(c.doctors, n),
            "审核医生": c.rng.choice(c.doctors, n),
        },
        c.persons(person),
        accession,
        at=reported,
        later=None
        if ident_ris.later is None
        else {
            "患者姓名": ident_ris.later.name[person],
            "年龄": np.char.add(age_years(ident_ris.later.birth_day[person], requested).astype(str), "岁"),
        },
        defects=[
            *c.identity_defects(ident_ris, person, {"name_typo": "患者姓名", "birth_date_typo": "年龄"}),
            ("orphan_record", "就诊流水号", np.array(orphan, dtype=np.int64), detail),
        ],
    )
    pacs_no = patient_numbers("pacs", c.global_index)
    lines = []
    for k, e in enumerate(exams):
        exam = c.cat.exams[e.exam]
        p = e.person
        lines.append(
            json.dumps(
                {
                    "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},
                    "00080020": {"vr": "DA", "Value": [ymd(e.performed)]},
                    "00080030": {
                        "vr": "TM",
                        "Value": [str(np.datetime64(e.performed, "s"))[11:].replace(":", "")],
                    },
                    "00080050": {"vr": "SH", "Value": [str(accession[k])]},
                    "00080060": {"vr": "CS", "Value": [exam.modality]},
                    "00080080": {"vr": "LO", "Value": [c.cat.hospital.name]},
                    "00081030": {"vr": "LO", "Value": [exam.name]},
                    "00100010": {"vr": "PN", "Value": [{"Alphabetic": str(ident_pacs.name[p])}]},
                    "00100020": {"vr": "LO", "Value": [str(pacs_no[p])]},
                    "00100030": {
                        "vr": "DA",
                        "Value": [str(np.datetime64(int(ident_pacs.birth_day[p]), "D")).replace("-", "")],
                    },
                    "00100040": {"vr": "CS", "Value": ["M" if c.pop.sex[p] == "M" else "F"]},
                    "0020000D": {"vr": "UI", "Value": [f"1.2.156.600734.1.{c.index}.{k + 1}"]},
                    "00201208": {"vr": "IS", "Value": [int(c.rng.integers(1, 400))]},
                },
                ensure_ascii=False,
                separators=(",", ":"),
            )
        )
        c.out.link("exam->visit", RIS_EXAMS, str(accession[k]), c.visit_file[e.visit], e.visit)
        c.out.link(
            "study->exam", PACS_STUDIES, f"1.2.156.600734.1.{c.index}.{k + 1}", RIS_EXAMS, str(accession[k])
        )
    study_uid = np.array([f"1.2.156.600734.1.{c.index}.{k + 1}" for k in range(n)], dtype=str)
    c.out.emit(
        PACS_STUDIES,
        {"json": lines},
        c.persons(person),
        study_uid,
        at=reported,
        defects=c.identity_defects(
            ident_pacs, person, {"name_typo": "00100010", "birth_date_typo": "00100030"}
        ),
    )
