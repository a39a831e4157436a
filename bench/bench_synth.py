"""Benchmark of `medspace synth`: rows per second and peak memory by hospital size and worker count.

Each run is a separate `medspace synth` process so its peak resident memory (including its worker
processes) is measured by the kernel (``wait4``), not estimated. There is no peer tool that generates a
Chinese hospital's exports, so the table compares sizes and worker counts with each other.

Usage: python bench/bench_synth.py [--sizes 10000 100000] [--workers 1 2] [--out bench/results/synth.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def run(patients: int, workers: int, seed: int, folder: Path) -> dict[str, float | int]:
    out = folder / f"h{patients}-{workers}"
    command = [
        sys.executable,
        "-m",
        "medspace.cli",
        "synth",
        "--patients",
        str(patients),
        "--seed",
        str(seed),
    ]
    command += ["--out", str(out), "--workers", str(workers), "--quiet"]
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    if status != 0:
        raise SystemExit(f"medspace synth failed for {patients} patients (status {status})")
    manifest = json.loads((out / "truth" / "manifest.json").read_text(encoding="utf-8"))
    rows = sum(f["rows"] for f in manifest["files"])
    size = sum(f["bytes"] for f in manifest["files"])
    return {
        "patients": patients,
        "workers": workers,
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),  # Linux reports KiB
        "export_mib": round(size / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "synth.json")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="medspace-bench-") as tmp:
        for patients in args.sizes:
            for workers in args.workers:
                results.append(run(patients, workers, args.seed, Path(tmp)))
    table = Table(title="medspace synth")
    for column in ("patients", "workers", "rows", "seconds", "rows/s", "peak RSS MiB", "exports MiB"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            *(
                f"{r[k]:,}"
                for k in (
                    "patients",
                    "workers",
                    "rows",
                    "seconds",
                    "rows_per_second",
                    "peak_rss_mib",
                    "export_mib",
                )
            )
        )
    Console(width=120).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}
    args.out.write_text(
        json.dumps({"benchmark": "synth", "machine": machine, "results": results}, indent=2) + "\n"
    )
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
