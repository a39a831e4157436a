"""The workspace: the folder where a hospital's staged data, links and CDM live, and how stages replace
their output safely.

Every stage writes its whole output into a hidden sibling folder and swaps it in only when complete, so a run
that fails half-way leaves the previous good state untouched and re-running a stage is always safe.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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


@contextmanager
def replace_folder(target: Path) -> Iterator[Path]:
    """Build a folder's new content beside it and swap it in only if the block succeeds.

    Yields the empty temporary folder to write into. On success the old ``target`` (if any) is replaced as a
    whole; on any exception the temporary folder is removed and ``target`` is left exactly as it was.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "cdm"
        >>> with replace_folder(out) as tmp:
        ...     _ = (tmp / "person.parquet").write_bytes(b"")
        >>> sorted(p.name for p in out.iterdir())
        ['person.parquet']
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # Two renames: the window in which `target` is missing is as short as the file system allows.
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    if old.exists():
        shutil.rmtree(old)


CATALOG = "medspace.duckdb"
CATALOG_SCHEMAS = ("staging", "link", "cdm", "vocab", "quality", "deid")


def refresh_catalog(workspace: Path) -> Path:
    """(Re)write ``<workspace>/medspace.duckdb``: one view per Parquet table of every stage's output.

    The data team can then query the workspace with any DuckDB client (``select * from cdm.person``) while
    the Parquet files stay the one copy of the data. Views name absolute paths, so the catalogue is rebuilt
    whenever a stage writes; a stage's folder that is missing leaves its schema empty.

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
            for parquet in sorted(folder.rglob("*.parquet")) if folder.exists() else []:
                relative = parquet.relative_to(folder).with_suffix("")
                name = "_".join(relative.parts)
                literal = str(parquet).replace("'", "''")
                con.execute(f'CREATE VIEW "{schema}"."{name}" AS SELECT * FROM read_parquet(\'{literal}\')')
    tmp.replace(path)
    return path
