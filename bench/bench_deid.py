"""Benchmark of k-anonymisation: medspace's optimal lattice search beside anjana on the same table.

Issue 5 asks for 100,000 rows x 5 quasi-identifiers at k=5 in under 1 second and 1,000,000 rows in under 10.
For each size the bench generates one seeded hospital-like admissions table (age, sex, GB/T 2260 county,
admission date and occupation as quasi-identifiers, an ICD-10 diagnosis as a non-identifying column), writes
it to Parquet, and builds the five hierarchies once with medspace's builders, saved in ARX's CSV format. Both
tools then read the same Parquet file and the same CSV hierarchies (same levels, same labels), with the same
k and the same suppression limit, each in its own process so the kernel measures its peak memory (``wait4``).

Each row reports the process's wall time (imports, reading the table and hierarchies, anonymising, writing
the released table) and the time of the anonymisation call alone; the ratio compares the latter. The
released tables are then checked here, not by the tools: pycanon measures k on their quasi-identifiers, and
ARX's information loss (0 = unchanged, 1 = everything suppressed) is recomputed from the hierarchies for
both, so the two tools' utility can be compared on one scale. anjana gets a timeout (its run time grows
quickly with the number of rows); a run that exceeds it is reported as timed out.

Usage: python bench/bench_deid.py [--sizes 100000 1000000] [--k 5] [--suppression 0.05]
    [--anjana-timeout 600] [--seed 42] [--out bench/results/deid.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# Heavy libraries are imported inside the functions that need them: a worker process must load only its own
# tool, or its peak memory and start-up time would include the other tool's.

QUASI_IDENTIFIERS = ("age", "sex", "region", "admitted", "occupation")
#: Issue 5's targets for medspace's anonymisation call, in seconds, by rows.
TARGETS = {100_000: 1.0, 1_000_000: 10.0}
OCCUPATIONS = (
    "工人",
    "农民",
    "教师",
    "医生",
    "护士",
    "学生",
    "离退休人员",
    "无业人员",
    "干部",
    "个体经营者",
    "司机",
    "职员",
    "军人",
    "其他",
)
DIAGNOSES = ("I10", "E11", "J18", "I63", "K80", "N18", "C34", "I25", "J44", "O80", "S72", "K35")


# --- the input: one table and its hierarchies, shared by both tools ----------------------------------------


def generate(rows: int, seed: int) -> Any:
    """A hospital's admissions, deterministic for a seed: most patients come from the hospital's province."""
    import datetime as dt

    import numpy as np
    import pyarrow as pa

    from medspace.core import region_codes

    rng = np.random.default_rng(seed)
    # East China's counties (Shanghai, Jiangsu, Zhejiang, Anhui); the hospital's own province (Zhejiang)
    # sends most patients, the rest fall off by code order like a catchment area.
    counties = np.array(sorted(c for c in region_codes() if c.startswith(("31", "32", "33", "34"))))
    weights = np.where(np.char.startswith(counties, "33"), 8.0, 1.0) / (1 + np.arange(len(counties)) / 50)
    start = dt.date(2023, 1, 1).toordinal() - dt.date(1970, 1, 1).toordinal()
    return pa.table(
        {
            "age": rng.integers(0, 100, rows),
            "sex": rng.choice(["M", "F"], rows),
            "region": rng.choice(counties, rows, p=weights / weights.sum()),
            "admitted": pa.array(start + rng.integers(0, 730, rows), pa.int32()).cast(pa.date32()),
            "occupation": rng.choice(np.array(OCCUPATIONS), rows),
            "diagnosis": rng.choice(np.array(DIAGNOSES), rows),
        }
    )


def prepare(rows: int, seed: int, folder: Path) -> dict[str, tuple[tuple[str, ...], ...]]:
    """Write the table and its hierarchies (ARX CSV) to ``folder``; return each hierarchy's rows."""
    import pyarrow.parquet as pq

    from medspace.privacy import (
        BandsSpec,
        DateSpec,
        Hierarchy,
        OccupationSpec,
        RegionSpec,
        SuppressSpec,
        hierarchy_for,
    )

    table = generate(rows, seed)
    pq.write_table(table, folder / "input.parquet")
    specs = {
        "age": BandsSpec(widths=(5, 10, 20)),
        "sex": SuppressSpec(),
        "region": RegionSpec(),
        "admitted": DateSpec(levels=("month", "quarter", "year")),
        "occupation": OccupationSpec(),
    }
    hierarchies = {}
    for column, spec in specs.items():
        hierarchy, _ = hierarchy_for(column, table[column], spec)
        path = folder / f"{column}.csv"
        hierarchy.to_arx_csv(path)
        # The file is what both tools read; it must say exactly what medspace built.
        assert Hierarchy.from_arx_csv(path, column) == hierarchy, f"{column}: ARX CSV does not round-trip"
        hierarchies[column] = hierarchy.rows
    return hierarchies


def read_arx_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return [row for row in csv.reader(f, delimiter=";") if row]


def anjana_hierarchy(rows: list[list[str]] | tuple[tuple[str, ...], ...]) -> dict[int, Any]:
    """An ARX-style hierarchy (one row per leaf, its generalisations left to right) in anjana's format.

    anjana wants ``{level: values}``, each level's values aligned with the leaves, level 0 being the leaves:
    it generalises a value from level i to i + 1 by finding the first position where level i holds it.
    """
    import pandas as pd

    return {level: pd.Series([row[level] for row in rows], dtype=object) for level in range(len(rows[0]))}


# --- the workers: one tool each, in its own process ---------------------------------------------------------


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def work_medspace(folder: Path, k: int, suppression: float) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from medspace.privacy import Hierarchy, KAnonymity, anonymise

    table = pq.read_table(folder / "input.parquet")
    hierarchies = [Hierarchy.from_arx_csv(folder / f"{c}.csv", c) for c in QUASI_IDENTIFIERS]
    before = peak_mib()
    began = time.perf_counter()
    result = anonymise(table, hierarchies, [KAnonymity(k=k)], suppression_limit=suppression)
    seconds = time.perf_counter() - began
    grown = peak_mib() - before
    pq.write_table(result.table, folder / "released-medspace.parquet")
    return {
        "anonymise_seconds": seconds,
        "anonymise_peak_growth_mib": round(grown),
        "levels": [result.levels[c] for c in QUASI_IDENTIFIERS],
        "rows_suppressed": result.rows_suppressed,
        "tool_k": result.measures.k,
        "tool_loss": result.utility.loss,
        "lattice_size": result.lattice_size,
        "nodes_checked": result.nodes_checked,
    }


def work_anjana(folder: Path, k: int, suppression: float) -> dict[str, Any]:
    import pandas as pd
    from anjana.anonymity import k_anonymity_inner

    data = pd.read_parquet(folder / "input.parquet")
    hierarchies = {c: anjana_hierarchy(read_arx_csv(folder / f"{c}.csv")) for c in QUASI_IDENTIFIERS}
    for c in QUASI_IDENTIFIERS:
        # anjana compares values with the hierarchy's by equality, so the table must hold the same leaf
        # strings medspace derives (integers as written, dates ISO); medspace converts its input itself.
        data[c] = data[c].astype(str)
        missing = set(data[c].unique()) - set(hierarchies[c][0])
        assert not missing, f"{c}: {len(missing)} values are not leaves of the hierarchy"
    before = peak_mib()
    began = time.perf_counter()
    # k_anonymity_inner is k_anonymity plus the rows suppressed and the level chosen per quasi-identifier.
    released, suppressed, levels = k_anonymity_inner(
        data, [], list(QUASI_IDENTIFIERS), k, suppression * 100, hierarchies
    )
    seconds = time.perf_counter() - began
    grown = peak_mib() - before
    if released.empty:  # anjana prints that it found no solution and returns an empty frame
        raise SystemExit(f"anjana found no {k}-anonymous generalisation within the suppression limit")
    # After suppressing, anjana returns `data.drop(...).reset_index()`, which adds the old index as a column.
    released = released.drop(columns=["index"], errors="ignore")
    released.to_parquet(folder / "released-anjana.parquet", index=False)
    return {
        "anonymise_seconds": seconds,
        "anonymise_peak_growth_mib": round(grown),
        "levels": [int(levels[c]) for c in QUASI_IDENTIFIERS],
        "rows_suppressed": int(suppressed),
    }


WORKERS = {"medspace": work_medspace, "anjana": work_anjana}


# --- the parent: run, time, verify --------------------------------------------------------------------------


def timed(command: list[str], timeout: float) -> tuple[float, int] | None:
    """Wall seconds and peak RSS (MiB) of a command, as ``benchkit.timed`` measures them, or None when it
    runs past ``timeout`` and is killed. (benchkit.timed waits forever, and anjana at a million rows may.)"""
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    killer = threading.Timer(timeout, process.kill)
    killer.start()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    killer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here; stop Popen from reaping it again
    if seconds >= timeout and os.WIFSIGNALED(status):
        return None
    if status != 0:
        raise SystemExit(f"failed (status {status}): {' '.join(command)}")
    return seconds, round(usage.ru_maxrss / 1024)


def verify(
    released_path: Path, hierarchies: dict[str, tuple[tuple[str, ...], ...]], levels: list[int], rows: int
) -> dict[str, Any]:
    """k by pycanon, and ARX's information loss recomputed from the hierarchies, for a released table."""
    import pandas as pd
    import pycanon.anonymity

    released = pd.read_parquet(released_path, columns=list(QUASI_IDENTIFIERS))
    k = pycanon.anonymity.k_anonymity(released, list(QUASI_IDENTIFIERS)) if len(released) else 0
    # ARX's loss: a kept cell generalised to a group of g of the attribute's n leaves loses (g - 1) / (n - 1),
    # a suppressed row loses 1 per attribute; averaged over every cell of the input.
    lost = (rows - len(released)) * len(QUASI_IDENTIFIERS)
    for column, level in zip(QUASI_IDENTIFIERS, levels, strict=True):
        rows_of = hierarchies[column]
        group = pd.Series([row[level] for row in rows_of]).value_counts()
        g = released[column].map(group)
        assert not g.isna().any(), f"{column}: released values that are not labels of level {level}"
        lost += float((g - 1).sum()) / (len(rows_of) - 1)
    return {
        "k_pycanon": int(k),
        "rows_released": len(released),
        "loss": round(lost / (rows * len(QUASI_IDENTIFIERS)), 4),
    }


def run(rows: int, args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    folder.mkdir()
    hierarchies = prepare(rows, args.seed, folder)
    results = []
    exact: dict[str, float] = {}  # anonymisation seconds, unrounded, for the targets and the ratio
    for tool in WORKERS:
        command = [sys.executable, __file__, "--worker", tool, "--folder", str(folder)]
        command += ["--k", str(args.k), "--suppression", str(args.suppression)]
        timeout = args.anjana_timeout if tool == "anjana" else 24 * 3600
        base: dict[str, Any] = {
            "rows": rows,
            "qis": len(QUASI_IDENTIFIERS),
            "k": args.k,
            "suppression_limit": args.suppression,
            "tool": tool,
        }
        measured = timed(command, timeout)
        if measured is None:
            results.append(
                {**base, "wall_seconds": "timed out", "anonymise_seconds": f"> {timeout:g}"}
                | dict.fromkeys(("peak_rss_mib", "k_pycanon", "rows_suppressed", "levels", "loss"), "-")
            )
            continue
        seconds, peak = measured
        worker = json.loads((folder / f"{tool}.json").read_text(encoding="utf-8"))
        checked = verify(folder / f"released-{tool}.parquet", hierarchies, worker["levels"], rows)
        assert checked["rows_released"] + worker["rows_suppressed"] == rows, f"{tool}: rows do not add up"
        checked["suppression_within_limit"] = worker["rows_suppressed"] <= args.suppression * rows
        exact[tool] = worker["anonymise_seconds"]
        results.append(
            {
                **base,
                **worker,
                "wall_seconds": round(seconds, 2),
                "anonymise_seconds": round(exact[tool], 3),
                "peak_rss_mib": peak,
                "levels": "/".join(map(str, worker["levels"])),
                **checked,
            }
        )
    target = TARGETS.get(rows)
    for r in results:
        r["target"] = ""
        if r["tool"] == "medspace" and target is not None:
            r["target"] = f"<{target:g} s {'met' if exact['medspace'] < target else 'MISSED'}"
        ratio = exact["anjana"] / exact["medspace"] if r["tool"] == "anjana" and "anjana" in exact else None
        r["speed_ratio"] = round(ratio, 1) if ratio else None
        r["ratio"] = f"{ratio:,.0f}x" if ratio else ""
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--suppression", type=float, default=0.05, help="largest share of rows removed")
    parser.add_argument("--anjana-timeout", type=float, default=600, help="seconds")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "deid.json")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        found = WORKERS[args.worker](args.folder, args.k, args.suppression)
        (args.folder / f"{args.worker}.json").write_text(json.dumps(found), encoding="utf-8")
        return

    from benchkit import report

    results = []
    with tempfile.TemporaryDirectory(prefix="medspace-bench-") as tmp:
        for rows in args.sizes:
            results += run(rows, args, Path(tmp) / f"rows-{rows}")
    columns = {
        "rows": "rows",
        "tool": "tool",
        "wall_seconds": "wall s",
        "anonymise_seconds": "anonymise s",
        "ratio": "vs medspace",
        "peak_rss_mib": "peak MiB",
        "k_pycanon": "k",
        "rows_suppressed": "suppressed",
        "levels": "levels",
        "loss": "loss",
        "target": "target",
    }
    title = (
        f"k-anonymity at k={args.k} on {len(QUASI_IDENTIFIERS)} quasi-identifiers, at most "
        f"{args.suppression:.0%} of rows suppressed\nlevels: {'/'.join(QUASI_IDENTIFIERS)}; k measured by "
        "pycanon, loss (ARX) recomputed from the hierarchies, on the released rows"
    )
    report("deid", title, columns, results, args.out)


if __name__ == "__main__":
    main()
