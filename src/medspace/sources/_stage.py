"""Staging: read every source system's exports by its mapping spec into the workspace, losing nothing.

Output, under ``<workspace>/staging/`` (a contract later stages code against):

- ``<system>/<table>.parquet``: the spec's canonical columns plus lineage: ``_source_system``,
  ``_source_file`` (relative to the export folder) and ``_source_row`` (1-based data row, numbered as the
  synthetic hospital's ground truth numbers it);
- ``quarantine.parquet``: every source row not staged, with the rule it broke and the raw row as JSON text
  (``row`` is null when a whole file could not be read);
- ``manifest.json``: rows read, staged and quarantined per file and per table, and counts per rule.

Every row read is either staged or quarantined. The folder is replaced as a whole only when staging
succeeds, and the same exports always give byte-identical Parquet files.

This module handles identifiable rows; quarantine entries keep the raw row (it stays in the workspace), but
messages and the manifest never hold values.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medspace.core import InputError, Workspace, refresh_catalog, replace_folder
from medspace.sources._convert import Converted, convert, schema
from medspace.sources._readers import RawFile, read_file
from medspace.sources._report import FileReport, Problem, StagingReport, TableReport
from medspace.sources._spec import SourceSpec, TableSpec, load_specs

LINEAGE = pa.schema(
    [
        pa.field("_source_system", pa.string()),
        pa.field("_source_file", pa.string()),
        pa.field("_source_row", pa.int64()),
    ]
)

QUARANTINE = pa.schema(
    [
        pa.field("system", pa.string()),
        pa.field("table", pa.string()),
        pa.field("file", pa.string()),
        pa.field("row", pa.int64()),
        pa.field("field", pa.string()),
        pa.field("rule", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("raw", pa.string()),
    ]
)


@dataclass
class _Quarantine:
    """Quarantine entries of one table, collected column-wise."""

    system: str
    table: str
    file: list[str] = field(default_factory=list)
    row: list[int | None] = field(default_factory=list)
    fields: list[str | None] = field(default_factory=list)
    rule: list[str] = field(default_factory=list)
    reason: list[str] = field(default_factory=list)
    raw: list[str | None] = field(default_factory=list)

    def add(self, error: InputError, raw: str | None) -> None:
        self.file.append(error.file or "")
        self.row.append(error.row)
        self.fields.append(error.field)
        self.rule.append(error.rule or "")
        self.reason.append(str(error))
        self.raw.append(raw)

    def to_table(self) -> pa.Table:
        n = len(self.file)
        return pa.table(
            {
                "system": [self.system] * n,
                "table": [self.table] * n,
                "file": self.file,
                "row": self.row,
                "field": self.fields,
                "rule": self.rule,
                "reason": self.reason,
                "raw": self.raw,
            },
            schema=QUARANTINE,
        )


@dataclass
class _FileResult:
    relative: str
    raw: RawFile | None
    staged: pa.Table | None = None
    #: For each staged row, its index in ``raw.columns`` (to fetch the raw row of a duplicate).
    raw_index: np.ndarray[Any, np.dtype[np.int64]] | None = None
    rules: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    quarantined: int = 0
    staged_rows: int = 0
    rows_read: int = 0
    #: The whole file could not be read: one quarantine entry with a null row, no rows counted.
    failed: bool = False
    #: Per date or timestamp column, the values each accepted format parsed.
    date_formats: dict[str, dict[str, int]] = field(default_factory=dict)

    def raw_row(self, index: int) -> str:
        assert self.raw is not None
        if self.raw.lines is not None:
            return self.raw.lines[index]
        return json.dumps(self.raw.columns.slice(index, 1).to_pylist()[0], ensure_ascii=False)


def stage_exports(
    exports: Path,
    workspace: Path,
    specs: Sequence[SourceSpec] | None = None,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> StagingReport:
    """Stage the exports of every system in ``specs`` into ``<workspace>/staging``.

    Args:
        exports: The folder holding each system's exports (``his/patients.csv``, ``lis/results.csv``, ...).
        workspace: The workspace root; the output goes to its ``staging`` folder, replaced as a whole.
        specs: The mapping specs to apply; ``None`` uses every spec shipped with medspace.
        progress: Called as ``progress(tables_done, tables_total)`` each time a table is staged.
        workers: Tables staged at the same time (threads); default: 2, or 1 on a single core.

    Returns:
        What was read, staged and quarantined, per file and table, with the problems found.

    Raises:
        InputError: ``exports`` is not a folder. Problems inside files never raise: they are quarantined
            and reported.

    Example:
        >>> report = stage_exports(Path("hospital"), Path("medspace-data"))  # doctest: +SKIP
        >>> report.quarantined <= report.rows_read  # doctest: +SKIP
        True
    """
    exports = Path(exports)
    if not exports.is_dir():
        raise InputError(
            "the export folder does not exist or is not a folder; pass the folder holding the exports",
            file=str(exports),
            rule="missing_folder",
        )
    specs = load_specs() if specs is None else list(specs)
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    target = Workspace(Path(workspace)).stage("staging")
    files: list[FileReport] = []
    tables: list[TableReport] = []
    problems: list[Problem] = []
    quarantines: list[pa.Table] = []
    with replace_folder(target) as tmp:
        for spec in specs:
            (tmp / spec.system).mkdir()
        jobs = [(spec, table) for spec in specs for table in spec.tables]

        def run(job: tuple[SourceSpec, TableSpec]) -> tuple[_Quarantine, list[_FileResult]]:
            spec, table = job
            staged, quarantine, results = _stage_table(exports, spec, table)
            path = tmp / spec.system / f"{table.name}.parquet"
            pq.write_table(staged, path, compression="zstd", use_dictionary=True, write_statistics=True)
            for r in results:  # keep the counts, free the rows
                r.rows_read = r.raw.rows_read if r.raw is not None else 0
                r.raw = None
                r.staged = None
            return quarantine, results

        # Two tables at a time: Arrow's kernels and the Parquet writer release the GIL, so the second core
        # works while the first parses. The largest exports start first; results are taken in spec order,
        # so the output does not depend on which table finished first.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            order = sorted(range(len(jobs)), key=lambda i: -_export_bytes(exports, jobs[i][1]))
            futures = {i: pool.submit(run, jobs[i]) for i in order}
            if progress is not None:
                for done, _ in enumerate(as_completed(futures.values()), 1):
                    progress(done, len(jobs))
            outcomes = [futures[i].result() for i in range(len(jobs))]
        for (spec, table), (quarantine, results) in zip(jobs, outcomes, strict=True):
            quarantines.append(quarantine.to_table())
            table_files = [
                FileReport(
                    system=spec.system,
                    table=table.name,
                    file=r.relative,
                    rows_read=r.rows_read,
                    staged=r.staged_rows,
                    quarantined=r.quarantined,
                    failed=r.failed,
                    rules=dict(sorted(r.rules.items())),
                    date_formats={c: dict(f) for c, f in sorted(r.date_formats.items()) if len(f) > 1},
                )
                for r in results
            ]
            for r in results:
                problems.extend(r.problems)
            files.extend(table_files)
            tables.append(
                TableReport(
                    system=spec.system,
                    table=table.name,
                    path=f"staging/{spec.system}/{table.name}.parquet",
                    files=len(table_files),
                    rows_read=sum(f.rows_read for f in table_files),
                    staged=sum(f.staged for f in table_files),
                    quarantined=sum(f.quarantined for f in table_files),
                )
            )
        quarantine_table = pa.concat_tables(quarantines) if quarantines else QUARANTINE.empty_table()
        pq.write_table(quarantine_table, tmp / "quarantine.parquet", compression="zstd")
        rules: Counter[str] = Counter()
        for f in files:
            rules.update(f.rules)
        report = StagingReport(
            staging=target,
            files=files,
            tables=tables,
            rules=dict(sorted(rules.items())),
            problems=problems,
        )
        (tmp / "manifest.json").write_text(report.manifest_json(), encoding="utf-8")
    refresh_catalog(Path(workspace))
    return report


def _export_bytes(exports: Path, table: TableSpec) -> int:
    return sum(p.stat().st_size for p in exports.glob(table.files) if p.is_file())


def _stage_table(
    exports: Path, spec: SourceSpec, table: TableSpec
) -> tuple[pa.Table, _Quarantine, list[_FileResult]]:
    quarantine = _Quarantine(spec.system, table.name)
    paths = sorted(p for p in exports.glob(table.files) if p.is_file())
    results: list[_FileResult] = []
    problems: list[Problem] = []
    if not paths:
        problems.append(
            Problem.from_error(
                InputError(
                    f"no export file matches {table.files!r} for table {spec.system}.{table.name}; "
                    "the table is staged empty",
                    rule="missing_file",
                )
            )
        )
    for path in paths:
        relative = path.relative_to(exports).as_posix()
        results.append(_stage_file(path, relative, spec, table, quarantine))
    staged = _concat(spec, table, results)
    staged = _drop_duplicates(staged, table, results, quarantine)
    if results:
        results[0].problems[:0] = problems
    else:
        # A table without files still reports its problem, on a pseudo file entry of zero rows.
        results.append(_FileResult(relative=table.files, raw=None, problems=problems))
    return staged, quarantine, results


def _failed_file(relative: str, error: InputError, quarantine: _Quarantine) -> _FileResult:
    """A file that could not be read at all: one quarantine entry without a row, and a problem."""
    result = _FileResult(relative=relative, raw=None, failed=True)
    result.problems.append(Problem.from_error(error))
    quarantine.add(error, None)
    result.rules[error.rule or "unreadable_file"] += 1
    return result


def _stage_file(
    path: Path, relative: str, spec: SourceSpec, table: TableSpec, quarantine: _Quarantine
) -> _FileResult:
    try:
        raw = read_file(path, relative, table)
    except InputError as exc:
        return _failed_file(relative, exc, quarantine)
    except OSError as exc:
        failure = InputError(f"cannot read the file: {exc.strerror}", file=relative, rule="unreadable_file")
        return _failed_file(relative, failure, quarantine)
    result = _FileResult(relative=relative, raw=raw)
    for note in raw.notes:
        result.problems.append(Problem.from_error(InputError(note, file=relative, rule="encoding")))
    for reject in raw.rejects:
        rejected = InputError(
            reject.reason, file=relative, row=reject.row, field=reject.field, rule=reject.rule
        )
        quarantine.add(rejected, reject.raw)
        result.rules[reject.rule] += 1
        result.quarantined += 1
    missing = [s for c in table.columns for s in c.sources if s not in raw.columns.column_names]
    missing = list(dict.fromkeys(missing))
    if missing:
        message = (
            f"the file lacks the column(s) {', '.join(missing)} that the {spec.system} spec maps; all its "
            "rows "
            "are quarantined; re-export with the expected columns or update the spec"
        )
        result.problems.append(
            Problem.from_error(InputError(message, file=relative, field=missing[0], rule="missing_column"))
        )
        rows = raw.rows.to_pylist()
        for index, row in enumerate(rows):
            error = InputError(message, file=relative, row=row, field=missing[0], rule="missing_column")
            quarantine.add(error, result.raw_row(index))
        result.rules["missing_column"] += len(rows)
        result.quarantined += len(rows)
        result.staged = None
        return result
    converted = convert(raw.columns, table)
    result.date_formats = converted.date_formats
    ok = pc.is_null(converted.failure)
    bad_index = np.flatnonzero(~ok.to_numpy(zero_copy_only=False))
    if len(bad_index):
        _quarantine_failures(result, converted, bad_index, quarantine)
    keep = np.flatnonzero(ok.to_numpy(zero_copy_only=False))
    result.raw_index = keep.astype(np.int64)
    staged = converted.table.filter(ok) if len(bad_index) else converted.table
    n = staged.num_rows
    staged = staged.append_column(LINEAGE.field(0), pa.array([spec.system] * n, type=pa.string()))
    staged = staged.append_column(LINEAGE.field(1), pa.array([relative] * n, type=pa.string()))
    staged = staged.append_column(LINEAGE.field(2), pc.filter(raw.rows, ok) if len(bad_index) else raw.rows)
    result.staged = staged
    result.staged_rows = n
    return result


def _quarantine_failures(
    result: _FileResult, converted: Converted, bad_index: np.ndarray[Any, Any], quarantine: _Quarantine
) -> None:
    assert result.raw is not None
    codes = converted.failure.take(pa.array(bad_index)).to_pylist()
    rows = result.raw.rows.take(pa.array(bad_index)).to_pylist()
    for index, code, row in zip(bad_index.tolist(), codes, rows, strict=True):
        failure = converted.failures[code]
        error = InputError(
            f"{failure.column.name}: {failure.message}",
            file=result.relative,
            row=row,
            field=failure.column.field,
            rule=failure.rule,
        )
        quarantine.add(error, result.raw_row(index))
        result.rules[failure.rule] += 1
        result.quarantined += 1


def _concat(spec: SourceSpec, table: TableSpec, results: list[_FileResult]) -> pa.Table:
    full = pa.unify_schemas([schema(table), LINEAGE])
    parts = [r.staged for r in results if r.staged is not None]
    if not parts:
        return full.empty_table()
    return pa.concat_tables(parts).combine_chunks()


def _drop_duplicates(
    staged: pa.Table, table: TableSpec, results: list[_FileResult], quarantine: _Quarantine
) -> pa.Table:
    """Keep the first row of each primary key; quarantine the others (``duplicate_key`` when the whole raw
    row repeats, as when an interface re-sends a record, ``conflicting_key`` when it differs)."""
    n = staged.num_rows
    if n == 0:
        return staged
    keys = staged.select(table.primary_key).append_column("_i", pa.array(np.arange(n, dtype=np.int64)))
    firsts = keys.group_by(table.primary_key, use_threads=False).aggregate([("_i", "min")])
    if firsts.num_rows == n:
        return staged
    keep = np.zeros(n, dtype=bool)
    keep[firsts.column("_i_min").to_numpy()] = True
    duplicates = keys.filter(pa.array(~keep))
    pairs = duplicates.join(firsts, keys=table.primary_key, join_type="inner").sort_by("_i")
    # Which file each staged row came from, and its index in that file's raw rows.
    owners: list[tuple[_FileResult, int]] = []
    offsets: list[int] = []
    total = 0
    for r in results:
        if r.staged is not None:
            owners.append((r, total))
            offsets.append(total)
            total += r.staged_rows

    def locate(i: int) -> tuple[_FileResult, int]:
        position = int(np.searchsorted(offsets, i, side="right")) - 1
        owner, start = owners[position]
        assert owner.raw_index is not None
        return owner, int(owner.raw_index[i - start])

    key_text = ", ".join(table.primary_key)
    for i, first in zip(pairs.column("_i").to_pylist(), pairs.column("_i_min").to_pylist(), strict=True):
        owner, index = locate(i)
        first_owner, first_index = locate(first)
        assert owner.raw is not None and first_owner.raw is not None
        raw = owner.raw_row(index)
        first_row = first_owner.raw.rows[first_index].as_py()
        where = f"row {first_row}" + ("" if first_owner is owner else f" of {first_owner.relative}")
        if raw == first_owner.raw_row(first_index):
            rule, message = (
                "duplicate_key",
                f"an exact copy of {where} (primary key {key_text}); the first is kept",
            )
        else:
            rule, message = (
                "conflicting_key",
                f"primary key ({key_text}) repeats {where} with other values; the first is kept",
            )
        error = InputError(
            message, file=owner.relative, row=owner.raw.rows[index].as_py(), field=key_text, rule=rule
        )
        quarantine.add(error, raw)
        owner.rules[rule] += 1
        owner.quarantined += 1
    deduplicated = staged.filter(pa.array(keep))
    for r, start in owners:
        r.staged_rows = int(keep[start : start + r.staged_rows].sum())
    return deduplicated
