"""The workspace: the folder where a hospital's staged data, links and CDM live, and how stages replace
their output safely.

Every stage writes its whole output into a run folder of its own, ``<ws>/.runs/<stage>-<run_id>/``, and
``<ws>/<stage>`` is a symlink switched to it atomically only when it is complete: a run that fails or is
killed half-way leaves the previous good state untouched and readable, and re-running a stage is always
safe. Readers only ever use ``<ws>/<stage>``; what a killed run left in ``.runs`` is never read (the
catalogue included) and is removed by the next command holding the workspace's lock (`clean_leftovers`).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from medspace.core._lineage import Lineage, new_run_id, record_lineage, releases_of

#: The lock file of a workspace (`workspace_lock`).
LOCK_FILE = ".lock"

DEFAULT_WORKSPACE = Path("medspace-data")


def default_workspace() -> Path:
    """The workspace folder: ``$MEDSPACE_WORKSPACE`` if set, else ``./medspace-data``."""
    return Path(os.environ.get("MEDSPACE_WORKSPACE", DEFAULT_WORKSPACE))


@dataclass(frozen=True)
class Workspace:
    """Where each stage keeps its output, as Parquet files under one root.

    Example:
        >>> Workspace(Path("/data/h1")).stage("cdm")
        PosixPath('/data/h1/cdm')
    """

    root: Path

    def stage(self, name: str) -> Path:
        """The folder of one stage's output (``staging``, ``link``, ``cdm``, ...)."""
        return self.root / name

    @property
    def runs(self) -> Path:
        """The hidden folder of the stages' run folders, which the stages' folders point into."""
        return self.root / RUNS


#: The hidden folder of a workspace holding every stage's runs; ``<ws>/<stage>`` points at one of them.
RUNS = ".runs"

# Hidden temporary entries writers leave beside their target when killed: this module's symlinks about to
# replace a pointer, the catalogue being written, and the folders of medspace before pointers (0.1.0).
_TEMPORARY = re.compile(r"^\..+\.(tmp|old|link)-[^/]+$")
# A process's scratch folder inside RUNS (`scratch_folder`): kept while the process lives.
_SCRATCH = re.compile(r"^scratch-(\d+)-")


def _runs_for(target: Path) -> Path:
    """The ``.runs`` folder for a target: its workspace's (the parent, or a grandparent that holds a lock,
    as ``<ws>/deid/<profile>`` has), else one beside it."""
    parent = target.parent
    grand = parent.parent
    if not (parent / RUNS).is_dir() and (grand / LOCK_FILE).is_file() and (grand / RUNS).is_dir():
        return grand / RUNS
    return parent / RUNS


def _label(target: Path, runs: Path) -> str:
    """``cdm``, or ``deid-<profile>`` for a release: the target's place in the workspace, never where its
    pointer points now."""
    try:
        where = target.parent.resolve() / target.name
        return "-".join(where.relative_to(runs.parent.resolve()).parts)
    except ValueError:
        return target.name


@contextmanager
def replace_folder(
    target: Path, *, lineage: Lineage | None = None, runs: Path | None = None
) -> Iterator[Path]:
    """Build a folder's new content in a run folder of its own and switch ``target`` to it only if the block
    succeeds.

    ``target`` is a symlink to ``<runs>/<name>-<run_id>/``. The new content is written to a fresh run folder,
    a temporary symlink to it is made, and ``os.replace`` puts that symlink over ``target`` in one atomic
    step: a reader sees the old output or the new one, complete, at every moment, even across a ``kill -9``.
    The previous run folder is removed afterwards. A real folder at ``target`` (a workspace of medspace
    0.1.0) is moved into ``runs`` and replaced by the pointer on the first write; that migration, once per
    stage, has the only moment (two system calls long) with no ``target``.

    Why a pointer rather than the two renames medspace used before: between ``rename(target, old)`` and
    ``rename(tmp, target)`` there is no ``target`` at all, and a kill there left none.

    Args:
        target: The folder readers use, e.g. ``<ws>/cdm`` or ``<ws>/deid/<profile>``.
        lineage: The run's lineage (`stage_lineage`): the run folder is named by its ``run_id`` and the block
            is written into the new ``manifest.json`` before the switch.
        runs: Where run folders live; default: the workspace's ``.runs`` (beside ``target``, or one level
            up when ``target`` is inside a stage folder of a locked workspace).

    Yields:
        The empty run folder to write into. On any exception it is removed and ``target`` is left exactly
        as it was.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "cdm"
        >>> with replace_folder(out) as tmp:
        ...     _ = (tmp / "person.parquet").write_bytes(b"")
        >>> sorted(p.name for p in out.iterdir()), out.is_symlink()
        (['person.parquet'], True)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    runs = Path(runs) if runs is not None else _runs_for(target)
    runs.mkdir(parents=True, exist_ok=True)
    label = _label(target, runs)
    run_id = lineage.run_id if lineage is not None else new_run_id()
    built = runs / f"{label}-{run_id}"
    built.mkdir()
    try:
        yield built
        if lineage is not None:
            record_lineage(built, lineage)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
    _point(target, built, runs, f"{label}-{run_id}")


def _point(target: Path, built: Path, runs: Path, name: str) -> None:
    """Switch the pointer ``target`` to ``built`` atomically; remove what it pointed to before."""
    link = target.with_name(f".{target.name}.link-{name}")
    link.unlink(missing_ok=True)
    os.symlink(os.path.relpath(built, target.parent), link)
    old: Path | None = None
    if target.is_symlink():
        old = target.resolve()
    elif target.is_dir():
        old = (runs / f"{name}-legacy").resolve()
        target.rename(old)
    os.replace(link, target)
    # only a run folder is removed: a pointer someone aimed elsewhere by hand keeps its data
    if old is not None and old.parent == runs.resolve() and old != built.resolve():
        shutil.rmtree(old, ignore_errors=True)


def _pointers(root: Path) -> Iterator[Path]:
    """Every pointer of a workspace: a symlink at its top level or one level down (``deid/<profile>``)."""
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_symlink():
            yield entry
        elif entry.is_dir():
            yield from (child for child in sorted(entry.iterdir()) if child.is_symlink())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process holds that pid
        return True
    return True


def clean_leftovers(root: Path) -> list[Path]:
    """Remove what killed runs left in a workspace; return what was removed.

    That is every run folder in ``.runs`` no stage points to (a run killed before its switch, or an old run
    whose removal was cut short), every scratch folder of a process that no longer lives, and hidden
    temporary entries (``.<name>.tmp-*``, ``.old-*``, ``.link-*``) at the top level and inside stage folders.
    Only a command holding the workspace's lock (`workspace_lock`, which calls this) may run it: another
    command's run folder in progress would look like a leftover.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    removed: list[Path] = []
    live = {p.resolve() for p in _pointers(root)}
    runs = root / RUNS
    for entry in sorted(runs.iterdir()) if runs.is_dir() else []:
        scratch = _SCRATCH.match(entry.name)
        if entry.resolve() in live or (scratch is not None and _alive(int(scratch.group(1)))):
            continue
        _remove(entry)
        removed.append(entry)
    folders = [root, *(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))]
    for folder in folders:
        for entry in sorted(folder.iterdir()):
            if _TEMPORARY.match(entry.name):
                _remove(entry)
                removed.append(entry)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


CATALOG = "medspace.duckdb"
CATALOG_SCHEMAS = ("staging", "link", "cdm", "vocab", "quality", "deid")


def refresh_catalog(workspace: Path) -> Path:
    """(Re)write ``<workspace>/medspace.duckdb``: one view per Parquet table of every stage's output.

    The data team can then query the workspace with any DuckDB client (``select * from cdm.person``) while
    the Parquet files stay the one copy of the data. Views read through the stages' pointers
    (``<ws>/cdm/person.parquet``), so a later switch of a pointer is seen without a refresh; the catalogue is
    still rebuilt whenever a stage writes, for tables that come or go. Only what a pointer points to is
    read: never ``.runs`` (a killed run's half-written folder) nor any hidden entry. A stage's folder that
    is missing leaves its schema empty. De-identified releases appear as ``deid."<profile>_<table>"``.

    Returns:
        The catalogue's path.
    """
    import duckdb

    root = Path(workspace).resolve()
    path = root / CATALOG
    tmp = path.with_name(f".{CATALOG}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    with duckdb.connect(str(tmp)) as con:
        for schema in CATALOG_SCHEMAS:
            con.execute(f'CREATE SCHEMA "{schema}"')
            folder = root / schema
            # releases are pointers one level down, and rglob does not follow symlinked folders
            tops = [folder / r for r in releases_of(folder)] if schema == "deid" else [folder]
            for top in tops:
                for parquet in _tables(top):
                    relative = parquet.relative_to(folder).with_suffix("")
                    name = "_".join(relative.parts)
                    literal = str(parquet).replace("'", "''")
                    con.execute(
                        f'CREATE VIEW "{schema}"."{name}" AS SELECT * FROM read_parquet(\'{literal}\')'
                    )
    tmp.replace(path)
    return path


def _tables(top: Path) -> list[Path]:
    """The Parquet files under a stage's (or release's) folder, hidden entries left out."""
    if not top.is_dir():
        return []
    real = top.resolve()
    return [
        top / p.relative_to(real)
        for p in sorted(real.rglob("*.parquet"))
        if not any(part.startswith(".") for part in p.relative_to(real).parts)
    ]
