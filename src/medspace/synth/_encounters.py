"""True clinical events of one chunk of patients: outpatient, emergency and check-up visits; inpatient stays
with transfers, operations, recalled discharges and costs.

These are the facts; `_exports` later writes them as each system would, with its own keys, formats and
defects. Times are int64 seconds since 1970-01-01 in hospital local time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ._catalogue import Catalogue, Diagnosis, Procedure
from ._config import HospitalConfig
from ._numbering import zero_padded
from ._population import EPOCH, Population

DAY = 86_400
VISIT_OUTPATIENT, VISIT_EMERGENCY, VISIT_CHECKUP = 0, 1, 2
STATUS_DONE, STATUS_REFUND, STATUS_CANCELLED = 0, 1, 2


@dataclass
class Visits:
    """Outpatient, emergency and check-up registrations (one row per registration)."""

    person: NDArray[np.int64]  # index into the chunk's population
    kind: NDArray[np.int64]  # VISIT_*
    start: NDArray[np.int64]  # registration time
    department: NDArray[np.int64]  # index into catalogue.departments
    diagnosis: NDArray[np.int64]  # index into Diagnoses.all
    status: NDArray[np.int64]  # STATUS_*
    serial: NDArray[np.str_]  # 就诊流水号
    fee: NDArray[np.float64]  # registration fee
    doctor: NDArray[np.str_]


@dataclass
class Operation:
    procedure: Procedure
    session: int  # theatre session number within the stay, from 1
    start: int
    end: int
    elective: bool
    theatre: str
    surgeon: str
    blood_loss_ml: int
    transfusion_ml: int


@dataclass
class Stay:
    """One true inpatient stay, from admission to the discharge that really ended it."""

    person: int
    serial: str
    times: int  # 住院次数, the person's admission count
    admit: int
    discharge: int
    department: int
    discharge_department: int
    transfer_at: int | None
    diagnosis: int
    other_diagnoses: list[int]
    route: str  # B11C admission route
    discharge_mode: str  # B34C, true value
    payment: str  # A46C
    day_surgery: bool
    recalled_at: int | None  # time HIS recorded the first (recalled) discharge
    operations: list[Operation] = field(default_factory=list)
    costs: dict[str, float] = field(default_factory=dict)

    @property
    def bed_days(self) -> int:
        """Length of stay in days (front sheet B20): a stay ending before midnight counts one day."""
        return max(1, (self.discharge // DAY) - (self.admit // DAY))

    @property
    def total_cost(self) -> float:
        return round(sum(self.costs.values()), 2)


class Diagnoses:
    """Conditions and general diagnoses as one indexable list."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.all: tuple[Diagnosis, ...] = (*catalogue.conditions, *catalogue.general_diagnoses)
        self.index = {d.key: i for i, d in enumerate(self.all)}
        self.department_index = {d.key: i for i, d in enumerate(catalogue.departments)}

    def department(self, dx: int) -> int:
        return self.department_index[self.all[dx].department]


def _serials(prefix: str, days: NDArray[np.int64], chunk: int, first: int) -> NDArray[np.str_]:
    """Serial numbers shaped like the integration platform's: prefix + date + chunk + sequence."""
    dates = np.char.replace(np.datetime_as_string(days.astype("datetime64[D]"), unit="D"), "-", "")
    seq = zero_padded(np.arange(first, first + len(days)), 6)
    return np.char.add(np.char.add(np.char.add(prefix, dates), f"{chunk:04d}"), seq)


def draw_visits(
    catalogue: Catalogue,
    config: HospitalConfig,
    pop: Population,
    rng: np.random.Generator,
    chunk: int,
    doctors: NDArray[np.str_],
) -> Visits:
    dx = Diagnoses(catalogue)
    n = len(pop)
    n_cond = len(catalogue.conditions)
    yearly = 0.8 + pop.conditions @ np.array([c.visits for c in catalogue.conditions])
    adults = pop.birth_day < (config.start - EPOCH).days - 18 * 365
    counts = {
        VISIT_OUTPATIENT: rng.poisson(yearly * config.years),
        VISIT_EMERGENCY: rng.poisson(np.full(n, 0.25 * config.years)),
        VISIT_CHECKUP: rng.poisson(np.where(adults, 0.3, 0.05) * config.years),
    }
    person = np.concatenate([np.repeat(np.arange(n), c) for c in counts.values()])
    kind = np.concatenate([np.full(int(c.sum()), k) for k, c in counts.items()])
    total = len(person)
    start_day = (config.start - EPOCH).days
    period_days = (config.end - config.start).days
    day = start_day + rng.integers(0, period_days, total)
    hour = np.where(
        kind == VISIT_EMERGENCY,
        rng.integers(0, 24 * 3600, total),
        rng.integers(7 * 3600 + 1800, 17 * 3600, total),
    )
    start = day * DAY + hour

    # Diagnosis: one of the person's conditions (chosen at random), else a general diagnosis.
    has = pop.conditions[person]
    pick = np.argmax(rng.random((total, n_cond)) * has, axis=1)
    use_condition = has.any(axis=1) & (rng.random(total) < 0.85) & (kind == VISIT_OUTPATIENT)
    general = [dx.index[k] for k in ("uri", "gastroenteritis", "back_pain")]
    diagnosis = np.where(use_condition, pick, rng.choice(general, total))
    diagnosis = np.where(kind == VISIT_CHECKUP, dx.index["checkup"], diagnosis)
    department = np.array([dx.department(d) for d in range(len(dx.all))])[diagnosis]
    department = np.where(kind == VISIT_EMERGENCY, dx.department_index["emergency"], department)

    r = config.defects
    u = rng.random(total)
    status = np.where(u < r.registration_refund, STATUS_REFUND, STATUS_DONE)
    status = np.where(
        (u >= r.registration_refund) & (u < r.registration_refund + r.registration_cancelled),
        STATUS_CANCELLED,
        status,
    )
    fee = np.select(
        [kind == VISIT_EMERGENCY, kind == VISIT_CHECKUP],
        [25.0, 0.0],
        np.where(rng.random(total) < 0.3, 50.0, 25.0),
    )

    order = np.lexsort((person, start))
    return Visits(
        person=person[order],
        kind=kind[order],
        start=start[order],
        department=department[order],
        diagnosis=diagnosis[order],
        status=status[order],
        serial=_serials("MZ", day[order], chunk, 1),
        fee=fee[order],
        doctor=rng.choice(doctors, total),
    )


_ROUTES = ("1", "2", "3", "9")  # B11C: emergency, outpatient, referred in, other
_PAYMENTS = ("1", "2", "3", "7", "8")  # A46C: employee, resident, new rural, self-pay, other
_THEATRES = tuple(f"OR{n:02d}" for n in range(1, 19))


def draw_stays(
    catalogue: Catalogue,
    config: HospitalConfig,
    pop: Population,
    rng: np.random.Generator,
    chunk: int,
    doctors: NDArray[np.str_],
) -> list[Stay]:
    dx = Diagnoses(catalogue)
    procedures = {p.key: p for p in catalogue.procedures}
    conds = catalogue.conditions
    rates = np.array([c.admissions for c in conds])
    yearly = 0.03 + pop.conditions @ rates
    counts = np.minimum(rng.poisson(yearly * config.years), 8)
    start_day = (config.start - EPOCH).days
    end_day = (config.end - EPOCH).days
    acute = [dx.index["appendicitis"], dx.index["fracture"], dx.index["gastroenteritis"], dx.index["uri"]]
    stays: list[Stay] = []
    serial_seq = 1
    for i in np.nonzero(counts)[0]:
        person_conditions = np.nonzero(pop.conditions[i] & (rates > 0))[0]
        weights = rates[person_conditions]
        admits = np.sort(rng.integers(start_day, end_day - 2, int(counts[i])))
        free_from = start_day
        times = 0
        for admit_day in admits:
            admit_day = max(int(admit_day), free_from)
            if len(person_conditions) and rng.random() < 0.9:
                d = int(rng.choice(person_conditions, p=weights / weights.sum()))
            else:
                d = int(rng.choice(acute))
            diagnosis = dx.all[d]
            candidates = [procedures[p] for p in diagnosis.procedures]
            operate = bool(candidates) and rng.random() < (
                0.85 if diagnosis.key in ("cataract", "appendicitis", "fracture") else 0.45
            )
            day_surgery = operate and candidates[0].day_surgery and rng.random() < 0.6
            los = 0 if day_surgery else int(np.clip(rng.lognormal(np.log(7.0), 0.5), 1, 60))
            admit = admit_day * DAY + int(rng.integers(8 * 3600, 20 * 3600))
            discharge_day = admit_day + los
            if discharge_day >= end_day:
                break  # stays must end inside the period; later admissions of this person are dropped
            discharge = (
                discharge_day * DAY + int(rng.integers(9 * 3600, 17 * 3600))
                if los
                else admit + int(rng.integers(4, 10)) * 3600
            )
            free_from = discharge_day + 1
            times += 1  # noqa: SIM113 (admissions that do not fit in the period are skipped, not counted)
            department = dx.department(d)
            stay = Stay(
                person=int(i),
                serial=f"ZY{_ymd(admit_day)}{chunk:04d}{serial_seq:06d}",
                times=times,
                admit=admit,
                discharge=discharge,
                department=department,
                discharge_department=department,
                transfer_at=None,
                diagnosis=d,
                other_diagnoses=[int(c) for c in np.nonzero(pop.conditions[i])[0] if c != d][:3],
                route="1" if d in acute else str(rng.choice(_ROUTES, p=[0.15, 0.75, 0.05, 0.05])),
                discharge_mode=str(
                    rng.choice(("1", "2", "3", "4", "5", "9"), p=[0.9, 0.02, 0.02, 0.03, 0.01, 0.02])
                ),
                payment=str(rng.choice(_PAYMENTS, p=[0.55, 0.3, 0.05, 0.08, 0.02])),
                day_surgery=day_surgery,
                recalled_at=None,
            )
            serial_seq += 1
            if operate:
                _add_operations(
                    stay,
                    candidates,
                    rng,
                    doctors,
                    elective=d not in acute or diagnosis.key == "gastroenteritis",
                )
            if los >= 3 and rng.random() < config.defects.department_transfer:
                stay.transfer_at = admit + int(rng.integers(1, los)) * DAY
                stay.discharge_department = int(
                    rng.choice(
                        [
                            dx.department_index[k]
                            for k in ("general_medicine", "cardiology", "respiratory", "nephrology")
                        ]
                    )
                )
            if los >= 2 and rng.random() < config.defects.recalled_discharge:
                stay.recalled_at = admit + int(rng.integers(1, los)) * DAY
            if stay.discharge_mode == "5":
                stay.discharge_mode = "1" if diagnosis.key in ("cataract",) else "5"
            stay.costs = _costs(stay, rng)
            stays.append(stay)
            if stay.discharge_mode == "5":
                break  # died in hospital: no later admissions
    return stays


def without_visits_after_death(visits: Visits, stays: list[Stay]) -> Visits:
    """Drop the outpatient, emergency and check-up visits drawn after a person died in hospital."""
    death = {s.person: s.discharge for s in stays if s.discharge_mode == "5"}
    if not death:
        return visits
    died_at = np.array([death.get(int(p), np.iinfo(np.int64).max) for p in visits.person], dtype=np.int64)
    keep = visits.start < died_at
    return Visits(
        person=visits.person[keep],
        kind=visits.kind[keep],
        start=visits.start[keep],
        department=visits.department[keep],
        diagnosis=visits.diagnosis[keep],
        status=visits.status[keep],
        serial=visits.serial[keep],
        fee=visits.fee[keep],
        doctor=visits.doctor[keep],
    )


def _add_operations(
    stay: Stay,
    candidates: list[Procedure],
    rng: np.random.Generator,
    doctors: NDArray[np.str_],
    elective: bool,
) -> None:
    sessions = 2 if (not stay.day_surgery and rng.random() < 0.1) else 1
    latest = stay.discharge - 2 * 3600
    for session in range(1, sessions + 1):
        # sessions happen in order: a second session (re-operation or staged procedure) comes days later
        span = max(2, (stay.discharge - stay.admit) // DAY)
        day_offset = 0 if stay.day_surgery else int(rng.integers(1, span)) if session == 1 else span - 1
        begin = min(stay.admit + day_offset * DAY + int(rng.integers(1, 4)) * 3600, latest - 3 * 3600)
        surgeon = str(rng.choice(doctors))
        theatre = str(rng.choice(_THEATRES))
        # the main procedure (a second session is a re-operation), and in the first session sometimes a
        # second procedure coded separately (for example a lymph node dissection)
        chosen = [candidates[0]]
        if session == 1 and len(candidates) > 1 and rng.random() < 0.6:
            chosen.append(candidates[1])
        for proc in chosen:
            duration = int(rng.integers(20, 60 * (proc.grade + 1))) * 60
            stay.operations.append(
                Operation(
                    procedure=proc,
                    session=session,
                    start=begin,
                    end=begin + duration,
                    elective=elective,
                    theatre=theatre,
                    surgeon=surgeon,
                    blood_loss_ml=int(rng.gamma(2.0, 10.0 * proc.grade**2)),
                    transfusion_ml=int(rng.choice([0, 200, 400]))
                    if proc.grade == 4 and rng.random() < 0.2
                    else 0,
                )
            )
            begin += duration + 600


def _costs(stay: Stay, rng: np.random.Generator) -> dict[str, float]:
    days = stay.bed_days
    costs = {
        "床位费": 60.0 * days,
        "护理费": 35.0 * days,
        "西药费": round(float(rng.gamma(2.0, 350.0)) * days, 2),
        "检验费": round(float(rng.gamma(3.0, 150.0)) + 40.0 * days, 2),
        "检查费": round(float(rng.gamma(2.0, 300.0)), 2),
    }
    if stay.operations:
        costs["手术费"] = round(sum(1500.0 * op.procedure.grade**1.6 for op in stay.operations), 2)
        costs["材料费"] = round(
            float(rng.gamma(2.0, 2500.0))
            * (2.5 if any(op.procedure.interventional for op in stay.operations) else 1),
            2,
        )
    return costs


def _ymd(day: int) -> str:
    return str(np.datetime64(day, "D")).replace("-", "")


def to_date(ts: int) -> dt.date:
    return EPOCH + dt.timedelta(days=ts // DAY)
