"""Staging: a site's raw exports into the canonical hospital model, by its site mapping, losing nothing.

Two phases. Phase 1 reads every raw table of the site (`_readers`) and converts its text into typed fields
(`_convert`); a row that cannot be split, parsed or keyed is quarantined with its rule, file, row and field,
and a repeated key keeps the first row. Phase 2 (`_maps`) evaluates every map of the site with DuckDB over
the phase-1 tables and writes the canonical tables.

Output, under ``<workspace>/staging/`` (a contract later stages code against):

- ``<canonical table>.parquet`` for every table of the model (empty with its schema when nothing maps to
  it): the model's columns in model order, then ``system``, ``_source_table``, ``_source_file`` and
  ``_source_row`` (the physical data line);
- ``quarantine.parquet``: every raw row not staged and every mapped row not written, with the rule, the
  raw row (phase 1) or the mapped row (phase 2) as JSON text, and the row's raw key when it could be read;
- ``site.json``: the site's declarations (`SiteDeclarations`), the only place later stages read them;
- ``manifest.json``: the `StagingReport` (counts per file, raw table, map and canonical table).

The folder is replaced as a whole only when staging succeeds, and the same exports always give
byte-identical files.

This module handles identifiable rows; quarantine entries keep them (they stay in the workspace), but
messages and the manifest never hold values.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from medspace.core import InputError, Workspace, refresh_catalog, replace_folder, stage_lineage
from medspace.sources._convert import Converted, convert, schema
from medspace.sources._maps import QUARANTINE, Quarantine, run_maps
from medspace.sources._model import HospitalModel, load_model
from medspace.sources._readers import (
    Piece,
    PieceFallback,
    RawFile,
    pieceable,
    read_file,
    read_pieces,
    read_rows,
    resolve_export_files,
)
from medspace.sources._report import FileReport, Problem, StagingReport, TableReport
from medspace.sources._site import Site, load_site
from medspace.sources._spec import TableSpec

#: The lineage columns of a phase-1 table (typed fields first); ``_key`` is the raw key text.
RAW_LINEAGE = pa.schema(
    [
        pa.field("_source_file", pa.string()),
        pa.field("_source_row", pa.int64()),
        pa.field("_key", pa.string()),
    ]
)
#: The temporary folder (inside the new staging folder, removed before it is swapped in) holding phase 1.
PHASE1_FOLDER = "_phase1"
#: How the fields of a composite key are joined in the quarantine's ``key`` column.
KEY_SEPARATOR = "-"


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
    #: Per date or timestamp field, the values each accepted format parsed.
    date_formats: dict[str, dict[str, int]] = field(default_factory=dict)

    def raw_row(self, index: int) -> str:
        assert self.raw is not None
        if self.raw.lines is not None:
            return self.raw.lines[index]
        return json.dumps(self.raw.columns.slice(index, 1).to_pylist()[0], ensure_ascii=False)


@dataclass
class RawStaged:
    """One raw table after phase 1: typed fields plus `RAW_LINEAGE`, and what happened per file."""

    system: str
    spec: TableSpec
    #: The typed rows, written to a Parquet file beside the output so memory holds one table at a time.
    path: Path
    rows: int
    results: list[_FileResult]
    quarantine: Quarantine


def stage_site(
    site: Site | str | Path | None,
    exports: Path,
    workspace: Path,
    *,
    model: HospitalModel | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> StagingReport:
    """Stage a site's exports into ``<workspace>/staging`` by its site mapping.

    Args:
        site: The site mapping, a shipped site's name or a site file; ``None``: `DEFAULT_SITE`.
        exports: The folder holding the site's exports (``his/patients.csv``, ...).
        workspace: The workspace root; the output goes to its ``staging`` folder, replaced as a whole.
        model: The canonical model (default: the shipped one).
        workers: Raw tables read, and maps evaluated, at the same time (threads); default: 2, or 1 on a
            single core.
        progress: Called as ``progress(done, total)`` as raw tables are read and maps evaluated.

    Returns:
        What was read, staged, written, quarantined and excluded, per file, raw table, map and table.

    Raises:
        InputError: ``exports`` is not a folder, or a map's expression fails in the engine. Problems
            inside files never raise: they are quarantined and reported.
        SpecError: the site mapping is invalid.

    Example:
        >>> report = stage_site("synthetic-hospital", Path("hospital"), Path("ws"))  # doctest: +SKIP
        >>> report.canonical_table("patient").rows > 0  # doctest: +SKIP
        True
    """
    exports = Path(exports)
    if not exports.is_dir():
        raise InputError(
            "the export folder does not exist or is not a folder; pass the folder holding the exports",
            file=str(exports),
            rule="missing_folder",
        )
    site = site if isinstance(site, Site) else load_site(site if site is not None else "synthetic-hospital")
    model = model or load_model()
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    jobs = list(site.raw_tables())
    total = len(jobs) + len(site.maps)
    done = 0
    target = Workspace(Path(workspace)).stage("staging")
    quarantine = Quarantine()
    lineage = stage_lineage(Path(workspace), "staging", specs={"site_mapping": site})
    with replace_folder(target, lineage=lineage) as tmp:
        # Two tables at a time: Arrow's kernels release the GIL, so the second core works while the first
        # parses. The largest exports start first; results are taken in site order, so the output does not
        # depend on which table finished first.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            order = sorted(range(len(jobs)), key=lambda i: -_export_bytes(exports, jobs[i][1]))
            phase1 = tmp / PHASE1_FOLDER
            phase1.mkdir()
            futures = {i: pool.submit(_stage_raw_table, exports, *jobs[i], phase1) for i in order}
            raw: list[RawStaged] = []
            for i in range(len(jobs)):
                raw.append(futures[i].result())
                done += 1
                if progress is not None:
                    progress(done, total)
        files, tables, problems = _phase1_report(raw, quarantine)

        def mapped(_: int) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total)

        sources = {f"{r.system}.{r.spec.name}": (r.path, r.rows) for r in raw}
        # A table's rows are in file and row order when its files were read in the order of their names.
        ordered = {
            f"{r.system}.{r.spec.name}"
            for r in raw
            if [f.relative for f in r.results] == sorted(f.relative for f in r.results)
        }
        outcome = run_maps(site, model, sources, quarantine, tmp, phase1, mapped, ordered, workers)
        shutil.rmtree(phase1)
        pq.write_table(quarantine.to_table(), tmp / "quarantine.parquet", compression="zstd")
        rules: Counter[str] = Counter()
        for f in files:
            rules.update(f.rules)
        for m in outcome.maps:
            rules.update(m.rules)
        report = StagingReport(
            site=site.site,
            staging=target,
            files=files,
            tables=tables,
            maps=outcome.maps,
            canonical=outcome.canonical,
            rules=dict(sorted(rules.items())),
            problems=problems,
        )
        declarations = site.declarations().model_dump(mode="json")
        (tmp / "site.json").write_text(
            json.dumps(declarations, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        (tmp / "manifest.json").write_text(report.manifest_json(), encoding="utf-8")
    refresh_catalog(Path(workspace))
    return report


def _phase1_report(
    raw: list[RawStaged], quarantine: Quarantine
) -> tuple[list[FileReport], list[TableReport], list[Problem]]:
    files: list[FileReport] = []
    tables: list[TableReport] = []
    problems: list[Problem] = []
    for r in raw:
        quarantine.extend(r.quarantine)
        table_files = [
            FileReport(
                system=r.system,
                table=r.spec.name,
                file=f.relative,
                rows_read=f.rows_read,
                staged=f.staged_rows,
                quarantined=f.quarantined,
                failed=f.failed,
                rules=dict(sorted(f.rules.items())),
                date_formats={c: dict(x) for c, x in sorted(f.date_formats.items()) if len(x) > 1},
            )
            for f in r.results
            if f.raw is not None or f.failed or f.rows_read
        ]
        for f in r.results:
            problems.extend(f.problems)
        files.extend(table_files)
        tables.append(
            TableReport(
                system=r.system,
                table=r.spec.name,
                files=len(table_files),
                rows_read=sum(f.rows_read for f in table_files),
                staged=sum(f.staged for f in table_files),
                quarantined=sum(f.quarantined for f in table_files),
            )
        )
    return files, tables, problems


def _export_bytes(exports: Path, table: TableSpec) -> int:
    return sum(p.stat().st_size for p in resolve_export_files(exports, table.files) if p.is_file())


def _stage_raw_table(exports: Path, system: str, table: TableSpec, folder: Path) -> RawStaged:
    paths = resolve_export_files(exports, table.files)
    if paths and all(pieceable(p, table) for p in paths):
        try:
            return _stage_streamed(exports, system, table, folder, paths)
        except PieceFallback:
            pass  # a piece the fast path cannot prove: the whole table is read again, file by file
    quarantine = Quarantine()
    results: list[_FileResult] = []
    problems: list[Problem] = []
    if not paths:
        problems.append(
            Problem.from_error(
                InputError(
                    f"no export file matches {table.files!r} for table {system}.{table.name}; "
                    "the table is staged empty",
                    file=table.files,
                    rule="missing_file",
                )
            )
        )
    for path in paths:
        relative = path.relative_to(exports).as_posix()
        results.append(_stage_file(path, relative, system, table, quarantine))
    staged = _concat(table, results)
    staged = _drop_duplicates(staged, system, table, results, quarantine)
    for r in results:  # keep the counts, free the rows
        r.rows_read = r.raw.rows_read if r.raw is not None else 0
        r.raw = None
        r.staged = None
    if results:
        results[0].problems[:0] = problems
    else:
        # A table without files still reports its problem, on a pseudo file entry of zero rows.
        results.append(_FileResult(relative=table.files, raw=None, problems=problems))
    path = folder / f"{system}.{table.name}.parquet"
    pq.write_table(staged, path, compression="lz4")
    return RawStaged(system, table, path, staged.num_rows, results, quarantine)


def _stage_streamed(
    exports: Path, system: str, table: TableSpec, folder: Path, paths: list[Path]
) -> RawStaged:
    """A raw table whose files are all large CSV files, staged piece by piece (`read_pieces`) so that memory
    holds one piece at a time: the same rows, quarantine entries and counts as reading each file whole.

    The pieces' staged rows go to a scratch Parquet file with their position; the repeated keys are then
    found by an aggregation in DuckDB (which spills beyond its memory limit), the raw rows of the few
    involved are read again from their pieces, and the table is written without the repeated rows.

    Raises:
        PieceFallback: a piece needs the whole-file reader; nothing of the table is kept.
    """
    quarantine = Quarantine()
    results: list[_FileResult] = []
    pieces_of: list[list[Piece]] = []
    scratch = folder / f"{system}.{table.name}.pieces.parquet"
    columns = pa.unify_schemas([schema(table), RAW_LINEAGE])
    position = 0
    try:
        with pq.ParquetWriter(scratch, columns.append(_POSITION), compression="lz4") as writer:
            for path in paths:
                relative = path.relative_to(exports).as_posix()
                result = _FileResult(relative=relative, raw=None)
                pieces: list[Piece] = []
                try:
                    for k, raw in enumerate(read_pieces(path, relative, table, pieces)):
                        part = _stage_file(path, relative, system, table, quarantine, raw)
                        _merge_piece(result, part, raw.rows_read, first=k == 0)
                        if part.staged is not None and part.staged_rows:
                            n = part.staged_rows
                            numbers = pa.array(np.arange(position, position + n, dtype=np.int64))
                            writer.write_table(part.staged.append_column(_POSITION, numbers))
                            position += n
                except InputError as exc:
                    if pieces:  # cannot happen once a piece is in (the header is read first); be safe
                        raise PieceFallback from exc
                    result = _failed_file(relative, system, table, exc, quarantine)
                except OSError as exc:
                    raise PieceFallback from exc
                results.append(result)
                pieces_of.append(pieces)
        staged = _streamed_duplicates(scratch, system, table, paths, results, pieces_of, quarantine)
        path = folder / f"{system}.{table.name}.parquet"
        rows = 0
        with pq.ParquetWriter(path, columns, compression="lz4") as writer:
            source = pq.ParquetFile(scratch)
            for batch in source.iter_batches(batch_size=_WRITE_ROWS):
                chunk = pa.Table.from_batches([batch])
                if len(staged):
                    keep = ~np.isin(chunk.column(_POSITION.name).to_numpy(), staged)
                    chunk = chunk.filter(pa.array(keep))
                # Parquet keeps timestamps in milliseconds at least: back to the staged types.
                chunk = chunk.drop_columns([_POSITION.name]).cast(columns)
                writer.write_table(chunk)
                rows += chunk.num_rows
    finally:
        scratch.unlink(missing_ok=True)
    for r in results:
        r.raw = None
        r.staged = None
    return RawStaged(system, table, path, rows, results, quarantine)


#: The position of a staged row in its table (a streamed table's scratch file only).
_POSITION = pa.field("_position", pa.int64())
#: Rows per batch when a streamed table's scratch file is copied into its phase-1 file.
_WRITE_ROWS = 1 << 20


def _merge_piece(result: _FileResult, part: _FileResult, rows_read: int, first: bool) -> None:
    """Add one piece's counts to its file's: the file-level problems (a missing column) come with every
    piece, so they are taken from the first only."""
    result.rows_read += rows_read
    result.staged_rows += part.staged_rows
    result.quarantined += part.quarantined
    result.rules.update(part.rules)
    result.failed = result.failed or part.failed
    if first:
        result.problems.extend(part.problems)
    for column, used in part.date_formats.items():
        merged = result.date_formats.setdefault(column, {})
        for fmt, count in used.items():
            merged[fmt] = merged.get(fmt, 0) + count


def _streamed_duplicates(
    scratch: Path,
    system: str,
    table: TableSpec,
    paths: list[Path],
    results: list[_FileResult],
    pieces_of: list[list[Piece]],
    quarantine: Quarantine,
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Quarantine the repeated keys of a streamed table as `_drop_duplicates` does (the first row of a key
    is kept); return the positions of the rows to drop."""
    keys = ", ".join(f'"{name}"' for name in table.primary_key)
    con = duckdb.connect(
        config={"memory_limit": _DEDUPLICATE_MEMORY, "temp_directory": str(scratch) + ".spill"}
    )
    try:
        con.execute("SET enable_progress_bar = false")
        con.register("pieces", ds.dataset(scratch, format="parquet"))
        con.execute("SET enable_external_access = false")
        pairs = con.sql(
            f"WITH g AS (SELECT {keys}, min(_position) AS _first FROM pieces GROUP BY ALL "
            "HAVING count(*) > 1) "
            f"SELECT p._position, g._first FROM pieces AS p JOIN g USING ({keys}) "
            "WHERE p._position <> g._first ORDER BY p._position"
        ).to_arrow_table()
    finally:
        con.close()
    if not pairs.num_rows:
        return np.zeros(0, dtype=np.int64)
    dropped = pairs.column("_position").to_numpy()
    firsts = pairs.column("_first").to_numpy()
    wanted = np.unique(np.concatenate([dropped, firsts]))
    rows = ds.dataset(scratch, format="parquet").take(
        pa.array(wanted), columns=["_source_file", "_source_row", "_key"]
    )
    index = {r.relative: i for i, r in enumerate(results)}
    where: dict[int, tuple[int, int, str]] = {}
    for pos, file, row, key in zip(
        wanted.tolist(),
        rows.column("_source_file").to_pylist(),
        rows.column("_source_row").to_pylist(),
        rows.column("_key").to_pylist(),
        strict=True,
    ):
        where[pos] = (index[file], row, key)
    texts: dict[tuple[int, int], str] = {}
    for f in sorted({w[0] for w in where.values()}):
        needed = [w[1] for w in where.values() if w[0] == f]
        for row, text in read_rows(paths[f], table, pieces_of[f], needed).items():
            texts[(f, row)] = text
    key_text = ", ".join(table.primary_key)
    for pos, first_pos in zip(dropped.tolist(), firsts.tolist(), strict=True):
        f, row, raw_key = where[pos]
        g, first_row, _ = where[first_pos]
        owner, first = results[f], results[g]
        raw = texts[(f, row)]
        place = f"row {first_row}" + ("" if first is owner else f" of {first.relative}")
        rule, error = _repeated_key(raw == texts[(g, first_row)], place, key_text, owner.relative, row)
        quarantine.add(system, table.name, error, raw, raw_key)
        owner.rules[rule] += 1
        owner.quarantined += 1
        owner.staged_rows -= 1
    result: np.ndarray[Any, np.dtype[np.int64]] = dropped.astype(np.int64)
    return result


#: DuckDB's memory while a streamed table's repeated keys are counted; beyond it, it spills.
_DEDUPLICATE_MEMORY = "1GB"


def _failed_file(
    relative: str, system: str, table: TableSpec, error: InputError, quarantine: Quarantine
) -> _FileResult:
    """A file that could not be read at all: one quarantine entry without a row, and a problem."""
    result = _FileResult(relative=relative, raw=None, failed=True)
    result.problems.append(Problem.from_error(error))
    quarantine.add(system, table.name, error, None, None)
    result.rules[error.rule or "unreadable_file"] += 1
    return result


def _raw_keys(raw: pa.Table, table: TableSpec) -> pa.Array | None:
    """The raw text of each row's key (fields joined by `KEY_SEPARATOR`), or None if a source is absent."""
    parts = []
    for name in table.primary_key:
        column = table.column(name)
        if any(s not in raw.column_names for s in column.sources):
            return None
        sources = [pc.fill_null(raw.column(s).combine_chunks(), "") for s in column.sources]
        parts.append(
            sources[0] if len(sources) == 1 else pc.binary_join_element_wise(*sources, column.separator)
        )
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, KEY_SEPARATOR)


def _stage_file(
    path: Path,
    relative: str,
    system: str,
    table: TableSpec,
    quarantine: Quarantine,
    piece: RawFile | None = None,
) -> _FileResult:
    """Stage one file (or ``piece``, one piece of it already read by `read_pieces`)."""
    try:
        raw = piece if piece is not None else read_file(path, relative, table)
    except InputError as exc:
        return _failed_file(relative, system, table, exc, quarantine)
    except OSError as exc:
        failure = InputError(f"cannot read the file: {exc.strerror}", file=relative, rule="unreadable_file")
        return _failed_file(relative, system, table, failure, quarantine)
    result = _FileResult(relative=relative, raw=raw)
    if raw.unreadable is not None:
        # Nothing in the file decoded (another encoding than declared): every line is quarantined below with
        # its bytes, and the file counts as failed like one that cannot be opened: ingest exits non-zero.
        result.failed = True
        result.problems.append(Problem.from_error(raw.unreadable))
    for note in raw.notes:
        result.problems.append(Problem.from_error(InputError(note, file=relative, rule="encoding")))
    for reject in raw.rejects:
        rejected = InputError(
            reject.reason, file=relative, row=reject.row, field=reject.field, rule=reject.rule
        )
        quarantine.add(system, table.name, rejected, reject.raw, None)
        result.rules[reject.rule] += 1
        result.quarantined += 1
    keys = _raw_keys(raw.columns, table)
    missing = [s for c in table.columns for s in c.sources if s not in raw.columns.column_names]
    missing = list(dict.fromkeys(missing))
    if missing:
        message = (
            f"the file lacks the column(s) {', '.join(missing)} that the site mapping reads for "
            f"{system}.{table.name}; all its rows are quarantined; re-export with the expected columns or "
            "update the site mapping"
        )
        result.problems.append(
            Problem.from_error(InputError(message, file=relative, field=missing[0], rule="missing_column"))
        )
        rows = raw.rows.to_pylist()
        key_list = keys.to_pylist() if keys is not None else [None] * len(rows)
        for index, row in enumerate(rows):
            error = InputError(message, file=relative, row=row, field=missing[0], rule="missing_column")
            quarantine.add(system, table.name, error, result.raw_row(index), key_list[index])
        result.rules["missing_column"] += len(rows)
        result.quarantined += len(rows)
        return result
    assert keys is not None
    converted = convert(raw.columns, table)
    result.date_formats = converted.date_formats
    ok = pc.is_null(converted.failure)
    ok_numpy = ok.to_numpy(zero_copy_only=False)
    bad_index = np.flatnonzero(~ok_numpy)
    if len(bad_index):
        _quarantine_failures(result, system, table, converted, bad_index, keys, quarantine)
    keep = np.flatnonzero(ok_numpy)
    result.raw_index = keep.astype(np.int64)
    filtered = len(bad_index) > 0
    staged = converted.table.filter(ok) if filtered else converted.table
    n = staged.num_rows
    staged = staged.append_column(RAW_LINEAGE.field(0), pa.array([relative] * n, type=pa.string()))
    staged = staged.append_column(RAW_LINEAGE.field(1), pc.filter(raw.rows, ok) if filtered else raw.rows)
    staged = staged.append_column(RAW_LINEAGE.field(2), pc.filter(keys, ok) if filtered else keys)
    result.staged = staged
    result.staged_rows = n
    return result


def _quarantine_failures(
    result: _FileResult,
    system: str,
    table: TableSpec,
    converted: Converted,
    bad_index: np.ndarray[Any, Any],
    keys: pa.Array,
    quarantine: Quarantine,
) -> None:
    assert result.raw is not None
    taken = pa.array(bad_index)
    codes = converted.failure.take(taken).to_pylist()
    rows = result.raw.rows.take(taken).to_pylist()
    key_list = keys.take(taken).to_pylist()
    for index, code, row, key in zip(bad_index.tolist(), codes, rows, key_list, strict=True):
        failure = converted.failures[code]
        error = InputError(
            f"{failure.column.name}: {failure.message}",
            file=result.relative,
            row=row,
            field=failure.column.field,
            rule=failure.rule,
        )
        quarantine.add(system, table.name, error, result.raw_row(index), key)
        result.rules[failure.rule] += 1
        result.quarantined += 1


def _concat(table: TableSpec, results: list[_FileResult]) -> pa.Table:
    parts = [r.staged for r in results if r.staged is not None]
    if not parts:
        return pa.unify_schemas([schema(table), RAW_LINEAGE]).empty_table()
    return pa.concat_tables(parts).combine_chunks()


def _drop_duplicates(
    staged: pa.Table, system: str, table: TableSpec, results: list[_FileResult], quarantine: Quarantine
) -> pa.Table:
    """Keep the first row of each key; quarantine the others (``duplicate_key`` when the whole raw row
    repeats, as when an interface re-sends a record, ``conflicting_key`` when it differs)."""
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

    def locate(rows: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """Per staged row: the position of its file in ``owners`` and its index in that file's raw rows."""
        position = np.searchsorted(offsets, rows, side="right") - 1
        index = np.empty(len(rows), dtype=np.int64)
        for p in np.unique(position).tolist():
            owner, start = owners[p]
            assert owner.raw_index is not None
            here = position == p
            index[here] = owner.raw_index[rows[here] - start]
        return position, index

    # The raw text and row number of every row involved, fetched per file in one go (a row at a time,
    # Arrow's per-call cost dominated a table of millions of rows with thousands of duplicates).
    dup_rows = pairs.column("_i").to_numpy()
    first_rows = pairs.column("_i_min").to_numpy()
    dup_owner, dup_index = locate(dup_rows)
    first_owner, first_index = locate(first_rows)
    texts: dict[tuple[int, int], str] = {}
    numbers: dict[tuple[int, int], int] = {}
    for p in np.unique(np.concatenate([dup_owner, first_owner])).tolist():
        owner = owners[p][0]
        assert owner.raw is not None
        wanted = np.unique(np.concatenate([dup_index[dup_owner == p], first_index[first_owner == p]]))
        taken = pa.array(wanted)
        for index, row in zip(wanted.tolist(), owner.raw.rows.take(taken).to_pylist(), strict=True):
            numbers[(p, index)] = row
        if owner.raw.lines is not None:
            for index in wanted.tolist():
                texts[(p, index)] = owner.raw.lines[index]
        else:
            values = owner.raw.columns.take(taken).to_pylist()
            for index, value in zip(wanted.tolist(), values, strict=True):
                texts[(p, index)] = json.dumps(value, ensure_ascii=False)
    key_text = ", ".join(table.primary_key)
    raw_keys = staged.column("_key").take(pa.array(dup_rows)).to_pylist()
    for d_owner, d_index, f_owner, f_index, raw_key in zip(
        dup_owner.tolist(),
        dup_index.tolist(),
        first_owner.tolist(),
        first_index.tolist(),
        raw_keys,
        strict=True,
    ):
        owner, first = owners[d_owner][0], owners[f_owner][0]
        raw = texts[(d_owner, d_index)]
        first_row = numbers[(f_owner, f_index)]
        where = f"row {first_row}" + ("" if first is owner else f" of {first.relative}")
        rule, error = _repeated_key(
            raw == texts[(f_owner, f_index)], where, key_text, owner.relative, numbers[(d_owner, d_index)]
        )
        quarantine.add(system, table.name, error, raw, raw_key)
        owner.rules[rule] += 1
        owner.quarantined += 1
    deduplicated = staged.filter(pa.array(keep))
    for r, start in owners:
        r.staged_rows = int(keep[start : start + r.staged_rows].sum())
    return deduplicated


def _repeated_key(exact_copy: bool, place: str, key_text: str, file: str, row: int) -> tuple[str, InputError]:
    """The rule and quarantine reason of a row whose key repeats an earlier row's (at ``place``): an exact
    copy, or the same key with other values. The first row is kept either way."""
    if exact_copy:
        rule, message = "duplicate_key", f"an exact copy of {place} (key {key_text}); the first is kept"
    else:
        rule, message = (
            "conflicting_key",
            f"the key ({key_text}) repeats {place} with other values; the first is kept",
        )
    return rule, InputError(message, file=file, row=row, field=key_text, rule=rule)


__all__ = ["QUARANTINE", "RAW_LINEAGE", "RawStaged", "stage_site"]
