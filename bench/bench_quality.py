"""Benchmark of `medspace quality` (DQD checks, cross-system checks, KPI reconciliation, label and report)
on a 10,000- and a 100,000-patient hospital. Target (issue 4): the full suite on 100,000 patients in under
60 seconds on 2 cores. The hospital and its pipeline run first and are not timed.

Usage: python bench/bench_quality.py [--sizes 10000 100000] [--out bench/results/quality.json]
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


def run(patients: int, folder: Path) -> dict[str, object]:
    medspace = [sys.executable, "-m", "medspace.cli"]
    exports, ws = folder / f"h{patients}", folder / f"ws{patients}"
    synth = [*medspace, "synth", "--patients", str(patients), "--seed", "42", "--out", str(exports)]
    subprocess.run([*synth, "--workers", "2", "--quiet"], check=True, stdout=subprocess.DEVNULL)
    for stage in (["ingest", str(exports)], ["link"], ["cdm"]):
        subprocess.run([*medspace, *stage, "--workspace", str(ws)], check=True, stdout=subprocess.DEVNULL)
    began = time.perf_counter()
    process = subprocess.Popen([*medspace, "quality", "--workspace", str(ws)], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    if status != 0:
        raise SystemExit(f"medspace quality failed for {patients} patients")
    dqd = json.loads((ws / "quality" / "dqd_results.json").read_text(encoding="utf-8"))
    label = json.loads((ws / "quality" / "label.json").read_text(encoding="utf-8"))
    cdm_rows = sum(json.loads((ws / "cdm" / "manifest.json").read_text(encoding="utf-8"))["tables"].values())
    return {
        "patients": patients,
        "cdm_rows": cdm_rows,
        "dqd_checks": len(dqd["CheckResults"]),
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
        "overall": label["overall"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "quality.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medspace-bench-") as tmp:
        results = [run(n, Path(tmp)) for n in args.sizes]
    table = Table(title="medspace quality (DuckDB, 2 cores)")
    for column in ("patients", "CDM rows", "DQD checks", "seconds", "peak RSS MiB", "label overall %"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            *(
                f"{r[k]:,}"
                for k in ("patients", "cdm_rows", "dqd_checks", "seconds", "peak_rss_mib", "overall")
            )
        )
    Console(width=120).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}
    report = {"benchmark": "quality", "machine": machine, "results": results}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
