"""Key conflicts: a key of one person written on another person's record, as real hospitals do.

Two kinds (issue 10, item 2), both off by default (`DefectRates`): ``newborn_parent_id``, a newborn
registered in the HIS under the mother's resident ID (another person: another name, sex or birth date, the
same ID), and ``reused_inpatient_no``, one patient's inpatient number on another patient's record in another
system (an EMR front sheet; at the integrated hospital, a document of its EMR module). Every conflict goes
to ``truth/key_conflicts.csv`` with the two true persons and the records involved, so a linkage that merges
them silently can be caught. The choices come from a random stream of their own, drawn only when a rate is
set, so a hospital without conflicts is byte for byte what it was before they existed.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ._chunk import ChunkState
from ._encounters import DAY


def conflict_stream(c: ChunkState, kind: int) -> np.random.Generator:
    """A stream apart from the chunk's, so drawing conflicts changes nothing else."""
    return np.random.default_rng(np.random.SeedSequence([c.config.seed, 4, c.index, kind]))


def newborn_mothers(
    c: ChunkState, rows: NDArray[np.int64], is_dup: NDArray[np.bool_], created: NDArray[np.int64]
) -> dict[int, int]:
    """Newborns registered under their mother's resident ID: patient-master row -> the mother's row.

    A newborn is a child registered before turning three (babies go by a parent's ID until they have
    their own); the mother is another HIS patient of the chunk, a woman 18 to 45 years older. Only a
    person's first registration is written under the mother's ID.
    """
    rate = c.config.defects.newborn_parent_id
    if not rate or not len(rows):
        return {}
    rng = conflict_stream(c, 1)
    birth = c.pop.birth_day[rows]
    newborn = ~is_dup & (created // DAY - birth < 3 * 365)
    c.out.eligible["newborn_parent_id"] += int(newborn.sum())
    chosen = np.nonzero(newborn & (rng.random(len(rows)) < rate))[0]
    women = np.nonzero(~is_dup & (c.pop.sex[rows] == "F"))[0]
    mothers: dict[int, int] = {}
    for r in chosen:
        age_gap = birth[r] - birth[women]
        fits = women[(age_gap >= 18 * 365) & (age_gap <= 45 * 365)]
        if len(fits):
            mothers[int(r)] = int(fits[rng.integers(len(fits))])
    return mothers


def reused_owners(c: ChunkState, persons: NDArray[np.int64], owners: NDArray[np.int64]) -> dict[int, int]:
    """Records given another patient's inpatient number: record index -> the number's owner (a person of
    ``owners``, the chunk's patients with an inpatient number, never the record's own person)."""
    rate = c.config.defects.reused_inpatient_no
    if not rate or not len(persons):
        return {}
    rng = conflict_stream(c, 2)
    c.out.eligible["reused_inpatient_no"] += len(persons)
    chosen = np.nonzero(rng.random(len(persons)) < rate)[0]
    result: dict[int, int] = {}
    for k in chosen:
        candidates = owners[owners != persons[k]]
        if len(candidates):
            result[int(k)] = int(candidates[rng.integers(len(candidates))])
    return result
