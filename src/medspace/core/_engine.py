"""The compute engines: DuckDB embedded by default, Apache Spark (local or cluster) at scale.

Stages are written once as Ibis expressions over the workspace's Parquet files and run on either backend;
this module only opens the backends. Spark is optional (extra ``spark``) and is imported lazily, so medspace
works without it and fails with an actionable message when it is asked for but missing.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from medspace.core.errors import ConfigError

if TYPE_CHECKING:
    from ibis import BaseBackend

EngineName = Literal["duckdb", "spark"]
ENGINES: tuple[EngineName, ...] = ("duckdb", "spark")


def connect(engine: EngineName = "duckdb", *, threads: int | None = None) -> BaseBackend:
    """An Ibis backend for the named engine.

    Args:
        engine: ``"duckdb"`` (embedded, in memory; stages read and write Parquet) or ``"spark"`` (a local
            ``local[2]`` session unless one is already running, e.g. on a cluster via spark-submit).
        threads: DuckDB threads (default: all cores).

    Raises:
        ConfigError: for an unknown engine, or Spark asked for without pyspark installed.

    Example:
        >>> con = connect("duckdb")
        >>> con.sql("select 42 as answer").to_pyarrow().column("answer").to_pylist()
        [42]
    """
    import ibis

    if engine == "duckdb":
        con = ibis.duckdb.connect()
        if threads:
            con.raw_sql(f"SET threads = {int(threads)}")
        return con
    if engine == "spark":
        return ibis.pyspark.connect(spark_session())
    raise ConfigError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")


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
