"""Benchmark of the data pipeline on DuckDB: ingest, link and cdm for 10,000- and 100,000-patient hospitals.

Each stage runs as its own `medspace` process on a hospital generated beforehand (not timed), so its wall
time and peak resident memory are measured by the kernel. Rows per second count the rows each stage reads:
exports for ingest, staged rows for link and cdm. Target (issue 3): the 100,000-patient hospital through all
three stages in under 3 minutes on 2 cores.

Usage: python bench/bench_pipeline.py [--sizes 10000 100000] [--out bench/results/pipeline.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

from benchkit import MEDSPACE, report, timed


def run(patients: int, folder: Path) -> list[dict[str, object]]:
    medspace = MEDSPACE
    exports, ws = folder / f"h{patients}", folder / f"ws{patients}"
    synth = [*medspace, "synth", "--patients", str(patients), "--seed", "42", "--out", str(exports)]
    subprocess.run([*synth, "--workers", "2", "--quiet"], check=True, stdout=subprocess.DEVNULL)
    exported = sum(f["rows"] for f in json.loads((exports / "truth/manifest.json").read_text())["files"])
    results = []
    for stage, args in (
        ("ingest", ["ingest", str(exports)]),
        ("link", ["link"]),
        ("cdm", ["cdm"]),
    ):
        seconds, peak = timed([*medspace, *args, "--workspace", str(ws)])
        if stage == "ingest":
            rows = exported
        else:
            rows = json.loads((ws / "staging/manifest.json").read_text())["totals"]["staged"]
        results.append(
            {
                "patients": patients,
                "stage": stage,
                "rows": rows,
                "seconds": round(seconds, 1),
                "rows_per_second": round(rows / seconds),
                "peak_rss_mib": peak,
            }
        )
    total = sum(float(r["seconds"]) for r in results)  # type: ignore[arg-type]
    peak = max(int(r["peak_rss_mib"]) for r in results)  # type: ignore[call-overload]
    results.append(
        {
            "patients": patients,
            "stage": "total",
            "rows": exported,
            "seconds": round(total, 1),
            "rows_per_second": round(exported / total),
            "peak_rss_mib": peak,
        }
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pipeline.json")
    args = parser.parse_args()
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="medspace-bench-") as tmp:
        for patients in args.sizes:
            results += run(patients, Path(tmp))
    columns = {
        "patients": "patients",
        "stage": "stage",
        "rows": "rows",
        "seconds": "seconds",
        "rows_per_second": "rows/s",
        "peak_rss_mib": "peak RSS MiB",
    }
    report("pipeline", "medspace ingest + link + cdm (DuckDB)", columns, results, args.out)


if __name__ == "__main__":
    main()
