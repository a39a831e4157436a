"""Collects one chunk's export rows and the ground truth that describes them.

Each export row is remembered with the true person behind it and its record key; defects point at rows by
their position in the chunk's table, which the writer turns into row numbers in the file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

DEFECT_FIELDS = ("kind", "system", "file", "row", "field", "record_key", "person_id", "detail")


@dataclass
class FileChunk:
    table: pa.Table
    person_id: NDArray[np.str_]
    record_key: NDArray[np.str_]


@dataclass
class ChunkOutput:
    """Everything one chunk contributes; picklable so worker processes can return it."""

    index: int
    files: dict[str, FileChunk] = field(default_factory=dict)
    withheld: dict[str, pa.Table] = field(default_factory=dict)
    defects: list[tuple[str, str, str, int, str, str, str, str]] = field(default_factory=list)
    links: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    eligible: Counter[str] = field(default_factory=Counter)
    kpi: Counter[str] = field(default_factory=Counter)
    visits: pa.Table | None = None
    note_phi: pa.Table | None = None
    patients: int = 0

    def emit(
        self,
        file: str,
        columns: dict[str, Any],
        person_id: NDArray[np.str_],
        record_key: NDArray[np.str_],
        *,
        duplicate_rate: float = 0.0,
        rng: np.random.Generator | None = None,
        defects: Sequence[tuple[str, str, NDArray[np.int64], Any]] = (),
        withhold: NDArray[np.bool_] | None = None,
    ) -> NDArray[np.int64]:
        """Add rows to a file; return each given row's position in the chunk's table (-1 if withheld).

        Args:
            defects: (kind, field, row positions in ``columns``, detail) for rows that carry a defect.
            duplicate_rate: chance that a row is written twice (the copy is recorded as a defect).
            withhold: rows the export lost; they go to the ground truth's withheld folder instead.
        """
        n = len(record_key)
        table = pa.table(
            {k: v if isinstance(v, pa.Array | pa.ChunkedArray) else pa.array(v) for k, v in columns.items()}
        )
        keep = np.ones(n, dtype=bool) if withhold is None else ~withhold
        if withhold is not None and withhold.any():
            self.withheld[file] = _concat(self.withheld.get(file), table.filter(pa.array(withhold)))
        order = np.nonzero(keep)[0]
        if duplicate_rate and rng is not None and len(order):
            self.eligible["duplicate_record"] += len(order)
            dup = rng.random(len(order)) < duplicate_rate
            # each duplicated row is written again right after itself, as a re-sent batch would be
            order = np.repeat(order, np.where(dup, 2, 1))
            is_copy = np.zeros(len(order), dtype=bool)
            is_copy[1:] = order[1:] == order[:-1]
        else:
            is_copy = np.zeros(len(order), dtype=bool)
        offset = self.files[file].table.num_rows if file in self.files else 0
        position = np.full(n, -1, dtype=np.int64)
        first = ~is_copy
        position[order[first]] = offset + np.nonzero(first)[0]
        system = file.split("/", 1)[0]
        for row in np.nonzero(is_copy)[0]:
            src = order[row]
            self.defects.append(
                (
                    "duplicate_record",
                    system,
                    file,
                    int(offset + row),
                    "",
                    str(record_key[src]),
                    str(person_id[src]),
                    "row written twice",
                )
            )
        for kind, fld, rows, detail in defects:
            for j, r in enumerate(rows):
                pos = int(position[r])
                text = detail if isinstance(detail, str) else str(detail[j])
                self.defects.append(
                    (kind, system, file, pos, fld, str(record_key[r]), str(person_id[r]), text)
                )
        chunk = FileChunk(table.take(pa.array(order)), person_id[order], record_key[order])
        if file in self.files:
            old = self.files[file]
            chunk = FileChunk(
                pa.concat_tables([old.table, chunk.table]),
                np.concatenate([old.person_id, chunk.person_id]),
                np.concatenate([old.record_key, chunk.record_key]),
            )
        self.files[file] = chunk
        return position

    def defect(self, kind: str, file: str, row: int, fld: str, key: str, person: str, detail: str) -> None:
        self.defects.append((kind, file.split("/", 1)[0], file, row, fld, key, person, detail))

    def link(self, kind: str, from_file: str, from_key: str, to_file: str, to_key: str) -> None:
        self.links.append((kind, from_file, from_key, to_file, to_key))


def _concat(old: pa.Table | None, new: pa.Table) -> pa.Table:
    return new if old is None else pa.concat_tables([old, new])
