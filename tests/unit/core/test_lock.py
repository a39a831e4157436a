"""One command at a time per workspace: a second one is refused at once and told who holds the lock; a
holder killed with SIGKILL never blocks the next one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medspace.core import WorkspaceBusyError, read_holder, workspace_lock

HOLD = """
import sys, time
from medspace.core import workspace_lock
with workspace_lock(sys.argv[1], "medspace run"):
    print("held", flush=True)
    time.sleep(600)
"""


def _hold(ws: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(ws)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_command_is_refused_naming_the_holder(tmp_path: Path) -> None:
    holder = _hold(tmp_path)
    try:
        began = time.monotonic()
        with pytest.raises(WorkspaceBusyError) as busy, workspace_lock(tmp_path, "medspace cdm"):
            pass
        assert time.monotonic() - began < 2  # at once, not after a wait
        message = busy.value.message
        assert "in use by `medspace run`" in message and f"pid {holder.pid}" in message
        assert busy.value.exit_code == 75
    finally:
        holder.kill()
        holder.wait()


def test_a_holder_killed_with_sigkill_never_blocks(tmp_path: Path) -> None:
    holder = _hold(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with workspace_lock(tmp_path, "medspace ingest") as me:
        assert me.pid == os.getpid()
        recorded = read_holder(tmp_path)
        assert recorded is not None and recorded.command == "medspace ingest"


def test_the_lock_is_released_when_the_block_ends_or_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), workspace_lock(tmp_path, "medspace link"):
        raise RuntimeError("the stage failed")
    with workspace_lock(tmp_path, "medspace link"):
        pass
