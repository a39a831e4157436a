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
KEY_CONFLICT_FIELDS = (
    "kind",
    "key_kind",
    "key_value",
    "person_id",
    "other_person_id",
    "file",
    "record_key",
    "other_records",
)
CORRECTION_FIELDS = (
    "system",
    "file",
    "row",
    "record_key",
    "patient_key",
    "field",
    "value",
    "later_value",
    "person_id",
)


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
    as_of: int | None = None  # an as-of export's cut (seconds since 1970-01-01), None for the full export
    future: dict[str, set[str]] = field(default_factory=dict)  # keys an as-of export left out, per file
    # (system, file, position, record key, patient key, field, shown value, later value, person)
    corrections: list[tuple[str, str, int, str, str, str, str, str, str]] = field(default_factory=list)
    # KEY_CONFLICT_FIELDS, the other person's records as (file, key) pairs
    key_conflicts: list[tuple[str, str, str, str, str, str, str, tuple[tuple[str, str], ...]]] = field(
        default_factory=list
    )

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
        at: NDArray[np.int64] | None = None,
        draw_withhold: NDArray[np.bool_] | None = None,
        later: dict[str, Any] | None = None,
        patient_key: str = "",
    ) -> NDArray[np.int64]:
        """Add rows to a file; return each given row's position in the chunk's table (-1 if withheld).

        Args:
            defects: (kind, field, row positions in ``columns``, detail) for rows that carry a defect.
            duplicate_rate: chance that a row is written twice (the copy is recorded as a defect).
            withhold: rows the export lost; they go to the ground truth's withheld folder instead.
            at: when each row came to be in its system; an as-of export (``as_of`` set) leaves out the rows
                from its day on, as if they had never happened (not withheld); it needs ``at`` everywhere.
            draw_withhold: the rows the full export withholds, when ``withhold`` is an as-of export's: the
                duplicate draw runs over the full export's rows, so the random stream, and every value drawn
                after it, stays the full export's.
            later: column -> the values the later (full) export writes; rows whose shown value differs are
                listed as corrections (as-of exports only).
            patient_key: the column holding the system's patient number, written beside a correction.
        """
        n = len(record_key)
        table = pa.table(
            {k: v if isinstance(v, pa.Array | pa.ChunkedArray) else pa.array(v) for k, v in columns.items()}
        )
        future = np.zeros(n, dtype=bool)
        if self.as_of is not None:
            if at is None:
                raise AssertionError(f"{file}: an as-of export needs the record time of every row")
            future = np.asarray(at, dtype=np.int64) >= self.as_of
            if future.any():
                self.future.setdefault(file, set()).update(np.asarray(record_key)[future].tolist())
        present = ~future
        full_withhold = withhold if draw_withhold is None else draw_withhold
        if withhold is not None:
            withhold = withhold & present
        keep = present if withhold is None else ~withhold & present
        if withhold is not None and withhold.any():
            self.withheld[file] = _concat(self.withheld.get(file), table.filter(pa.array(withhold)))
        # The duplicate draw runs over the rows the full export keeps, whatever this export holds.
        order = np.nonzero(keep)[0]
        if self.as_of is None:
            drawn = order
        else:
            drawn = np.arange(n) if full_withhold is None else np.nonzero(~full_withhold)[0]
        if duplicate_rate and rng is not None and len(drawn):
            self.eligible["duplicate_record"] += len(order)
            flags = np.zeros(n, dtype=bool)
            flags[drawn] = rng.random(len(drawn)) < duplicate_rate
            dup = flags[order]
            # each duplicated row is written again right after itself, as a re-sent batch would be
            order = np.repeat(order, np.where(dup, 2, 1))
            is_copy = np.zeros(len(order), dtype=bool)
            is_copy[1:] = order[1:] == order[:-1]
        else:
            is_copy = np.zeros(len(order), dtype=bool)
        offset = self.files[file].table.num_rows if file in self.files else 0
        position = np.full(n, -1, dtype=np.int64)
        position[future] = -2
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
                if pos == -2:
                    continue  # the row has not happened yet in this (as-of) export
                text = detail if isinstance(detail, str) else str(detail[j])
                self.defects.append(
                    (kind, system, file, pos, fld, str(record_key[r]), str(person_id[r]), text)
                )
        if later:
            keys = _values(columns[patient_key]) if patient_key else None
            for col, values in later.items():
                shown, fixed = _values(columns[col]), _values(values)
                for r in np.nonzero((shown != fixed) & keep)[0]:
                    self.corrections.append(
                        (
                            system,
                            file,
                            int(position[r]),
                            str(record_key[r]),
                            "" if keys is None else str(keys[r]),
                            col,
                            str(shown[r]),
                            str(fixed[r]),
                            str(person_id[r]),
                        )
                    )
        if self.as_of is not None and file.endswith(".xlsx") and not len(order) and file not in self.files:
            return position  # a month's workbook whose settlements have not happened yet is not written
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

    def cut_truth(self) -> None:
        """An as-of export's links and note identifiers, without the records it left out."""
        if self.as_of is None:
            return
        future = self.future
        self.key_conflicts = [
            (*k[:7], tuple(r for r in k[7] if r[1] not in future.get(r[0], ())))
            for k in self.key_conflicts
            if k[6] not in future.get(k[5], ())
        ]
        self.links = [
            link
            for link in self.links
            if link[2] not in future.get(link[1], ()) and link[4] not in future.get(link[3], ())
        ]
        if self.note_phi is not None and self.note_phi.num_rows:
            gone = set().union(*future.values()) if future else set()
            ids = self.note_phi.column("note_id").to_pylist()
            self.note_phi = self.note_phi.filter(pa.array([i not in gone for i in ids]))

    def defect(
        self, kind: str, file: str, row: int, fld: str, key: str, person: str, detail: str, at: int = 0
    ) -> None:
        """Record a defect of no exported row (``row`` -1); ``at`` is when it happened (as-of exports)."""
        if self.as_of is not None and at >= self.as_of:
            return
        self.defects.append((kind, file.split("/", 1)[0], file, row, fld, key, person, detail))

    def link(self, kind: str, from_file: str, from_key: str, to_file: str, to_key: str) -> None:
        self.links.append((kind, from_file, from_key, to_file, to_key))


def _values(column: Any) -> NDArray[Any]:
    """A column as a NumPy array of comparable values."""
    if isinstance(column, pa.Array | pa.ChunkedArray):
        return np.asarray(column.to_numpy(zero_copy_only=False))
    return np.asarray(column)


def _concat(old: pa.Table | None, new: pa.Table) -> pa.Table:
    return new if old is None else pa.concat_tables([old, new])
