"""Imaging exams with their reports, and the EMR's Chinese clinical notes of one chunk.

Notes carry the identifiers a real note does (names, resident IDs, phones, hospital numbers, addresses,
dates, institutions); every one is recorded as a span so later stages can score text de-identification.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ._catalogue import Catalogue
from ._encounters import DAY, STATUS_DONE, VISIT_CHECKUP, VISIT_OUTPATIENT, Diagnoses, Stay, Visits, to_date
from ._population import Population

_LOBES = ("右肺上叶", "右肺中叶", "右肺下叶", "左肺上叶", "左肺下叶")
_DENSITY = ("实性", "磨玻璃", "部分实性")
_HOSPITALS = (
    "复旦大学附属中山医院",
    "上海交通大学医学院附属瑞金医院",
    "上海市第六人民医院",
    "同济大学附属东方医院",
)


@dataclass
class ExamEvent:
    person: int
    visit: str
    exam: int  # index into catalogue.exams
    department: int
    requested: int
    performed: int
    reported: int
    findings: str
    impression: str
    nodule_mm: int | None = None


def draw_exams(
    catalogue: Catalogue, pop: Population, visits: Visits, stays: list[Stay], rng: np.random.Generator
) -> list[ExamEvent]:
    exam_index = {e.code: i for i, e in enumerate(catalogue.exams)}
    conditions = catalogue.conditions
    cond = {c.key: i for i, c in enumerate(conditions)}
    events: list[ExamEvent] = []

    def add(p: int, visit: str, code: str, dept: int, t: int) -> None:
        performed = t + int(rng.integers(1, 48)) * 1800
        findings, impression, size = _report(code, pop.conditions[p], cond, rng)
        events.append(
            ExamEvent(
                p,
                visit,
                exam_index[code],
                dept,
                t,
                performed,
                performed + int(rng.integers(1, 24)) * 1800,
                findings,
                impression,
                size,
            )
        )

    for j in range(len(visits.person)):
        if visits.status[j] != STATUS_DONE:
            continue
        p, d, t = int(visits.person[j]), int(visits.diagnosis[j]), int(visits.start[j]) + 3600
        if visits.kind[j] == VISIT_CHECKUP:
            if rng.random() < 0.4:
                add(p, str(visits.serial[j]), "LDCT", int(visits.department[j]), t)
            if pop.sex[p] == "F" and rng.random() < 0.3:
                add(p, str(visits.serial[j]), "US_THYROID", int(visits.department[j]), t)
        elif (
            visits.kind[j] == VISIT_OUTPATIENT
            and d < len(conditions)
            and conditions[d].exams
            and rng.random() < 0.5
        ):
            add(p, str(visits.serial[j]), str(rng.choice(conditions[d].exams)), int(visits.department[j]), t)
    for s in stays:
        if s.diagnosis < len(conditions) and conditions[s.diagnosis].exams and rng.random() < 0.8:
            add(
                s.person,
                s.serial,
                str(rng.choice(conditions[s.diagnosis].exams)),
                s.department,
                s.admit + 7200,
            )
    return events


def _report(
    code: str, has: NDArray[np.bool_], cond: dict[str, int], rng: np.random.Generator
) -> tuple[str, str, int | None]:
    if code == "LDCT":
        if has[cond["lung_cancer"]] or has[cond["lung_nodule"]]:
            size = int(rng.integers(12, 41)) if has[cond["lung_cancer"]] else int(rng.integers(3, 13))
            lobe, density = str(rng.choice(_LOBES)), str(rng.choice(_DENSITY))
            width = max(2, size - int(rng.integers(0, 3)))
            margin = "欠清，可见分叶及毛刺" if size >= 12 else "清"
            findings = (
                f"{lobe}见一{density}结节影，大小约{size}mm×{width}mm，边界{margin}。"
                "纵隔内未见明显肿大淋巴结。"
            )
            impression = (
                f"{lobe}{density}结节，{'考虑恶性可能，建议进一步检查' if size >= 12 else '建议年度随访'}。"
            )
            return findings, impression, size
        return (
            "双肺纹理清晰，未见明显结节及实变影。纵隔内未见明显肿大淋巴结。",
            "胸部CT平扫未见明显异常。",
            None,
        )
    if code == "FUNDUS":
        if has[cond["diabetic_retinopathy"]]:
            return (
                "双眼视网膜可见散在微血管瘤及点状出血，后极部可见硬性渗出。",
                "双眼糖尿病视网膜病变（非增殖期）。",
                None,
            )
        return (
            "双眼视盘边界清，色淡红，黄斑中心凹反光存在，视网膜未见出血渗出。",
            "双眼眼底未见明显异常。",
            None,
        )
    if code == "OCT":
        if has[cond["amd"]]:
            return (
                "右眼黄斑区视网膜色素上皮层隆起，可见视网膜下积液。",
                "右眼年龄相关性黄斑变性（湿性）。",
                None,
            )
        if has[cond["glaucoma"]]:
            return "双眼视盘周围视网膜神经纤维层变薄，以颞下方为著。", "双眼RNFL变薄，符合青光眼改变。", None
        return "双眼黄斑区视网膜各层结构清晰，厚度正常。", "双眼OCT未见明显异常。", None
    if code == "US_THYROID":
        if has[cond["thyroid_nodule"]]:
            size = int(rng.integers(3, 25))
            tirads = int(rng.choice([2, 3, 4], p=[0.3, 0.5, 0.2]))
            return (
                f"甲状腺{rng.choice(('左叶', '右叶'))!s}见一低回声结节，大小约{size}mm，边界清。",
                f"甲状腺结节，C-TIRADS {tirads}类。",
                size,
            )
        return "甲状腺大小形态正常，实质回声均匀，未见明显结节。", "甲状腺未见明显异常。", None
    # CT_HEAD
    if has[cond["stroke"]]:
        side = str(rng.choice(("左侧", "右侧")))
        return (
            f"{side}基底节区见斑片状低密度影，边界欠清。脑室系统未见扩大。",
            f"{side}基底节区脑梗死。",
            None,
        )
    return "脑实质内未见异常密度影，脑室系统未见扩大，中线结构居中。", "头颅CT平扫未见明显异常。", None


@dataclass
class Note:
    person: int
    stay: str
    kind: str  # first-course | progress | discharge-summary
    title: str
    written: int
    author: str
    text: str
    phi: list[tuple[str, int, int]] = field(default_factory=list)  # (type, start, end)


class _NoteBuilder:
    """Concatenates a note from pieces and records where each identifier lands."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.phi: list[tuple[str, int, int]] = []

    def text(self, s: str) -> _NoteBuilder:
        self.parts.append(s)
        self.length += len(s)
        return self

    def ident(self, kind: str, s: str) -> _NoteBuilder:
        self.phi.append((kind, self.length, self.length + len(s)))
        return self.text(s)

    def build(self) -> str:
        return "".join(self.parts)


def _cn_date(d: dt.date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def draw_notes(
    catalogue: Catalogue,
    pop: Population,
    stays: list[Stay],
    hospital_numbers: dict[str, str],
    relatives: NDArray[np.str_],
    rng: np.random.Generator,
    doctors: NDArray[np.str_],
) -> list[Note]:
    dx = Diagnoses(catalogue)
    hospital = catalogue.hospital.name
    notes: list[Note] = []
    for s in stays:
        p = s.person
        diagnosis = dx.all[s.diagnosis]
        doctor = str(rng.choice(doctors))
        senior = str(rng.choice(doctors))
        admit_d, discharge_d = to_date(s.admit), to_date(s.discharge)
        name, zyh = str(pop.name[p]), hospital_numbers[s.serial]
        age = (admit_d - dt.date(1970, 1, 1)).days - int(pop.birth_day[p])
        sex = "男" if pop.sex[p] == "M" else "女"
        # First course note (首次病程记录)
        b = (
            _NoteBuilder()
            .text("首次病程记录\n")
            .text("患者")
            .ident("NAME", name)
            .text(f"，{sex}，{age // 365}岁，住院号")
        )
        b.ident("HOSPITAL_NO", zyh).text("，因“").text(diagnosis.name).text("”于").ident(
            "DATE", _cn_date(admit_d)
        ).text("入院。")
        if s.route == "3":
            b.text("患者由").ident("INSTITUTION", str(rng.choice(_HOSPITALS))).text("转入。")
        b.text("身份证号").ident("ID", str(pop.resident_id[p])).text("，现住").ident(
            "ADDRESS", pop.address(p)
        ).text("，联系电话")
        b.ident("PHONE", str(pop.phone[p])).text("。家属").ident("NAME", str(relatives[p])).text("陪同。\n")
        b.text(f"初步诊断：{diagnosis.name}。诊疗计划：完善相关检查，").text(
            "择期手术。" if s.operations else "对症支持治疗。"
        )
        b.text("\n医师：").ident("NAME", doctor)
        notes.append(
            Note(p, s.serial, "first-course", "首次病程记录", s.admit + 4 * 3600, doctor, b.build(), b.phi)
        )
        # Daily progress notes (日常病程记录), at most three
        for k in range(1, min(4, s.bed_days)):
            d = admit_d + dt.timedelta(days=k)
            b = (
                _NoteBuilder()
                .ident("DATE", f"{d.isoformat()} 08:30")
                .text(" 日常病程记录\n")
                .text("患者")
                .ident("NAME", name)
            )
            b.text(
                str(
                    rng.choice(
                        (
                            "一般情况可，无发热，饮食睡眠可。",
                            "诉乏力，无胸闷气促，二便正常。",
                            "精神好转，切口愈合良好。",
                        )
                    )
                )
            )
            if k == 1:
                b.text("今日随").ident("NAME", senior).text("主任医师查房，同意目前治疗方案。")
            b.text("\n医师：").ident("NAME", doctor)
            notes.append(
                Note(
                    p,
                    s.serial,
                    "progress",
                    "日常病程记录",
                    (s.admit // DAY + k) * DAY + 9 * 3600,
                    doctor,
                    b.build(),
                    b.phi,
                )
            )
        # Discharge summary (出院记录)
        b = (
            _NoteBuilder()
            .text("出院记录\n姓名：")
            .ident("NAME", name)
            .text(f"  性别：{sex}  住院号：")
            .ident("HOSPITAL_NO", zyh)
        )
        b.text("\n入院日期：").ident("DATE", _cn_date(admit_d)).text("  出院日期：").ident(
            "DATE", _cn_date(discharge_d)
        )
        b.text(f"  住院天数：{s.bed_days}天\n入院诊断：{diagnosis.name}\n")
        if s.operations:
            op = s.operations[0]
            b.text("诊疗经过：于").ident("DATE", _cn_date(to_date(op.start))).text(
                f"在{'局麻' if op.procedure.grade <= 2 else '全麻'}下行"
            )
            b.text(f"{op.procedure.name}，手术顺利，术后恢复可。\n")
        else:
            b.text("诊疗经过：入院后予对症治疗，病情好转。\n")
        b.text(f"出院诊断：{diagnosis.name}\n出院医嘱：门诊随访，如有不适及时就诊，联系电话").ident(
            "PHONE", str(pop.phone[p])
        )
        b.text("。\n").ident("INSTITUTION", hospital).text(" 医师：").ident("NAME", doctor)
        notes.append(
            Note(p, s.serial, "discharge-summary", "出院记录", s.discharge - 1800, doctor, b.build(), b.phi)
        )
    return notes
