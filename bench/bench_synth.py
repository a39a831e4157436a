"""Benchmark of `medspace synth`: rows per second and peak memory by hospital size and worker count.

Each run is a separate `medspace synth` process so its peak resident memory (including its worker
processes) is measured by the kernel (``wait4``), not estimated. There is no peer tool that generates a
Chinese hospital's exports, so the table compares sizes and worker counts with each other.

Usage: python bench/bench_synth.py [--sizes 10000 100000] [--workers 1 2] [--profile tertiary]
    [--out bench/results/synth.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchkit import MEDSPACE, report, timed


def run(patients: int, workers: int, seed: int, folder: Path, profile: str) -> dict[str, float | int]:
    out = folder / f"h{patients}-{workers}"
    synth = [
        "synth",
        "--patients",
        str(patients),
        "--seed",
        str(seed),
        "--out",
        str(out),
        "--profile",
        profile,
    ]
    seconds, peak = timed([*MEDSPACE, *synth, "--workers", str(workers), "--quiet"])
    manifest = json.loads((out / "truth" / "manifest.json").read_text(encoding="utf-8"))
    rows = sum(f["rows"] for f in manifest["files"])
    size = sum(f["bytes"] for f in manifest["files"])
    return {
        "patients": patients,
        "workers": workers,
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds),
        "peak_rss_mib": peak,
        "export_mib": round(size / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--profile", choices=["tertiary", "integrated"], default="tertiary")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "synth.json")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="medspace-bench-") as tmp:
        for patients in args.sizes:
            for workers in args.workers:
                results.append(run(patients, workers, args.seed, Path(tmp), args.profile))
    columns = {
        "patients": "patients",
        "workers": "workers",
        "rows": "rows",
        "seconds": "seconds",
        "rows_per_second": "rows/s",
        "peak_rss_mib": "peak RSS MiB",
        "export_mib": "exports MiB",
    }
    title = "medspace synth" if args.profile == "tertiary" else f"medspace synth --profile {args.profile}"
    report("synth", title, columns, results, args.out)


if __name__ == "__main__":
    main()
