"""Benchmark of person linkage as the hospital grows: `medspace link` at 100,000, 300,000 and 1,000,000
patients.

Each point is a synthetic hospital (``medspace synth --seed 42``) ingested beforehand into its own workspace;
only `medspace link` is timed, as its own process, so its wall time and peak resident memory are the kernel's.
After the timed run the linked persons are scored against the generator's truth (``truth/records.parquet``:
every raw row's true person), at the level of persons (`medspace.link.score_persons`): precision and recall
over record pairs, phantom persons (as a share of linked persons) and split persons.

Target (issue 10): 1,000,000 patients in under 10 minutes at under 12 GiB, time and memory growing no faster
than linearly; precision >= 0.999, recall >= 0.995, phantom persons <= 0.05 %.

A point's exports and workspace are made when missing (synth and ingest are not timed), so a point can be
measured on its own and added beside the others: the rows measured replace those of the same size in
``--out``.

Usage: python bench/bench_link.py --point 100000 EXPORTS WORKSPACE [--point ...] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from benchkit import MEDSPACE, report, timed

from medspace.link import score_link


def _prepared(patients: int, exports: Path, ws: Path) -> int:
    """Make the point's exports and staging when missing; return the staged rows link reads."""
    if not (exports / "truth" / "records.parquet").exists():
        synth = [*MEDSPACE, "synth", "--patients", str(patients), "--seed", "42", "--out", str(exports)]
        subprocess.run([*synth, "--workers", "2", "--quiet"], check=True, stdout=subprocess.DEVNULL)
    if not (ws / "staging" / "manifest.json").exists():
        subprocess.run([*MEDSPACE, "ingest", str(exports), "--workspace", str(ws)], check=True)
    manifest = json.loads((ws / "staging" / "manifest.json").read_text())
    return int(manifest["totals"]["staged"])


def measure(patients: int, exports: Path, ws: Path) -> dict[str, object]:
    rows = _prepared(patients, exports, ws)
    seconds, peak = timed([*MEDSPACE, "link", "--workspace", str(ws)])
    scores = score_link(ws / "link", ws / "staging", exports / "truth" / "records.parquet")
    return {
        "patients": patients,
        "staged_rows": rows,
        "seconds": round(seconds, 1),
        "rows_per_second": round(rows / seconds),
        "peak_rss_mib": peak,
        "persons": scores.persons,
        "true_persons": scores.true_persons,
        "precision": round(scores.precision, 6),
        "recall": round(scores.recall, 6),
        "phantom_persons": scores.phantom_persons,
        "phantom_share_pct": round(100 * scores.phantom_share, 3),
        "split_persons": scores.split_persons,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--point",
        nargs=3,
        action="append",
        metavar=("PATIENTS", "EXPORTS", "WORKSPACE"),
        required=True,
        help="a hospital size, its export folder and its workspace (made when missing)",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "link.json")
    args = parser.parse_args()
    results = [measure(int(n), Path(exports), Path(ws)) for n, exports, ws in args.point]
    if args.out.exists():
        measured = {r["patients"] for r in results}
        kept = [r for r in json.loads(args.out.read_text())["results"] if r["patients"] not in measured]
        results = sorted(kept + results, key=lambda r: int(r["patients"]))
    first = results[0]
    for r in results:  # growth against the smallest point: linear growth keeps both ratios at 1.0
        size = int(r["patients"]) / int(first["patients"])  # type: ignore[call-overload]
        r["time_per_patient_x"] = round(float(r["seconds"]) / float(first["seconds"]) / size, 2)  # type: ignore[arg-type]
        r["memory_per_patient_x"] = round(int(r["peak_rss_mib"]) / int(first["peak_rss_mib"]) / size, 2)  # type: ignore[call-overload]
    columns = {
        "patients": "patients",
        "staged_rows": "staged rows",
        "seconds": "seconds",
        "peak_rss_mib": "peak RSS MiB",
        "time_per_patient_x": "time/patient x smallest",
        "memory_per_patient_x": "memory/patient x smallest",
        "precision": "precision",
        "recall": "recall",
        "phantom_share_pct": "phantom %",
        "split_persons": "split",
    }
    report("link", "medspace link (DuckDB) against the truth, by hospital size", columns, results, args.out)


if __name__ == "__main__":
    main()
