"""What every medspace benchmark shares: run a `medspace` command as its own process and let the kernel
measure it, print the results as a table, and save them as JSON beside the machine they ran on."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

MEDSPACE = [sys.executable, "-m", "medspace.cli"]


def timed(command: Sequence[str], env: Mapping[str, str] | None = None) -> tuple[float, int]:
    """Run a command; return its wall seconds and peak resident memory in MiB (the kernel's ``wait4``,
    which covers the process and the worker processes it waited for)."""
    began = time.perf_counter()
    process = subprocess.Popen(list(command), stdout=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    if status != 0:
        raise SystemExit(f"failed (status {status}): {' '.join(command)}")
    return seconds, round(usage.ru_maxrss / 1024)  # Linux reports KiB


def report(name: str, title: str, columns: dict[str, str], results: list[dict[str, Any]], out: Path) -> None:
    """Print ``results`` as a table (``columns``: result key -> heading) and save them to ``out``."""
    table = Table(title=title)
    for heading in columns.values():
        table.add_column(heading, justify="right")
    for r in results:
        cells = (r.get(k, "") for k in columns)  # a column some rows lack (a ratio) is left blank there
        table.add_row(*(f"{c:,}" if isinstance(c, int | float) else str(c) for c in cells))
    Console(width=120).print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}
    out.write_text(json.dumps({"benchmark": name, "machine": machine, "results": results}, indent=2) + "\n")
    print(f"saved {out}")
