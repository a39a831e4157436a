"""Plain readers for the synthetic hospital's exports and ground truth, for tests.

They use only the standard library, pyarrow and openpyxl, not medspace, so tests check the generator's
claims by a route independent of its code.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq


def read_csv(path: Path, encoding: str = "utf-8") -> list[dict[str, str]]:
    with path.open(encoding=encoding, newline="") as f:
        return list(csv.DictReader(f))


def read_ndjson(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def read_xlsx(path: Path) -> list[dict[str, Any]]:
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True)
    rows = list(wb.worksheets[0].iter_rows(values_only=True))
    wb.close()
    header = [str(h) for h in rows[0]]
    return [dict(zip(header, r, strict=True)) for r in rows[1:]]


def truth(hospital: Path, name: str) -> list[dict[str, Any]]:
    return pq.read_table(hospital / "truth" / f"{name}.parquet").to_pylist()


def manifest(hospital: Path) -> dict[str, Any]:
    return json.loads((hospital / "truth" / "manifest.json").read_text(encoding="utf-8"))


def output_bytes(path: Path) -> bytes:
    """A stage output file's bytes, for "the same bytes" comparisons: a manifest without its lineage
    block, which names the run (its id and time) and so differs between any two runs by design."""
    if path.name != "manifest.json":
        return path.read_bytes()
    data = json.loads(path.read_text(encoding="utf-8"))
    data.pop("lineage", None)
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
