"""Run de-identification on files: a Parquet or CSV table, or a workspace's OMOP CDM, into a release folder.

A release folder holds the de-identified tables as Parquet and the report (``deid_report.json`` and
``deid_report.html``). It is written beside its final place and swapped in whole, so a failed run leaves the
previous release untouched. The product key is never written anywhere: it comes from a key file or the
``MEDSPACE_PRODUCT_KEY`` variable, or, where the profile says the key is ephemeral, is made for this run and
forgotten.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from medspace.core import (
    ConfigError,
    InputError,
    Lineage,
    ProgressCallback,
    StageProgress,
    Workspace,
    refresh_catalog,
    replace_folder,
    stage_lineage,
)
from medspace.privacy._deidentify import Deidentified, deidentify_cdm, deidentify_table
from medspace.privacy._keys import ProductKey
from medspace.privacy._profile import ColumnPlan, DeidProfile, plan_columns
from medspace.privacy._roles import propose_roles

#: The environment variable a product key may come from (hexadecimal).
KEY_VARIABLE = "MEDSPACE_PRODUCT_KEY"


@dataclass(frozen=True)
class Release:
    """Where a de-identified release was written, and what it holds."""

    folder: Path
    result: Deidentified


def product_key(profile: DeidProfile, key_file: Path | None = None) -> ProductKey:
    """The product key: from ``key_file``, else ``$MEDSPACE_PRODUCT_KEY``, else a fresh one if the profile's
    key is ephemeral.

    Raises:
        ConfigError: If the profile needs the holder's key and none was given, or the key is malformed.
    """
    if key_file is not None:
        try:
            return ProductKey.from_hex(key_file.read_text(encoding="ascii"))
        except OSError as err:
            raise ConfigError(f"cannot read the key file: {err.strerror}", file=str(key_file)) from err
    if os.environ.get(KEY_VARIABLE):
        return ProductKey.from_hex(os.environ[KEY_VARIABLE])
    if profile.key_policy == "ephemeral":
        return ProductKey.generate()
    raise ConfigError(
        f"profile {profile.name} pseudonymises with a key the data holder keeps; pass --key-file or set "
        f"{KEY_VARIABLE} (make one with `openssl rand -hex 32` and store it safely)"
    )


def read_table(path: Path) -> pa.Table:
    """Read a Parquet or CSV table, naming the file (and CSV row) when it cannot be read."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pq.read_table(path)
        if suffix in (".csv", ".txt"):
            return pacsv.read_csv(path)
    except FileNotFoundError:
        raise InputError("the file does not exist", file=str(path)) from None
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(f"cannot read the table: {err}", file=str(path)) from None
    raise InputError("de-identification reads .parquet or .csv files", file=str(path))


def deidentify_file(
    path: Path,
    profile: DeidProfile,
    key: ProductKey,
    out: Path,
    *,
    person_column: str | None = None,
    progress: ProgressCallback | None = None,
) -> Release:
    """De-identify one Parquet or CSV table into the release folder ``out``.

    Args:
        path: The table's file.
        profile: The de-identification profile.
        key: The product key.
        out: The release folder; replaced whole when the run succeeds.
        person_column: The column naming each row's patient (for date shifts), if any.
        progress: Called as ``progress(done, 6)``: the table read; its columns treated, the generalisation
            search and the report (see `deidentify_table`); the table written; the report written.

    Returns:
        The release folder and the result.
    """
    steps = StageProgress(6, progress)
    lineage = stage_lineage(Path(out).parent, Path(out).name, specs={"privacy_profile": profile})
    table = read_table(path)
    steps.advance()
    name = path.stem
    with steps.part(3) as report:
        result = deidentify_table(
            table, profile, key, name=name, person_column=person_column, progress=report
        )
    _write(result, out, lineage, steps=steps)
    return Release(out, result)


def deidentify_workspace(
    workspace: Path,
    profile: DeidProfile,
    key: ProductKey,
    out: Path | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> Release:
    """De-identify the workspace's OMOP CDM (``<workspace>/cdm``) into ``<workspace>/deid/<profile>``.

    Args:
        workspace: The workspace; ``cdm/`` must exist (``medspace cdm``).
        profile: The de-identification profile.
        key: The product key.
        out: The release folder (default ``<workspace>/deid/<profile>``).
        progress: Called as ``progress(done, 3 * tables + 3)``: each CDM table read; each table's columns
            treated, the generalisation search and the report (see `deidentify_cdm`); each table written and
            the report written.

    Returns:
        The release folder and the result.

    Raises:
        InputError: If the workspace has no CDM yet.
    """
    ws = Workspace(Path(workspace))
    files = _cdm_files(workspace)
    steps = StageProgress(3 * len(files) + 3, progress)
    tables: dict[str, pa.Table] = {}
    for f in files:
        tables[f.stem] = pq.read_table(f)
        steps.advance()
    # a release records the CDM it came from; the CDM's own inputs are checked along the chain
    inside = out is None or ws.root.resolve() in Path(out).resolve().parents
    stage = f"deid/{profile.name}" if out is None else Path(out).name
    lineage = stage_lineage(ws.root, stage, inputs=("cdm",), specs={"privacy_profile": profile})
    with steps.part(len(tables) + 2) as report:
        result = deidentify_cdm(
            tables, profile, key, name=f"{workspace.name or 'workspace'} CDM", progress=report
        )
    folder = out if out is not None else ws.stage("deid") / profile.name
    _write(result, folder, lineage, runs=ws.runs if inside else None, steps=steps)
    refresh_catalog(workspace)
    return Release(folder, result)


def plan_dataset(source: Path | None, workspace: Path, profile: DeidProfile) -> list[ColumnPlan]:
    """What `deid` would do to every column of a table file (or, without one, of the workspace's CDM), for
    the data team to confirm before anything is written: role, kind, treatment and who decided it.

    Raises:
        InputError: If the file cannot be read or the workspace has no CDM.
    """
    tables = {source.stem: read_table(source)} if source is not None else _cdm_tables(workspace)
    return [
        plan
        for name, table in tables.items()
        for plan in plan_columns(propose_roles(table, table_name=name), profile)
    ]


def _cdm_files(workspace: Path) -> list[Path]:
    cdm = Workspace(workspace).stage("cdm")
    files = sorted(cdm.glob("*.parquet")) if cdm.exists() else []
    if not files:
        raise InputError("the workspace has no CDM tables; run `medspace cdm` first", file=str(cdm))
    return files


def _cdm_tables(workspace: Path) -> dict[str, pa.Table]:
    return {f.stem: pq.read_table(f) for f in _cdm_files(workspace)}


def _write(
    result: Deidentified,
    folder: Path,
    lineage: Lineage,
    runs: Path | None = None,
    *,
    steps: StageProgress,
) -> None:
    """Write the release: a unit of ``steps`` per table, one for the report once the folder is in place."""
    with replace_folder(folder, lineage=lineage, runs=runs) as tmp:
        for name, table in result.tables.items():
            pq.write_table(table, tmp / f"{name}.parquet")
            steps.advance()
        result.report.write(tmp)
    steps.advance()
