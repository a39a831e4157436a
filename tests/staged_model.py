"""Tiny hand-made staging folders of the canonical hospital model, for tests of the stages after sources.

`write_staging` writes what `medspace ingest` would: ``staging/<table>.parquet`` for every model table (the
ones not given empty, with the full schema), ``quarantine.parquet`` and ``site.json``. Rows are dicts of model
columns plus ``system``; lineage (``_source_table``, ``_source_file``, ``_source_row``) is filled in when a
row does not give it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from medspace.core import record_lineage, stage_lineage
from medspace.sources import QUARANTINE, load_model


def write_staging(
    workspace: Path,
    tables: dict[str, list[dict[str, Any]]],
    *,
    quarantine: list[dict[str, Any]] | None = None,
    patient_index: str | None = "his",
    precedence: tuple[str, ...] = ("emr", "his", "lis"),
    inpatient_no: str = "per_patient",
) -> Path:
    """Write a staging folder into ``workspace``; return it."""
    staging = workspace / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    model = load_model()
    for name in model.tables:
        rows = []
        for i, row in enumerate(tables.get(name, []), start=1):
            full = {
                "_source_table": f"{name}s",
                "_source_file": f"{row['system']}/{name}s.csv",
                "_source_row": i,
                **row,
            }
            rows.append(full)
        pq.write_table(
            pa.Table.from_pylist(rows, schema=model.arrow_schema(name)), staging / f"{name}.parquet"
        )
    pq.write_table(pa.Table.from_pylist(quarantine or [], schema=QUARANTINE), staging / "quarantine.parquet")
    site = {
        "site": "tiny",
        "model": 1,
        "patient_index": patient_index,
        "precedence": list(precedence),
        "identifiers": {"inpatient_no": inpatient_no},
        "code_systems": {},
        "systems": {},
    }
    (staging / "site.json").write_text(json.dumps(site), encoding="utf-8")
    # a staging folder as `medspace ingest` leaves it: with its lineage, which link checks
    record_lineage(staging, stage_lineage(workspace, "staging"))
    return staging
