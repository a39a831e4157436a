"""Phase 2 of staging: evaluate a site's maps with DuckDB over the phase-1 tables into canonical tables.

Each map becomes one SQL query over its raw table (alias ``t``) LEFT JOINed to its lookups (each on the
lookup table's whole key, so a join never multiplies rows): one SELECT per unpivot slot, combined with
UNION ALL. Per output row the query says whether the slot is empty (``skip_if_null``), whether the row is
excluded (``where``; a condition that is NULL excludes), the mapped value of every column, the value cast
to the model's type (TRY_CAST) and the first check it breaks, in model column order: ``bad_type`` (a
value the type cannot hold), ``required`` (a required column left empty), ``bad_value`` (a value outside
the column's values). Rows breaking one are quarantined with the canonical column as the field; the rest
are written. A (system, record_key) that repeats in a canonical table keeps its first row (map order, then
file and row) and quarantines the others as ``duplicate_record_key``.

Memory stays flat as a site grows: results stream from DuckDB in batches (its sort spills to the scratch
folder beyond `ENGINE_MEMORY`), a map's written rows move to a Parquet part file once they pass
`_SPILL_BYTES`, and a canonical table is assembled from its parts, the repeated keys found by an
aggregation, so no table is ever sorted or held twice.

The SQL text holds only names the site mapping's load-time checks admitted (snake_case fields, aliases and
model columns) and the mapping's own expressions, parsed and re-printed by sqlglot; no value from the data
and no path is ever interpolated, and the connection has external access switched off, so an expression
cannot read a file.

This module handles identifiable rows; quarantine entries keep the mapped row, messages never hold values.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import sqlglot
from sqlglot import exp

from medspace.core import InputError
from medspace.sources._model import HospitalModel, ModelTable
from medspace.sources._report import CanonicalReport, MapReport
from medspace.sources._site import BASE_ALIAS, MapSpec, Site, qualified

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
        pa.field("key", pa.string()),
    ]
)

_BATCH_ROWS = 1 << 17
#: Rows per row group of a canonical table's Parquet file.
_ROW_GROUP = 1 << 20
#: A map's written rows beyond this size move from memory to a Parquet file in the scratch folder.
_SPILL_BYTES = 64 << 20
#: DuckDB's memory while maps run; beyond it, its sorts spill to the scratch folder.
ENGINE_MEMORY = "1GB"
#: Columns of a map's part file beyond the canonical ones: the map, the row's order within it, its raw key.
_PART_COLUMNS = [
    pa.field("_map", pa.int64()),
    pa.field("_key", pa.string()),
    pa.field("_seq", pa.int64()),
]

_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}


@dataclass
class Quarantine:
    """Quarantine entries, collected column-wise in the order they are found."""

    columns: dict[str, list[Any]] = field(default_factory=lambda: {name: [] for name in QUARANTINE.names})

    def add(self, system: str, table: str, error: InputError, raw: str | None, key: str | None) -> None:
        values = (
            system,
            table,
            error.file or "",
            error.row,
            error.field,
            error.rule or "",
            str(error),
            raw,
            key,
        )
        for name, value in zip(QUARANTINE.names, values, strict=True):
            self.columns[name].append(value)

    def extend(self, other: Quarantine) -> None:
        for name in QUARANTINE.names:
            self.columns[name].extend(other.columns[name])

    def __len__(self) -> int:
        return len(self.columns["system"])

    def to_table(self) -> pa.Table:
        return pa.table(self.columns, schema=QUARANTINE)


@dataclass
class MapOutcome:
    """The per-map and per-canonical-table counts (the tables themselves are handed to ``write``)."""

    maps: list[MapReport]
    canonical: list[CanonicalReport]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _slot_select(
    mapping: MapSpec, slot: int | None, view: str, lookup_views: dict[str, str], joined: bool = True
) -> str:
    aliases = {lookup.alias for lookup in mapping.lookups}

    def sql(text: str) -> str:
        return qualified(mapping.expression(text, slot), aliases)

    empty = f"({sql(mapping.skip_if_null)}) IS NULL" if mapping.skip_if_null else "FALSE"
    excluded = f"NOT coalesce(({sql(mapping.where)}), FALSE)" if mapping.where else "FALSE"
    columns = ", ".join(f'({sql(text)}) AS "m__{name}"' for name, text in mapping.columns.items())
    joins = "".join(
        f' LEFT JOIN "{lookup_views[lookup.table]}" AS "{lookup.alias}" ON '
        + " AND ".join(
            f'{BASE_ALIAS}."{mine}" = "{lookup.alias}"."{theirs}"' for mine, theirs in lookup.on.items()
        )
        for lookup in mapping.lookups
        if joined
    )
    return (
        f"SELECT {slot if slot is not None else 0} AS _slot, {BASE_ALIAS}._source_file, "
        f"{BASE_ALIAS}._source_row, {BASE_ALIAS}._key, {empty} AS _empty, {excluded} AS _excluded, {columns} "
        f'FROM "{view}" AS {BASE_ALIAS}{joins}'
    )


def map_sql(mapping: MapSpec, table: ModelTable, views: dict[str, str], joined: bool = True) -> str:
    """The DuckDB query of one map (``views``: raw table ``system.table`` -> registered view name).

    With ``joined`` false the lookups are not joined: the raw table's view already holds each lookup's
    matching row as a struct column named by its alias (`_LookupJoin`), in file and row order, so the
    query needs neither a join nor a sort.
    """
    union = " UNION ALL ".join(
        _slot_select(mapping, slot, views[mapping.source], views, joined) for slot in mapping.slots
    )
    casts = ", ".join(
        f'TRY_CAST("m__{name}" AS {_DUCKDB_TYPES[table.columns[name].type]}) AS "{name}"'
        for name in mapping.columns
    )
    checks: list[str] = []
    for name, column in table.columns.items():
        if name in mapping.columns:
            checks.append(f"""WHEN "m__{name}" IS NOT NULL AND "{name}" IS NULL THEN 'bad_type:{name}'""")
        if column.required:
            checks.append(f"""WHEN "{name}" IS NULL THEN 'required:{name}'""")
        if column.values is not None and name in mapping.columns:
            values = ", ".join(_literal(v) for v in column.values)
            checks.append(f"""WHEN "{name}" NOT IN ({values}) THEN 'bad_value:{name}'""")
    failure = f"CASE {' '.join(checks)} END" if checks else "NULL"
    raw_columns = ", ".join(f'"m__{name}"' for name in mapping.columns)
    typed = ", ".join(f'"{name}"' for name in mapping.columns)
    # DuckDB keeps the row order of one table through SELECT, WHERE and UNION ALL (its documented order
    # preservation), so a map without lookups comes out in file and row order, slot by slot, without a
    # sort; a JOIN does not keep it, so a map with lookups is sorted (the sort spills beyond its memory).
    order = " ORDER BY _source_file, _source_row, _slot" if mapping.lookups and joined else ""
    # The mapped values before the cast are kept, as one JSON text, only for quarantined rows (their
    # quarantine entry): one mostly-null column rather than one per mapped column through the sort.
    packed = ", ".join(f'"{name}" := "m__{name}"' for name in mapping.columns)
    kept_raw = f"CASE WHEN _failure IS NOT NULL THEN to_json(struct_pack({packed}))::VARCHAR END AS _mapped"
    return (
        f"SELECT _slot, _source_file, _source_row, _key, _empty, _excluded, {typed}, _failure, {kept_raw} "
        f"FROM (SELECT *, {failure} AS _failure FROM ("
        f"SELECT _slot, _source_file, _source_row, _key, _empty, _excluded, {raw_columns}, {casts} "
        f"FROM ({union}))){order}"
    )


_MESSAGES = {
    "bad_type": "the mapped value cannot be read as the model's {type}",
    "required": "the model requires a value and the map gives none",
    "bad_value": "the mapped value is not one of the column's values ({values})",
}


def run_maps(
    site: Site,
    model: HospitalModel,
    raw: dict[str, tuple[Path, int]],
    quarantine: Quarantine,
    out: Path,
    scratch: Path,
    on_map: Callable[[int], None] | None = None,
    ordered: set[str] | None = None,
    workers: int = 2,
) -> MapOutcome:
    """Evaluate every map of ``site`` over the phase-1 tables ``raw`` (``system.table`` -> Parquet file and
    row count) and write every canonical table of the model to ``out/<table>.parquet``.

    Memory stays flat as the site grows: DuckDB streams each map's rows batch by batch (its sort spills to
    ``scratch`` beyond `ENGINE_MEMORY`), each batch goes to a Parquet part file in ``scratch``, and a
    canonical table is assembled from its parts once its last map has run, dropping the repeated
    (system, record_key) rows an aggregation found.

    ``ordered`` names the raw tables whose Parquet rows are in file and row order (their files listed in
    the order of their names): a one-slot map over one of them joins its lookups batch by batch in Arrow
    (`_LookupJoin`), which keeps that order without the sort a SQL join would need.

    Raises:
        InputError: a map's expression fails in the engine (for example a CAST of text that is not a
            number; use TRY_CAST).
    """
    last_map: dict[str, int] = {name: -1 for name in model.tables}
    for index, mapping in enumerate(site.maps):
        last_map[mapping.to] = index
    spill = scratch / "spill"
    spill.mkdir(exist_ok=True)
    # Settings as a config mapping, not SQL text: the workspace path may hold any character.
    con = duckdb.connect(config={"temp_directory": str(spill), "memory_limit": ENGINE_MEMORY})
    con.execute("SET enable_progress_bar = false")
    views = {name: f"raw_{i}" for i, name in enumerate(raw)}
    con.execute("SET enable_external_access = false")
    local = threading.local()
    cursors: list[duckdb.DuckDBPyConnection] = []
    lock = threading.Lock()

    def cursor() -> duckdb.DuckDBPyConnection:
        """This thread's connection to the engine, with every raw table registered (views are local to
        a connection)."""
        if not hasattr(local, "cursor"):
            local.cursor = con.cursor()
            for name, (path, _) in raw.items():
                # An Arrow dataset is scanned by Arrow, so DuckDB's own file access stays switched off.
                local.cursor.register(views[name], ds.dataset(path, format="parquet"))
            with lock:
                cursors.append(local.cursor)
        mine: duckdb.DuckDBPyConnection = local.cursor
        return mine

    def evaluate(index: int, mapping: MapSpec) -> tuple[_Part, dict[str, Any], Quarantine]:
        table = model.tables[mapping.to]
        part = _Part(index, scratch / f"map_{index}.arrow", _part_schema(table))
        found = Quarantine()
        join = _LookupJoin.plan(mapping, raw, ordered or set())
        report = _run_map(cursor(), mapping, index, table, views, part, found, join)
        return part, report, found

    parts: dict[str, list[_Part]] = {name: [] for name in model.tables}
    reports: list[dict[str, Any]] = []
    rows: dict[str, int] = {}
    # Maps run `workers` at a time, each on its own connection, while this thread takes their results in
    # map order (quarantine entries, then the canonical table once its last map is in), so the output
    # does not depend on which map finished first. At most `workers` maps run ahead of the one taken.
    pool = ThreadPoolExecutor(max_workers=workers)
    pending: dict[int, Future[tuple[_Part, dict[str, Any], Quarantine]]] = {}
    try:
        for index, mapping in enumerate(site.maps):
            for ahead in range(index, min(index + workers + 1, len(site.maps))):
                if ahead not in pending:
                    pending[ahead] = pool.submit(evaluate, ahead, site.maps[ahead])
            part, report, found = pending.pop(index).result()
            quarantine.extend(found)
            parts[mapping.to].append(part)
            reports.append({**report, "rows": raw[mapping.source][1]})
            if last_map[mapping.to] == index:
                table = model.tables[mapping.to]
                rows[mapping.to] = _assemble(
                    con, mapping.to, table.arrow_schema(), parts.pop(mapping.to), reports, quarantine, out
                )
            if on_map is not None:
                on_map(index)
    finally:
        for future in pending.values():
            future.cancel()
        pool.shutdown(wait=True)
        for c in cursors:
            c.close()
        con.close()
    canonical: list[CanonicalReport] = []
    for name, table in model.tables.items():
        if name not in rows:
            pq.write_table(table.arrow_schema().empty_table(), out / f"{name}.parquet", compression="zstd")
        feeding = [i for i, m in enumerate(site.maps) if m.to == name]
        canonical.append(
            CanonicalReport(table=name, path=f"staging/{name}.parquet", rows=rows.get(name, 0), maps=feeding)
        )
    maps = [
        MapReport(
            index=i,
            source=m.source,
            to=m.to,
            rows=r["rows"],
            slots=len(m.slots),
            written=r["written"],
            quarantined=r["quarantined"],
            excluded=r["excluded"],
            empty_slots=r["empty_slots"],
            excluded_because=m.excluded_because,
            rules=dict(sorted(r["rules"].items())),
        )
        for i, (m, r) in enumerate(zip(site.maps, reports, strict=True))
    ]
    return MapOutcome(maps, canonical)


class _Part:
    """One map's written rows: kept in memory while small, moved to an Arrow IPC file (LZ4) in the scratch
    folder once they pass `_SPILL_BYTES` (a hospital's lab results would not fit twice in memory). IPC,
    not Parquet: the part is read back once, and Parquet's encoding cost more than the map itself."""

    def __init__(self, index: int, path: Path, schema: pa.Schema) -> None:
        self.index = index
        self.path = path
        self.schema = schema
        self.tables: list[pa.Table] = []
        self.bytes = 0
        self.writer: pa.ipc.RecordBatchFileWriter | None = None
        self.spilled = False

    def write(self, table: pa.Table) -> None:
        if self.writer is not None:
            self.writer.write_table(table)
            return
        self.tables.append(table)
        self.bytes += table.nbytes
        if self.bytes > _SPILL_BYTES:
            options = pa.ipc.IpcWriteOptions(compression="lz4")
            self.writer = pa.ipc.new_file(self.path, self.schema, options=options)
            self.spilled = True
            for kept in self.tables:
                self.writer.write_table(kept)
            self.tables = []

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def source(self) -> pa.Table | ds.Dataset:
        """What DuckDB scans (it reads only the columns a query needs)."""
        if self.spilled:
            return ds.dataset(self.path, format="ipc")
        return pa.concat_tables(self.tables) if self.tables else self.schema.empty_table()

    def take(self, rows: list[int]) -> pa.Table:
        """The rows at these positions (a row's position is its ``_seq``)."""
        return self.source().take(pa.array(rows, pa.int64()))

    def batches(self) -> Iterator[pa.Table]:
        if self.spilled:
            with pa.OSFile(str(self.path)) as f:
                reader = pa.ipc.open_file(f)
                for i in range(reader.num_record_batches):
                    yield pa.Table.from_batches([reader.get_batch(i)])
            self.path.unlink()
        else:
            yield from self.tables
        self.tables = []


def _run_map(
    con: duckdb.DuckDBPyConnection,
    mapping: MapSpec,
    index: int,
    table: ModelTable,
    views: dict[str, str],
    part: _Part,
    quarantine: Quarantine,
    join: _LookupJoin | None = None,
) -> dict[str, Any]:
    """One map, batch by batch into ``part`` (canonical columns plus `_PART_COLUMNS`)."""
    report: dict[str, Any] = {"written": 0, "quarantined": 0, "excluded": 0, "empty_slots": 0}
    report["rules"] = Counter()

    def results() -> Iterator[pa.RecordBatch]:
        if join is None:
            yield from con.sql(map_sql(mapping, table, views)).to_arrow_reader(_BATCH_ROWS)
            return
        sql = map_sql(mapping, table, {**views, mapping.source: _JOINED_VIEW}, joined=False)
        for joined in join.batches():
            con.register(_JOINED_VIEW, joined)
            try:
                yield from con.sql(sql).to_arrow_reader(_BATCH_ROWS)
            finally:
                con.unregister(_JOINED_VIEW)

    try:
        for batch in results():
            written, counts = _split(mapping, index, table, pa.Table.from_batches([batch]), quarantine)
            seq = np.arange(report["written"], report["written"] + written.num_rows, dtype=np.int64)
            part.write(written.append_column("_seq", pa.array(seq)))
            for name, value in counts.items():
                report[name] += value
    except duckdb.Error as exc:
        # DuckDB's message may quote a value from the data; name the map and the error kind only.
        raise InputError(
            f"map {index} ({mapping.source} -> {mapping.to}) failed in the engine "
            f"({type(exc).__name__}); check its expressions (TRY_CAST instead of CAST for text that "
            "may not convert)",
            rule="map_error",
        ) from None
    finally:
        part.close()
    return report


#: The view a `_LookupJoin` batch is registered as.
_JOINED_VIEW = "joined_batch"
#: Key types an Arrow join compares exactly as DuckDB's ``=`` does.
_EXACT_KEY_TYPES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer, pa.types.is_date)
#: Rows of the source table matched against a lookup at once (`_LookupJoin.positions`).
_POSITION_ROWS = 1 << 22


class _LookupJoin:
    """A map's lookups joined in Arrow, batch by batch over its raw table: each batch gets, per lookup, a
    struct column named by the alias holding the lookup row that matches (null when none), which the
    map's ``alias.field`` expressions read as struct fields. The batches keep the raw table's row order,
    so the map's rows come out in file and row order without a sort. Each lookup keeps only its key and
    the fields the map reads in memory (a lookup table is unique on its key, so a row matches at most one)."""

    def __init__(self, source: Path, lookups: list[tuple[str, list[str], pa.Table, pa.Table]]) -> None:
        self.source = source
        #: Per lookup: alias, this table's key fields, the lookup's keys (``_k0``.. and row ``_j``), the
        #: lookup's fields the map reads.
        self.lookups = lookups

    @classmethod
    def plan(
        cls, mapping: MapSpec, raw: dict[str, tuple[Path, int]], ordered: set[str]
    ) -> _LookupJoin | None:
        """The Arrow join of ``mapping``'s lookups, or None when the SQL join must do (no lookups, several
        slots, rows not in file and row order, an alias that is also a field, or key types that Arrow
        and DuckDB might compare differently)."""
        if not mapping.lookups or len(mapping.slots) != 1 or mapping.source not in ordered:
            return None
        base = pq.read_schema(raw[mapping.source][0])
        reads = _lookup_fields(mapping)
        planned: list[tuple[str, list[str], list[str], list[str]]] = []
        for lookup in mapping.lookups:
            if lookup.alias in base.names or lookup.table not in raw:
                return None
            other = pq.read_schema(raw[lookup.table][0])
            mine, theirs = list(lookup.on), list(lookup.on.values())
            for a, b in zip(mine, theirs, strict=True):
                kind = base.field(a).type
                if kind != other.field(b).type or not any(exact(kind) for exact in _EXACT_KEY_TYPES):
                    return None
            fields = sorted(reads.get(lookup.alias, set()))
            if not fields or any(f not in other.names for f in fields):
                return None
            planned.append((lookup.alias, mine, theirs, fields))
        lookups = []
        for (alias, mine, theirs, fields), lookup in zip(planned, mapping.lookups, strict=True):
            table = pq.read_table(raw[lookup.table][0], columns=list(dict.fromkeys(theirs + fields)))
            keys = pa.table(
                {f"_k{i}": table.column(name) for i, name in enumerate(theirs)}
                | {"_j": pa.array(np.arange(table.num_rows, dtype=np.int64))}
            )
            lookups.append((alias, mine, keys, table.select(fields)))
        return cls(raw[mapping.source][0], lookups)

    def positions(self, mine: list[str], keys: pa.Table) -> np.ndarray[Any, np.dtype[np.int64]]:
        """For every row of the source table, the row of lookup ``keys`` it matches, -1 for none.

        Computed once for the whole table, in blocks of `_POSITION_ROWS` rows: the lookup's hash table is
        then built once per block rather than once per batch. A single key goes through ``index_in`` (a
        null key matches nothing, as with SQL's ``=``), several through a hash join.
        """
        found: list[np.ndarray[Any, np.dtype[np.int64]]] = []
        source = pq.ParquetFile(self.source)
        for block in source.iter_batches(batch_size=_POSITION_ROWS, columns=list(dict.fromkeys(mine))):
            n = block.num_rows
            if len(mine) == 1:
                index = pc.index_in(block.column(mine[0]), value_set=keys.column("_k0"))
                found.append(pc.fill_null(index, -1).to_numpy(zero_copy_only=False).astype(np.int64))
                continue
            left = pa.table(
                {f"_k{i}": block.column(name) for i, name in enumerate(mine)}
                | {"_i": pa.array(np.arange(n, dtype=np.int64))}
            )
            pairs = left.join(keys, keys=[f"_k{i}" for i in range(len(mine))], join_type="inner")
            position = np.full(n, -1, dtype=np.int64)
            position[pairs.column("_i").to_numpy()] = pairs.column("_j").to_numpy()
            found.append(position)
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    def batches(self) -> Iterator[pa.Table]:
        matches = [self.positions(mine, keys) for _, mine, keys, _ in self.lookups]
        start = 0
        for batch in pq.ParquetFile(self.source).iter_batches(batch_size=_BATCH_ROWS):
            joined = pa.Table.from_batches([batch])
            n = joined.num_rows
            for (alias, _, _, values), match in zip(self.lookups, matches, strict=True):
                position = match[start : start + n]
                missing = position < 0
                taken = values.take(pa.array(position, mask=missing))
                struct = pa.StructArray.from_arrays(
                    [c.combine_chunks() for c in taken.columns],
                    names=taken.column_names,
                    mask=pa.array(missing),
                )
                joined = joined.append_column(alias, struct)
            start += n
            yield joined


def _lookup_fields(mapping: MapSpec) -> dict[str, set[str]]:
    """Per lookup alias, the fields of the lookup table that the map's expressions read."""
    aliases = {lookup.alias for lookup in mapping.lookups}
    read: dict[str, set[str]] = {}
    texts = [*mapping.columns.values(), mapping.skip_if_null, mapping.where]
    for text in texts:
        if text is None:
            continue
        for slot in mapping.slots:
            tree = sqlglot.parse_one(mapping.expression(text, slot), read="duckdb")
            for column in tree.find_all(exp.Column):
                if column.table in aliases:
                    read.setdefault(column.table, set()).add(column.name)
    return read


def _part_schema(table: ModelTable) -> pa.Schema:
    return pa.schema([*table.arrow_schema(), *_PART_COLUMNS])


def _assemble(
    con: duckdb.DuckDBPyConnection,
    name: str,
    schema: pa.Schema,
    parts: list[_Part],
    reports: list[dict[str, Any]],
    quarantine: Quarantine,
    out: Path,
) -> int:
    """Write canonical table ``name`` from its maps' part files (in map order); a (system, record_key) that
    repeats keeps its first row (map, then file and row) and quarantines the others. Returns the rows."""
    for i, part in enumerate(parts):
        con.register(f"part_{i}", part.source())
    union = " UNION ALL ".join(
        f"SELECT system, record_key, _map, _seq FROM part_{i}" for i in range(len(parts))
    )
    # Only the repeated keys come back to Python, with where each row came from: few, and they name the rows
    # to drop, so the table itself streams from its parts without a sort. The query reads the key columns
    # only; the whole rows of the repeated keys are then taken from their parts by position.
    keys = con.sql(
        f"WITH parts AS ({union}) SELECT p._map, p._seq FROM parts AS p JOIN "
        "(SELECT system, record_key FROM parts GROUP BY ALL HAVING count(*) > 1) "
        "USING (system, record_key) ORDER BY p.system, p.record_key, p._map, p._seq"
    ).to_arrow_table()
    for i in range(len(parts)):
        con.unregister(f"part_{i}")
    by_map = {part.index: part for part in parts}
    wanted: dict[int, list[int]] = {}
    for m, seq in zip(keys.column("_map").to_pylist(), keys.column("_seq").to_pylist(), strict=True):
        wanted.setdefault(m, []).append(seq)
    fetched: dict[tuple[int, int], dict[str, Any]] = {}
    for m, seqs in wanted.items():
        for row in by_map[m].take(seqs).to_pylist():
            fetched[(row["_map"], row["_seq"])] = row
    repeated = [
        fetched[(m, seq)]
        for m, seq in zip(keys.column("_map").to_pylist(), keys.column("_seq").to_pylist(), strict=True)
    ]
    dropped: dict[int, set[int]] = {}
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for row in repeated:
        key = (row["system"], row["record_key"])
        if key not in first:
            first[key] = row
            continue
        origin = first[key]
        error = InputError(
            f"{name}.record_key repeats row {origin['_source_row']} of {origin['_source_file']} "
            f"(map {origin['_map']}) in system {row['system']}; the first is kept",
            file=row["_source_file"],
            row=row["_source_row"],
            field="record_key",
            rule="duplicate_record_key",
        )
        dropped.setdefault(row["_map"], set()).add(row["_seq"])
        values = {k: v for k, v in row.items() if not k.startswith("_") and k != "system"}
        raw = json.dumps(values, ensure_ascii=False, default=str)
        quarantine.add(row["system"], name, error, raw, row["_key"])
        report = reports[row["_map"]]
        report["written"] -= 1
        report["quarantined"] += 1
        report["rules"]["duplicate_record_key"] += 1
    written = 0
    with _RowGroupWriter(out / f"{name}.parquet", schema) as writer:
        for part in parts:
            drop = dropped.get(part.index, set())
            for chunk in part.batches():
                if drop:
                    keep = ~np.isin(chunk.column("_seq").to_numpy(), np.fromiter(drop, dtype=np.int64))
                    chunk = chunk.filter(pa.array(keep))
                writer.write(chunk.drop_columns([c.name for c in _PART_COLUMNS]))
                written += chunk.num_rows
    return written


class _RowGroupWriter:
    """A Parquet writer that cuts row groups at fixed row counts, whatever batches it is given, so the same
    rows always give the same bytes."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.writer = pq.ParquetWriter(path, schema, compression="zstd", write_statistics=True)
        self.buffer: list[pa.Table] = []
        self.buffered = 0

    def write(self, table: pa.Table) -> None:
        self.buffer.append(table)
        self.buffered += table.num_rows
        while self.buffered >= _ROW_GROUP:
            self._flush(_ROW_GROUP)

    def _flush(self, rows: int) -> None:
        table = pa.concat_tables(self.buffer)
        self.writer.write_table(table.slice(0, rows), row_group_size=rows)
        rest = table.slice(rows)
        self.buffer, self.buffered = [rest], rest.num_rows

    def __enter__(self) -> _RowGroupWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.buffered:
            self._flush(self.buffered)
        self.writer.close()


def _split(
    mapping: MapSpec, index: int, table: ModelTable, result: pa.Table, quarantine: Quarantine
) -> tuple[pa.Table, dict[str, Any]]:
    """Count and separate one map's output: written rows (model schema + lineage), quarantined ones."""
    empty = pc.fill_null(result.column("_empty"), False)
    excluded = pc.and_(pc.invert(empty), pc.fill_null(result.column("_excluded"), False))
    live = pc.and_(pc.invert(empty), pc.invert(excluded))
    failure = result.column("_failure")
    bad = pc.and_(live, pc.is_valid(failure))
    good = pc.and_(live, pc.is_null(failure))
    rules: Counter[str] = Counter()
    quarantined = int(pc.sum(bad).as_py() or 0)
    if quarantined:
        rejected = result.filter(bad)
        for row in rejected.select(
            ["_source_file", "_source_row", "_key", "_failure", "_mapped"]
        ).to_pylist():
            rule, column = str(row["_failure"]).split(":", 1)
            spec = table.columns[column]
            message = _MESSAGES[rule].format(type=spec.type, values=", ".join(spec.values or []))
            error = InputError(
                f"{mapping.to}.{column} (map {index}, from {mapping.source}): {message}",
                file=row["_source_file"],
                row=row["_source_row"],
                field=column,
                rule=rule,
            )
            quarantine.add(mapping.system, mapping.to, error, row["_mapped"], row["_key"])
            rules[rule] += 1
    kept = result.filter(good)
    n = kept.num_rows
    schema = table.arrow_schema()
    columns: list[pa.Array | pa.ChunkedArray] = []
    for name, spec in table.columns.items():
        target = schema.field(name).type
        if name in mapping.columns:
            # DuckDB gives microsecond timestamps; the model keeps seconds (sub-second parts are dropped).
            columns.append(pc.cast(kept.column(name), target, safe=spec.type != "timestamp"))
        else:
            columns.append(pa.nulls(n, target))
    columns += [
        pa.array([mapping.system] * n, pa.string()),
        pa.array([mapping.table] * n, pa.string()),
        kept.column("_source_file"),
        kept.column("_source_row"),
    ]
    written = pa.Table.from_arrays(columns, schema=schema)
    written = written.append_column("_map", pa.array(np.full(n, index, dtype=np.int64)))
    written = written.append_column("_key", kept.column("_key"))
    counts = {
        "written": n,
        "quarantined": quarantined,
        "excluded": int(pc.sum(excluded).as_py() or 0),
        "empty_slots": int(pc.sum(empty).as_py() or 0),
        "rules": rules,
    }
    return written, counts
