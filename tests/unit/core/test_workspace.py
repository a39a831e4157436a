"""The workspace's pointers: a stage's output swapped in whole and atomically, leftovers never read and
removed by the next locked command, the catalogue reading only what a pointer points to."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medspace.core import (
    CATALOG,
    RUNS,
    clean_leftovers,
    read_lineage,
    refresh_catalog,
    replace_folder,
    stage_lineage,
    workspace_lock,
)


def _write(folder: Path, rows: int) -> None:
    pq.write_table(pa.table({"person_id": list(range(rows))}), folder / "person.parquet")
    (folder / "manifest.json").write_text(json.dumps({"rows": rows}), encoding="utf-8")


def test_the_output_is_a_pointer_into_runs_and_the_old_run_is_removed(tmp_path: Path) -> None:
    target = tmp_path / "cdm"
    with replace_folder(target) as first:
        _write(first, 1)
    assert target.is_symlink() and target.resolve() == first.resolve()
    assert first.parent == tmp_path / RUNS
    with replace_folder(target) as second:
        _write(second, 2)
        # while the new run is written, readers still see the old one, whole
        assert pq.read_table(target / "person.parquet").num_rows == 1
    assert pq.read_table(target / "person.parquet").num_rows == 2
    assert first.name.startswith("cdm-") and second.name.startswith("cdm-")
    assert not first.exists()
    assert sorted(p.name for p in (tmp_path / RUNS).iterdir()) == [second.name]


def test_a_failed_run_leaves_the_previous_output_and_no_run_folder(tmp_path: Path) -> None:
    target = tmp_path / "link"
    with replace_folder(target) as first:
        _write(first, 3)
    with pytest.raises(RuntimeError), replace_folder(target) as second:
        _write(second, 4)
        raise RuntimeError("half-way")
    assert pq.read_table(target / "person.parquet").num_rows == 3
    assert not second.exists()
    assert [p.name for p in (tmp_path / RUNS).iterdir()] == [first.name]


def test_a_real_folder_of_an_earlier_medspace_is_migrated_on_first_write(tmp_path: Path) -> None:
    target = tmp_path / "staging"
    target.mkdir()
    _write(target, 5)
    with replace_folder(target) as new:
        _write(new, 6)
    assert target.is_symlink()
    assert pq.read_table(target / "person.parquet").num_rows == 6
    assert [p.name for p in (tmp_path / RUNS).iterdir()] == [new.name]


def test_lineage_is_written_into_the_new_manifest(tmp_path: Path) -> None:
    lineage = stage_lineage(tmp_path, "staging", specs={"site_mapping": b"site: x"})
    with replace_folder(tmp_path / "staging", lineage=lineage) as out:
        _write(out, 1)
    recorded = read_lineage(tmp_path / "staging")
    assert recorded is not None and recorded.run_id == lineage.run_id
    assert out.name == f"staging-{lineage.run_id}"
    assert json.loads((tmp_path / "staging/manifest.json").read_text())["rows"] == 1


def test_a_release_inside_a_stage_folder_runs_in_the_workspace_runs(tmp_path: Path) -> None:
    with workspace_lock(tmp_path, "test"), replace_folder(tmp_path / "deid" / "level3") as out:
        _write(out, 2)
    assert out.parent == tmp_path / RUNS and out.name.startswith("deid-level3-")
    assert os.readlink(tmp_path / "deid" / "level3").startswith("../.runs/")


def test_leftovers_of_killed_runs_are_removed_and_pointed_runs_kept(tmp_path: Path) -> None:
    with replace_folder(tmp_path / "cdm") as kept:
        _write(kept, 1)
    runs = tmp_path / RUNS
    killed = runs / "cdm-20250101T000000Z-deadbeef"  # a run killed before its switch
    killed.mkdir()
    _write(killed, 9)
    dead_scratch = runs / "scratch-999999999-abc"  # no such pid
    dead_scratch.mkdir()
    live_scratch = runs / f"scratch-{os.getpid()}-abc"
    live_scratch.mkdir()
    old_style = tmp_path / ".quality.tmp-1234"  # medspace 0.1.0's hidden temp folder
    old_style.mkdir()
    (tmp_path / "deid").mkdir()
    old_release = tmp_path / "deid" / ".level3.tmp-77"
    old_release.mkdir()
    _write(old_release, 1)
    removed = clean_leftovers(tmp_path)
    assert sorted(removed) == sorted([killed, dead_scratch, old_style, old_release])
    assert kept.exists() and live_scratch.exists()
    assert pq.read_table(tmp_path / "cdm" / "person.parquet").num_rows == 1


def test_the_catalogue_reads_only_pointed_folders(tmp_path: Path) -> None:
    with replace_folder(tmp_path / "cdm") as out:
        _write(out, 2)
    with workspace_lock(tmp_path, "test"), replace_folder(tmp_path / "deid" / "level3") as rel:
        _write(rel, 1)
    # what a killed run leaves: a half-written run folder and a hidden folder inside a stage's folder
    half = tmp_path / RUNS / "cdm-20250101T000000Z-0badf00d"
    half.mkdir()
    (half / "person.parquet").write_bytes(b"PAR1 not a parquet file")
    hidden = tmp_path / "deid" / ".level3.tmp-1"
    hidden.mkdir()
    (hidden / "person.parquet").write_bytes(b"broken")
    path = refresh_catalog(tmp_path)
    assert path == (tmp_path / CATALOG).resolve()
    with duckdb.connect(str(path), read_only=True) as con:
        views = sorted(
            (s, n, sql)
            for s, n, sql in con.execute(
                "select schema_name, view_name, sql from duckdb_views() where not internal"
            ).fetchall()
        )
        assert [(s, n) for s, n, _ in views] == [("cdm", "person"), ("deid", "level3_person")]
        assert all(RUNS not in sql for _, _, sql in views)
        assert con.execute("select count(*) from cdm.person").fetchone() == (2,)
        assert con.execute('select count(*) from deid."level3_person"').fetchone() == (1,)
    # a later switch of the pointer is seen through the same view
    with replace_folder(tmp_path / "cdm") as out:
        _write(out, 7)
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("select count(*) from cdm.person").fetchone() == (7,)
