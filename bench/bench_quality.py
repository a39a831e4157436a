"""Benchmark of `medspace quality` (DQD checks, cross-system checks, KPI reconciliation, label and report)
on a 10,000- and a 100,000-patient hospital. Target (issue 4): the full suite on 100,000 patients in under
60 seconds on 2 cores. The hospital and its pipeline run first and are not timed.

Usage: python bench/bench_quality.py [--sizes 10000 100000] [--out bench/results/quality.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

from benchkit import MEDSPACE, report, timed


def run(patients: int, folder: Path) -> dict[str, object]:
    medspace = MEDSPACE
    exports, ws = folder / f"h{patients}", folder / f"ws{patients}"
    synth = [*medspace, "synth", "--patients", str(patients), "--seed", "42", "--out", str(exports)]
    subprocess.run([*synth, "--workers", "2", "--quiet"], check=True, stdout=subprocess.DEVNULL)
    for stage in (["ingest", str(exports)], ["link"], ["cdm"]):
        subprocess.run([*medspace, *stage, "--workspace", str(ws)], check=True, stdout=subprocess.DEVNULL)
    seconds, peak = timed([*medspace, "quality", "--workspace", str(ws)])
    dqd = json.loads((ws / "quality" / "dqd_results.json").read_text(encoding="utf-8"))
    label = json.loads((ws / "quality" / "label.json").read_text(encoding="utf-8"))
    cdm_rows = sum(json.loads((ws / "cdm" / "manifest.json").read_text(encoding="utf-8"))["tables"].values())
    return {
        "patients": patients,
        "cdm_rows": cdm_rows,
        "dqd_checks": len(dqd["CheckResults"]),
        "seconds": round(seconds, 1),
        "peak_rss_mib": peak,
        "overall": label["overall"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "quality.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medspace-bench-") as tmp:
        results = [run(n, Path(tmp)) for n in args.sizes]
    columns = {
        "patients": "patients",
        "cdm_rows": "CDM rows",
        "dqd_checks": "DQD checks",
        "seconds": "seconds",
        "peak_rss_mib": "peak RSS MiB",
        "overall": "label overall %",
    }
    report("quality", "medspace quality (DuckDB, 2 cores)", columns, results, args.out)


if __name__ == "__main__":
    main()
