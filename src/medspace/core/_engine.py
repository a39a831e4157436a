"""The compute engines: DuckDB embedded by default, Apache Spark (local or cluster) at scale.

Stages are written once as Ibis expressions over the workspace's Parquet files and run on either backend;
this module only opens the backends. Spark is optional (extra ``spark``) and is imported lazily, so medspace
works without it and fails with an actionable message when it is asked for but missing.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from medspace.core.errors import ConfigError

if TYPE_CHECKING:
    from ibis import BaseBackend

EngineName = Literal["duckdb", "spark"]
ENGINES: tuple[EngineName, ...] = ("duckdb", "spark")


def connect(
    engine: EngineName = "duckdb", *, threads: int | None = None, memory_limit: str | None = None
) -> BaseBackend:
    """An Ibis backend for the named engine.

    Args:
        engine: ``"duckdb"`` (embedded, in memory; stages read and write Parquet) or ``"spark"`` (a local
            ``local[2]`` session unless one is already running, e.g. on a cluster via spark-submit).
        threads: DuckDB threads (default: all cores).
        memory_limit: DuckDB's memory limit, e.g. ``"6GB"``; beyond it DuckDB spills to a private
            temporary folder instead of growing. Default: ``MEDSPACE_MEMORY_LIMIT`` if set, else a quarter
            of the machine's memory (DuckDB's own default, 80 %, lets one stage take the machine).

    Raises:
        ConfigError: for an unknown engine, or Spark asked for without pyspark installed.

    Example:
        >>> import ibis
        >>> con = connect("duckdb")
        >>> int(con.execute(ibis.literal(21) * 2))
        42
    """
    import ibis

    if engine == "duckdb":
        con = ibis.duckdb.connect()
        # stages print their own progress; DuckDB's bar would interleave with it on a terminal
        con.raw_sql("SET enable_progress_bar = false")
        limit = memory_limit or os.environ.get("MEDSPACE_MEMORY_LIMIT") or _quarter_of_memory()
        if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", limit, flags=re.IGNORECASE):
            raise ConfigError(f"memory limit {limit!r} is not a size such as 6GB or 512MiB")
        con.raw_sql(f"SET memory_limit = '{limit}'")
        # spilled blocks hold identifiable rows: a folder of this process, removed when it exits
        spill = str(_scratch() / "duckdb").replace("'", "''")
        con.raw_sql(f"SET temp_directory = '{spill}'")
        if threads:
            con.raw_sql(f"SET threads = {int(threads)}")
        return con
    if engine == "spark":
        return ibis.pyspark.connect(spark_session())
    raise ConfigError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")


def _quarter_of_memory() -> str:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{max(total // 4 // 2**20, 512)}MiB"


@cache
def spark_session() -> Any:
    """The Spark session stages run on: the active one, or a local ``local[2]`` session started here."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ConfigError(
            "the Spark engine needs pyspark: install medspace with the 'spark' extra "
            "(pip install 'medspace[spark]'), which pins pyspark 4.0.x as Ibis requires"
        ) from exc
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # Loopback only and no UI: stages must not open network ports beyond the machine, and the session
    # must behave the same in CI as on a laptop. UTC keeps timestamps as written (no local-zone shifts).
    return (
        SparkSession.builder.master("local[2]")
        .appName("medspace")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .getOrCreate()
    )


def small_table(con: BaseBackend, name: str, table: pa.Table) -> Any:
    """Put a small Arrow table (a mapping, a list of valid IDs) on the backend as a named table.

    ``ibis.memtable`` would do on DuckDB, but Spark cannot see a memtable inside a cached expression, so on
    Spark the table goes through a Parquet file in a scratch folder that lives as long as the process.
    """
    if con.name == "duckdb":
        return con.create_table(name, table, temp=True, overwrite=True)
    path = _scratch() / f"{name}.parquet"
    pq.write_table(table, path)
    return con.read_parquet(str(path), table_name=name)


# Where this process's scratch folder goes: set by `workspace_lock` (the workspace's `.runs`), else None
# for the system's temporary folder.
_scratch_parent: list[Path] = []


def scratch_in(folder: Path) -> None:
    """Put this process's scratch folder (`scratch_folder`) in ``folder`` if it is not made yet.

    `workspace_lock` points it at the workspace's ``.runs``: spilled rows are identifiable, and a scratch
    folder there left by a killed process is removed by the next command (`clean_leftovers`), where one in
    ``/tmp`` would stay until someone noticed it.
    """
    if _scratch.cache_info().currsize == 0:
        _scratch_parent[:] = [Path(folder)]


def scratch_folder() -> Path:
    """This process's private scratch folder (``scratch-<pid>-*``), removed when the process exits.

    Example:
        >>> scratch_folder().is_dir()
        True
    """
    return _scratch()


@cache
def _scratch() -> Path:
    if _scratch_parent:
        _scratch_parent[0].mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"scratch-{os.getpid()}-", dir=_scratch_parent[0]))
    else:
        folder = Path(tempfile.mkdtemp(prefix=f"medspace-scratch-{os.getpid()}-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def materialise(con: BaseBackend, expr: Any, name: str) -> Any:
    """Compute an intermediate table once and return it as a table to build on.

    DuckDB keeps it as a temporary table. On Spark it is written to Parquet in the scratch folder and read
    back: that also cuts the lineage, without which iterative stages (component rounds) grow query plans
    until the driver runs out of memory printing them.
    """
    if con.name == "duckdb":
        return con.create_table(name, expr, temp=True, overwrite=True)
    path = _scratch() / name
    if path.exists():
        shutil.rmtree(path)
    con.to_parquet_dir(expr, str(path))
    return con.read_parquet_dir(str(path), table_name=name)


def forget(con: BaseBackend, name: str) -> None:
    """Drop an intermediate table `materialise` made, once nothing reads it any more, so its memory goes
    back at once rather than at the end of the stage.

    On Spark the table is a scratch Parquet folder that a lazily planned query may still read; it stays
    until the process ends (the scratch folder is removed then).
    """
    if con.name == "duckdb":
        con.drop_table(name, force=True)


def write_parquet(con: BaseBackend, expr: Any, path: Path) -> int:
    """Write a stage's output table to one Parquet file; return its row count.

    DuckDB writes the file itself. Spark would write a folder of part files; stages keep one file per table
    whatever the engine, so on Spark the rows stream through Arrow batches into one file.
    """
    if con.name == "duckdb":
        # The path goes to DuckDB as an argument, not spliced into a COPY statement (Ibis's `to_parquet`
        # does that, and a path holding both ' and " then breaks the SQL).
        con.con.sql(con.compile(expr)).write_parquet(str(path))
        return int(pq.read_metadata(path).num_rows)
    rows = 0
    batches = con.to_pyarrow_batches(expr)
    with pq.ParquetWriter(path, batches.schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows
