"""The integrated profile: the same simulated people and encounters, exported as another hospital.

That hospital runs one integrated HIS (one vendor; the lab, the EMR's documents, orders and charges are
modules of it, so they share its patient and visit numbers) and uploads part of its work to the regional
health platform, which exports FHIR R4 resources in the Bulk Data NDJSON layout. It has no anaesthesia or
surgery system (operations are procedure rows of the HIS), no imaging system export and no insurance
settlement workbooks. Only the export layer differs from the tertiary profile: `simulate_chunk` draws the
events from the same random stream in the same order.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import NDArray

from ._chunk import ChunkState
from ._encounters import DAY, Stay, Visits
from ._exports import simulate_chunk, truth_visits
from ._integrated_his import write_integrated_his
from ._numbering import zero_padded
from ._platform_export import write_platform
from ._population import EPOCH


class IntegratedNumbers:
    """The integrated HIS's own visit numbers (one sequence for every visit and stay) and its inpatient
    numbers, a new one per admission (the site declares ``inpatient_no: per_admission``).

    Example:
        >>> n = IntegratedNumbers(3)
        >>> n.visit_no(np.array([0, 1])).tolist()
        ['V00030000001', 'V00030000002']
    """

    def __init__(self, chunk: int) -> None:
        self.chunk = chunk
        self.admission_no: dict[str, str] = {}  # visit_no of a stay -> its admission number

    def visit_no(self, seq: NDArray[np.int64]) -> NDArray[np.str_]:
        return np.char.add(f"V{self.chunk:04d}", zero_padded(seq + 1, 7))

    def renumber(self, visits: Visits, stays: list[Stay]) -> tuple[Visits, list[Stay]]:
        n_v = len(visits.serial)
        visits = dataclasses.replace(visits, serial=self.visit_no(np.arange(n_v, dtype=np.int64)))
        stay_no = self.visit_no(np.arange(n_v, n_v + len(stays), dtype=np.int64))
        renumbered = [dataclasses.replace(s, serial=str(no)) for s, no in zip(stays, stay_no, strict=True)]
        for k, s in enumerate(renumbered):
            self.admission_no[s.serial] = f"ZY{self.chunk:04d}{k + 1:05d}"
        return visits, renumbered


def write_integrated(c: ChunkState, doctors: NDArray[np.str_]) -> None:
    """Simulate the chunk and write it as the integrated hospital's HIS and regional-platform exports."""
    # The integrated HIS exports from its own database: nothing lags; the reporting period is the whole one.
    c.full_cutoff = (c.config.end - EPOCH).days * DAY
    c.cutoff = (c.config.cut - EPOCH).days * DAY
    numbers = IntegratedNumbers(c.index)
    events = simulate_chunk(c, doctors, lambda s: numbers.admission_no[s.serial], numbers.renumber)
    his = write_integrated_his(c, events, numbers.admission_no)
    write_platform(c, events, his)
    truth_visits(c, events.visits, events.stays)
