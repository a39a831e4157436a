"""The link and cdm stages on a local Spark session give the same tables as on DuckDB (DESIGN.md: one
expression, two engines, same results)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medspace.cdm import build_cdm
from medspace.link import link_workspace
from medspace.sources import DEFAULT_SITE, stage_site
from medspace.synth import HospitalConfig, generate_hospital

pytest.importorskip("pyspark")
pytestmark = [pytest.mark.spark, pytest.mark.slow]


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([(name, "ascending") for name in table.column_names])


def _same(a: Path, b: Path) -> None:
    left, right = pq.read_table(a), pq.read_table(b)
    assert left.column_names == right.column_names, a.name
    assert left.num_rows == right.num_rows, a.name
    # Spark may write a timestamp with another unit; compare values, not storage
    right = right.cast(left.schema)
    left, right = _sorted(left), _sorted(right)
    differing = [n for n in left.column_names if not left.column(n).equals(right.column(n))]
    assert not differing, f"{a.parent.name}/{a.name}: columns {differing} differ"


def test_spark_and_duckdb_build_the_same_link_and_cdm(tmp_path: Path) -> None:
    generate_hospital(HospitalConfig(patients=300, seed=8), tmp_path / "hospital")
    stage_site(DEFAULT_SITE, tmp_path / "hospital", tmp_path / "duck")
    shutil.copytree(tmp_path / "duck" / "staging", tmp_path / "spark" / "staging")
    for folder, engine in (("duck", "duckdb"), ("spark", "spark")):
        link_workspace(tmp_path / folder, engine)  # type: ignore[arg-type]
        build_cdm(tmp_path / folder, engine)  # type: ignore[arg-type]
    for stage in ("link", "cdm"):
        names = sorted(p.name for p in (tmp_path / "duck" / stage).glob("*.parquet"))
        assert names == sorted(p.name for p in (tmp_path / "spark" / stage).glob("*.parquet"))
        for name in names:
            _same(tmp_path / "duck" / stage / name, tmp_path / "spark" / stage / name)
