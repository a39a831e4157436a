"""Benchmark of the data pipeline on DuckDB: ingest, link and cdm for 10,000- and 100,000-patient hospitals.

Each stage runs as its own `medspace` process on a hospital generated beforehand (not timed), so its wall
time and peak resident memory are measured by the kernel. Rows per second count the rows each stage reads:
exports for ingest, staged rows for link and cdm. Target (issue 3): the 100,000-patient hospital through all
three stages in under 3 minutes on 2 cores.

With ``--baseline REV`` the same exports also go through the code of an earlier revision (checked out into a
temporary git worktree and run with its ``src`` first on ``PYTHONPATH``), stage by stage in the same run, and
the table gives each stage's time and memory as a ratio to that revision's (issue 9: no slower than 1.2x).

``--stages`` runs some of the stages only (``cdm`` needs ``link`` before it), ``--exports DIR`` takes an
export folder generated beforehand (one size only), and the rows measured replace those of the same code,
size and stage in ``--out``, the others kept: a 1,000,000-patient ingest can be added beside the rest.

Usage: python bench/bench_pipeline.py [--sizes 10000 100000] [--baseline REV] [--stages ingest link cdm]
[--exports DIR] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from benchkit import MEDSPACE, report, timed


def _staged_rows(ws: Path) -> int:
    manifest = json.loads((ws / "staging/manifest.json").read_text())
    return int(manifest["totals"]["staged"])


STAGES = ("ingest", "link", "cdm")


def run(
    patients: int,
    folder: Path,
    code: str = "current",
    env: Mapping[str, str] | None = None,
    stages: tuple[str, ...] = STAGES,
    exports: Path | None = None,
) -> list[dict[str, object]]:
    medspace = MEDSPACE
    exports = exports or folder / f"h{patients}"
    ws = folder / f"ws{patients}-{code}"
    if not exports.exists():
        synth = [*medspace, "synth", "--patients", str(patients), "--seed", "42", "--out", str(exports)]
        subprocess.run([*synth, "--workers", "2", "--quiet"], check=True, stdout=subprocess.DEVNULL)
    exported = sum(f["rows"] for f in json.loads((exports / "truth/manifest.json").read_text())["files"])
    results = []
    for stage, args in (
        ("ingest", ["ingest", str(exports)]),
        ("link", ["link"]),
        ("cdm", ["cdm"]),
    ):
        if stage not in stages:
            continue
        seconds, peak = timed([*medspace, *args, "--workspace", str(ws)], env=env)
        rows = exported if stage == "ingest" else _staged_rows(ws)
        results.append(
            {
                "code": code,
                "patients": patients,
                "stage": stage,
                "rows": rows,
                "seconds": round(seconds, 1),
                "rows_per_second": round(rows / seconds),
                "peak_rss_mib": peak,
            }
        )
    if stages != STAGES:
        return results
    total = sum(float(r["seconds"]) for r in results)  # type: ignore[arg-type]
    peak = max(int(r["peak_rss_mib"]) for r in results)  # type: ignore[call-overload]
    results.append(
        {
            "code": code,
            "patients": patients,
            "stage": "total",
            "rows": exported,
            "seconds": round(total, 1),
            "rows_per_second": round(exported / total),
            "peak_rss_mib": peak,
        }
    )
    return results


def _with_ratios(current: list[dict[str, object]], baseline: list[dict[str, object]]) -> None:
    """Add each current stage's time and memory as a ratio to the baseline's (same size, same stage)."""
    before = {(r["patients"], r["stage"]): r for r in baseline}
    for r in current:
        b = before.get((r["patients"], r["stage"]))
        if b is None:
            continue
        r["time_ratio"] = round(float(r["seconds"]) / max(float(b["seconds"]), 0.1), 2)  # type: ignore[arg-type]
        r["memory_ratio"] = round(float(r["peak_rss_mib"]) / float(b["peak_rss_mib"]), 2)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--baseline", help="an earlier revision to run side by side (e.g. 69293ac)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pipeline.json")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--exports", type=Path, help="an export folder generated beforehand (one size)")
    args = parser.parse_args()
    stages = tuple(s for s in STAGES if s in args.stages)
    if "cdm" in stages and "link" not in stages:
        parser.error("cdm needs link's output: run link too")
    if args.exports and len(args.sizes) != 1:
        parser.error("--exports is one hospital: give one size")
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="medspace-bench-") as tmp:
        baseline_env = None
        if args.baseline:
            tree = Path(tmp) / "baseline"
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.baseline], check=True)
            short = ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"]
            revision = subprocess.run(short, check=True, capture_output=True, text=True).stdout.strip()
            baseline_env = {**os.environ, "PYTHONPATH": str(tree / "src")}
        try:
            for patients in args.sizes:
                current = run(patients, Path(tmp), stages=stages, exports=args.exports)
                if baseline_env is not None:
                    label = f"baseline {revision}"
                    earlier = run(patients, Path(tmp), label, baseline_env, stages, args.exports)
                    _with_ratios(current, earlier)
                    current += earlier
                results += current
        finally:
            if baseline_env is not None:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(Path(tmp) / "baseline")], check=False
                )
    columns = {
        "code": "code",
        "patients": "patients",
        "stage": "stage",
        "rows": "rows",
        "seconds": "seconds",
        "rows_per_second": "rows/s",
        "peak_rss_mib": "peak RSS MiB",
    }
    if args.baseline:
        columns |= {"time_ratio": "time x baseline", "memory_ratio": "memory x baseline"}
    measured = {(r["code"], r["patients"], r["stage"]) for r in results}
    # a total over stages measured in different runs would mislead: a re-measured size loses its old total
    measured |= {(code, patients, "total") for code, patients, _ in list(measured)}
    if args.out.exists():
        kept = json.loads(args.out.read_text())["results"]
        results = [r for r in kept if (r["code"], r["patients"], r["stage"]) not in measured] + results
        results.sort(key=lambda r: (r["patients"], r["code"] != "current", r["code"]))
    report("pipeline", "medspace ingest + link + cdm (DuckDB)", columns, results, args.out)


if __name__ == "__main__":
    main()
