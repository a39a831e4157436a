"""One run at a time per workspace: the workspace lock, which names its holder and dies with it.

Every command that writes into a workspace (ingest, link, cdm, quality, deid, run, vocab load, a review
decision) holds an exclusive ``fcntl.flock`` on ``<ws>/.lock`` for as long as it runs. A second command fails
at once with `WorkspaceBusyError` naming the holder, which the lock file records (pid, host, command, start
time). The operating system drops a flock when its process ends in any way, ``kill -9`` included, so a dead
holder never blocks the next command; there is no stale-lock detection to get wrong (a pid file checked
with ``kill -0`` would be fooled by a reused pid, and by a holder on another host).

Holding the lock, a command first removes what killed runs left behind (`clean_leftovers`).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from medspace.core._engine import scratch_in
from medspace.core._workspace import LOCK_FILE, RUNS, clean_leftovers
from medspace.core.errors import WorkspaceBusyError


@dataclass(frozen=True)
class LockHolder:
    """Who holds a workspace's lock."""

    pid: int
    host: str
    command: str
    started_at: str

    def describe(self) -> str:
        return f"`{self.command}` (pid {self.pid} on {self.host}, since {self.started_at})"


def read_holder(root: Path) -> LockHolder | None:
    """The holder the lock file names; None if there is none or the file cannot be read. The file is left
    as it was when its holder ended, so a name read here is only current while the lock is held
    (`workspace_lock` reports it only then)."""
    try:
        data = json.loads((Path(root) / LOCK_FILE).read_text(encoding="utf-8"))
        return LockHolder(int(data["pid"]), str(data["host"]), str(data["command"]), str(data["started_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextmanager
def workspace_lock(root: Path, command: str) -> Iterator[LockHolder]:
    """Hold the workspace's lock for the block, or fail at once if another command holds it.

    Args:
        root: The workspace root (created if missing).
        command: What runs, as the user typed it (``"medspace run"``), for the holder's record.

    Yields:
        This process's holder record.

    Raises:
        WorkspaceBusyError: another process holds the lock; the message names it.

    Example:
        >>> import tempfile
        >>> ws = Path(tempfile.mkdtemp())
        >>> with workspace_lock(ws, "medspace cdm"):
        ...     try:
        ...         with workspace_lock(ws, "medspace run"):
        ...             pass
        ...     except WorkspaceBusyError as busy:
        ...         print(busy.message.split(" (pid")[0])
        the workspace is in use by `medspace cdm`
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(root)
            named = holder.describe() if holder is not None else "another medspace command"
            raise WorkspaceBusyError(
                f"the workspace is in use by {named}; wait for it to finish, or use another workspace "
                "(--workspace); one command at a time writes to a workspace",
                file=str(root),
                rule="workspace lock",
            ) from None
        holder = LockHolder(
            pid=os.getpid(),
            host=socket.gethostname(),
            command=command,
            started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(asdict(holder)) + "\n").encode("utf-8"), 0)
        clean_leftovers(root)
        (root / RUNS).mkdir(exist_ok=True)  # with the lock file, it marks the workspace (`replace_folder`)
        scratch_in(root / RUNS)
        yield holder
    finally:
        os.close(fd)  # closing the descriptor releases the flock
