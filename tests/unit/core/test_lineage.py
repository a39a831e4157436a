"""Lineage between stages: every run recorded, inputs that do not belong together refused with the stage
to re-run, and the status of each stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medspace.core import (
    InputError,
    StaleInputError,
    read_lineage,
    replace_folder,
    spec_digest,
    stage_digest,
    stage_lineage,
    stale_reason,
    workspace_status,
)


def _run(ws: Path, stage: str, inputs: tuple[str, ...] = (), **specs: object) -> str:
    lineage = stage_lineage(ws, stage, inputs=inputs, specs=specs)
    with replace_folder(ws / stage, lineage=lineage) as out:
        (out / "manifest.json").write_text(json.dumps({"stage": stage}), encoding="utf-8")
        (out / "table.parquet").write_bytes(b"rows")
    return lineage.run_id


def test_a_run_records_its_inputs_versions_and_specs(tmp_path: Path) -> None:
    staging = _run(tmp_path, "staging", site_mapping=b"site: a")
    link = _run(tmp_path, "link", ("staging",))
    lineage = read_lineage(tmp_path / "link")
    assert lineage is not None
    assert lineage.run_id == link != staging
    assert lineage.stage == "link" and lineage.medspace_version and lineage.built_at
    assert lineage.inputs["staging"].run_id == staging
    assert lineage.inputs["staging"].digest == stage_digest(tmp_path / "staging")
    staged = read_lineage(tmp_path / "staging")
    assert staged is not None and staged.specs == {"site_mapping": spec_digest(b"site: a")}
    # the manifest keeps what the stage wrote beside the block
    assert json.loads((tmp_path / "link/manifest.json").read_text())["stage"] == "link"


def test_a_stage_over_an_input_built_from_an_earlier_run_is_refused(tmp_path: Path) -> None:
    _run(tmp_path, "staging")
    _run(tmp_path, "link", ("staging",))
    _run(tmp_path, "staging")  # a new ingest; link is now stale
    with pytest.raises(StaleInputError) as refused:
        stage_lineage(tmp_path, "cdm", inputs=("staging", "link"))
    message = refused.value.message
    assert "link was built from an earlier ingest" in message
    assert "run `medspace link` again" in message and "then `medspace cdm`" in message


def test_staleness_runs_along_the_chain(tmp_path: Path) -> None:
    _run(tmp_path, "staging")
    _run(tmp_path, "link", ("staging",))
    _run(tmp_path, "cdm", ("staging", "link"))
    _run(tmp_path, "link", ("staging",))  # re-linked: cdm is stale, and so is anything over cdm
    with pytest.raises(StaleInputError, match="cdm was built from an earlier link"):
        stage_lineage(tmp_path, "deid/level3", inputs=("cdm",))
    reason = stale_reason(tmp_path, "cdm")
    assert reason is not None and "run `medspace cdm` again" in reason


def test_an_output_without_lineage_is_stale_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "staging").mkdir()
    (tmp_path / "staging/manifest.json").write_text("{}", encoding="utf-8")  # medspace 0.1.0
    with pytest.raises(StaleInputError, match=r"staging has no lineage record .* run `medspace ingest`"):
        stage_lineage(tmp_path, "link", inputs=("staging",))


def test_a_missing_input_names_the_command_to_run(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no staging output; run `medspace ingest` first"):
        stage_lineage(tmp_path, "link", inputs=("staging",))


def test_an_input_changed_by_hand_is_stale(tmp_path: Path) -> None:
    _run(tmp_path, "staging")
    _run(tmp_path, "link", ("staging",))
    (tmp_path / "staging" / "extra.parquet").write_bytes(b"copied in")
    reason = stale_reason(tmp_path, "link")
    assert reason is not None and "content digest differs" in reason


def test_status_shows_every_stage_and_what_is_stale(tmp_path: Path) -> None:
    _run(tmp_path, "staging")
    link = _run(tmp_path, "link", ("staging",))
    _run(tmp_path, "cdm", ("staging", "link"))
    _run(tmp_path, "deid/level3", ("cdm",))
    assert all(not s.stale for s in workspace_status(tmp_path) if s.present)
    _run(tmp_path, "staging")
    rows = {s.stage: s for s in workspace_status(tmp_path)}
    assert list(rows) == ["staging", "vocab", "link", "cdm", "quality", "deid/level3"]
    assert not rows["staging"].stale and not rows["vocab"].present and not rows["quality"].present
    assert rows["link"].run_id == link and rows["link"].stale
    assert rows["link"].reason is not None and "earlier ingest" in rows["link"].reason
    # cdm itself recorded the staging run it read: that run is gone
    assert rows["cdm"].stale and rows["deid/level3"].stale
    assert rows["cdm"].inputs["link"] == link
