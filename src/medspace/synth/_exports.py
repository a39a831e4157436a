"""Writes one chunk's true events as each hospital system exports them, with the defects of domain.md §1.

Each ``write_<system>`` function (one module per system) owns that system's files: its column names (the
vendor's own), date formats, keys and patient numbers. The ground truth (true person per row, true links,
defects) is recorded beside; this module adds the true visits and the KPI counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from ._catalogue import Catalogue
from ._chunk import KIND_NAME, ChunkState
from ._config import HospitalConfig
from ._documents import ExamEvent, Note, draw_exams, draw_notes
from ._emr_export import write_emr
from ._encounters import (
    STATUS_DONE,
    VISIT_CHECKUP,
    VISIT_EMERGENCY,
    VISIT_OUTPATIENT,
    Stay,
    Visits,
    draw_stays,
    draw_visits,
    without_visits_after_death,
)
from ._his_export import write_his
from ._imaging_export import write_ris_pacs
from ._insurance_export import write_insurance
from ._lab import LabWork, draw_lab
from ._lis_export import write_lis
from ._population import Population
from ._sink import ChunkOutput
from ._surgery_export import write_surgery


@dataclass
class ChunkEvents:
    """One chunk's true events, before any system exports them."""

    visits: Visits
    stays: list[Stay]
    lab: LabWork
    exams: list[ExamEvent]
    notes: list[Note]


# Gives the simulated visits and stays the visit numbers of the exporting hospital (the tertiary hospital
# keeps the integration platform's serials).
Renumber = Callable[[Visits, list[Stay]], tuple[Visits, list[Stay]]]


def simulate_chunk(
    c: ChunkState,
    doctors: NDArray[np.str_],
    hospital_number: Callable[[Stay], str],
    renumber: Renumber | None = None,
) -> ChunkEvents:
    """The chunk's true events, drawn from its random stream in a fixed order whatever the profile, so every
    profile exports the same people, visits, stays, lab work, exams and notes.

    Args:
        hospital_number: the inpatient number the notes write for a stay.
        renumber: replaces the visit serials before anything refers to them; numbers never feed a draw.
    """
    pop, index, catalogue, config = c.pop, c.index, c.cat, c.config
    visits = draw_visits(catalogue, config, pop, c.rng, index, doctors)
    stays = draw_stays(catalogue, config, pop, c.rng, index, doctors)
    visits = without_visits_after_death(visits, stays)
    if renumber is not None:
        visits, stays = renumber(visits, stays)
    lab = draw_lab(catalogue, pop, visits, stays, c.rng, config.defects.branch_lab_share)
    exams = draw_exams(catalogue, pop, visits, stays, c.rng)
    relatives = np.char.add(
        c.rng.choice(c.pools.surnames, len(pop), p=c.pools.surname_p),
        c.rng.choice(c.pools.given_female, len(pop)),
    )
    notes = draw_notes(
        catalogue, pop, stays, {s.serial: hospital_number(s) for s in stays}, relatives, c.rng, doctors
    )
    c.visit_person = {str(v): int(p) for v, p in zip(visits.serial, visits.person, strict=True)}
    c.visit_person.update({s.serial: s.person for s in stays})
    c.stay_times = {s.serial: s.times for s in stays}
    return ChunkEvents(visits, stays, lab, exams, notes)


def build_chunk(
    catalogue: Catalogue,
    config: HospitalConfig,
    pop: Population,
    index: int,
    first_person: int,
    doctors: NDArray[np.str_],
) -> ChunkOutput:
    c = ChunkState(catalogue, config, pop, index, first_person, doctors)
    if config.profile == "integrated":
        from ._integrated import write_integrated

        write_integrated(c, doctors)
        c.out.cut_truth()
        return c.out
    e = simulate_chunk(c, doctors, lambda s: str(c.inpatient_no[s.person]))
    write_his(c, e.visits, e.stays, e.lab, e.exams)
    write_lis(c, e.lab)
    write_emr(c, e.stays, e.notes)
    write_ris_pacs(c, e.exams)
    write_surgery(c, e.stays)
    write_insurance(c, e.stays)
    truth_visits(c, e.visits, e.stays)
    c.out.cut_truth()
    return c.out


def truth_visits(c: ChunkState, visits: Visits, stays: list[Stay]) -> None:
    """The true visits and stays, with what each KPI needs (never read by the pipeline)."""
    kpi = c.out.kpi
    # The KPIs cover the reporting period, which closes at the HIS export's sync cut-off: the statistics
    # office counts a period once every system has synced it (domain.md §1.1). Visits count by their start,
    # stays by their discharge.
    visits_in = visits.start < c.cutoff
    done = (visits.status == STATUS_DONE) & visits_in
    kpi["outpatient_visits"] += int((done & (visits.kind == VISIT_OUTPATIENT)).sum())
    kpi["emergency_visits"] += int((done & (visits.kind == VISIT_EMERGENCY)).sum())
    kpi["checkup_visits"] += int((done & (visits.kind == VISIT_CHECKUP)).sum())
    kpi["registrations"] += int(visits_in.sum())
    discharged = [s for s in stays if s.discharge < c.cutoff]
    kpi["discharges"] += len(discharged)
    kpi["bed_days"] += sum(s.bed_days for s in discharged)
    kpi["inpatient_cost_cents"] += sum(round(s.total_cost * 100) for s in discharged)
    kpi["operated_discharges"] += sum(1 for s in discharged if s.operations)
    kpi["operations"] += sum(len(s.operations) for s in discharged)
    kpi["minimally_invasive_operations"] += sum(
        op.procedure.minimally_invasive for s in discharged for op in s.operations
    )
    kpi["grade4_operations"] += sum(op.procedure.grade == 4 for s in discharged for op in s.operations)
    kpi["elective_operations"] += sum(op.elective for s in discharged for op in s.operations)
    kpi["day_surgery_operations"] += sum(len(s.operations) for s in discharged if s.day_surgery)
    kpi["recalled_discharges"] += sum(1 for s in discharged if s.recalled_at is not None)
    kpi["operation_sessions"] += sum(len({op.session for op in s.operations}) for s in discharged)

    dx = c.dx.all
    n_v = len(visits.person)
    status_name = np.array(["done", "refunded", "cancelled"])
    c.out.visits = pa.table(
        {
            "visit_serial": pa.array(
                np.concatenate([visits.serial, np.array([s.serial for s in stays], dtype=str)])
            ),
            "person_id": pa.array(
                np.concatenate(
                    [c.persons(visits.person), c.persons(np.array([s.person for s in stays], dtype=np.int64))]
                )
            ),
            "kind": pa.array([KIND_NAME[int(k)] for k in visits.kind] + ["inpatient"] * len(stays)),
            "status": pa.array(np.concatenate([status_name[visits.status], np.full(len(stays), "done")])),
            "start": pa.array(
                np.concatenate([visits.start, np.array([s.admit for s in stays], dtype=np.int64)]),
                pa.timestamp("s"),
            ),
            "end": pa.array([None] * n_v + [s.discharge for s in stays], pa.timestamp("s")),
            "department": pa.array(
                [c.departments[int(d)].key for d in visits.department]
                + [c.departments[s.department].key for s in stays]
            ),
            "diagnosis_icd10": pa.array(
                [dx[int(d)].icd10 for d in visits.diagnosis] + [dx[s.diagnosis].icd10 for s in stays]
            ),
            "in_his_export": pa.array(
                [s not in c.lost and s not in c.lagged for s in visits.serial.tolist()]
                + [s.serial not in c.lost and s.serial not in c.lagged for s in stays]
            ),
            "bed_days": pa.array([None] * n_v + [s.bed_days for s in stays], pa.int64()),
            "total_cost": pa.array([None] * n_v + [s.total_cost for s in stays], pa.float64()),
            "operations": pa.array([0] * n_v + [len(s.operations) for s in stays], pa.int64()),
            "day_surgery": pa.array([False] * n_v + [s.day_surgery for s in stays]),
            "recalled_discharge": pa.array([False] * n_v + [s.recalled_at is not None for s in stays]),
            "transferred": pa.array([False] * n_v + [s.transfer_at is not None for s in stays]),
            "discharge_mode": pa.array([None] * n_v + [s.discharge_mode for s in stays], pa.string()),
        }
    )
    if c.as_of is not None:
        c.out.visits = _as_of_visits(c.out.visits, visits, stays, c.as_of)


def _as_of_visits(table: pa.Table, visits: Visits, stays: list[Stay], as_of: int) -> pa.Table:
    """The true visits as they stood at an as-of export's cut: later ones left out, stays still running
    open (status ``open``, no end, bed-days, cost or discharge mode yet)."""
    n_v = len(visits.person)
    started = np.concatenate([visits.start < as_of, np.array([s.admit < as_of for s in stays], dtype=bool)])
    is_open = np.concatenate([np.zeros(n_v, bool), np.array([s.discharge >= as_of for s in stays], bool)])

    def unless_open(name: str) -> pa.Array:
        column = table.column(name).combine_chunks()
        return pc.if_else(pa.array(is_open), pa.nulls(len(column), column.type), column)

    patched = {
        "status": pc.if_else(pa.array(is_open), "open", table.column("status").combine_chunks()),
        "end": unless_open("end"),
        "bed_days": unless_open("bed_days"),
        "total_cost": unless_open("total_cost"),
        "discharge_mode": unless_open("discharge_mode"),
        "operations": pa.array(
            [0] * n_v + [sum(op.start < as_of for op in s.operations) for s in stays], pa.int64()
        ),
        "recalled_discharge": pa.array(
            [False] * n_v + [s.recalled_at is not None and s.recalled_at < as_of for s in stays]
        ),
        "transferred": pa.array(
            [False] * n_v + [s.transfer_at is not None and s.transfer_at < as_of for s in stays]
        ),
    }
    for name, values in patched.items():
        table = table.set_column(table.schema.get_field_index(name), name, values)
    return table.filter(pa.array(started))
