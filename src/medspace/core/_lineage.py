"""Lineage between stages: what each stage's output was built from, and whether it still belongs together.

Every stage's ``manifest.json`` holds a ``lineage`` block: a fresh ``run_id`` for that run of the stage, the
medspace version, when it was built, the ``run_id`` and a content digest of each input stage it read, and
the digests of the specs it used (site mapping, match spec, DQD overrides, privacy profile). One function,
`stage_lineage`, builds the block and refuses, with `StaleInputError`, inputs that do not belong together:
a CDM over a link built from an earlier ingest, a quality label over a CDM built before the last link.

The content digest of a stage (`stage_digest`) is SHA-256 over its ``manifest.json`` bytes and the relative
path and size of every file in its folder, not over the files' bytes. Reading every byte of a large
hospital's Parquet files at the start of every stage would cost minutes; the manifest holds the stage's own
``run_id`` and counts, so a re-run always changes the digest, and a file added, removed, truncated or
rewritten by hand changes a size or a name almost always. The ``run_id`` is what stages compare; the digest
catches a folder edited or copied in by hand behind medspace's back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medspace.core.errors import InputError, StaleInputError

#: The key of the lineage block in a stage's ``manifest.json``.
LINEAGE_KEY = "lineage"

#: The stages of a workspace, in the order they are built, with the command that builds each.
STAGE_COMMANDS: dict[str, str] = {
    "staging": "medspace ingest",
    "vocab": "medspace vocab load",
    "link": "medspace link",
    "cdm": "medspace cdm",
    "quality": "medspace quality",
    "deid": "medspace deid",
}

# How a stage is named where a message says what an output was built from.
_BUILT_BY = {
    "staging": "ingest",
    "vocab": "vocabulary load",
    "link": "link",
    "cdm": "CDM build",
    "quality": "quality run",
}


def _version() -> str:
    import medspace

    return medspace.__version__


def new_run_id(now: dt.datetime | None = None) -> str:
    """A fresh id for one run of one stage: UTC time to the second, then 8 random hex digits.

    Ids sort by time, and two runs in the same second still differ.

    Example:
        >>> new_run_id(dt.datetime(2025, 3, 1, 8, 30, tzinfo=dt.timezone.utc))[:17]
        '20250301T083000Z-'
    """
    when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return f"{when:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def spec_digest(spec: Any) -> str:
    """SHA-256 of a spec: its bytes (``bytes``, ``str`` or a file's ``Path``) or, for a parsed pydantic
    model, its canonical JSON (so a shipped spec and a file give a digest without knowing where it came
    from).

    Example:
        >>> spec_digest(b"abc")[:16]
        'ba7816bf8f01cfea'
    """
    if isinstance(spec, Path):
        data = spec.read_bytes()
    elif isinstance(spec, bytes):
        data = spec
    elif isinstance(spec, str):
        data = spec.encode("utf-8")
    elif hasattr(spec, "model_dump_json"):
        data = spec.model_dump_json().encode("utf-8")
    else:
        data = json.dumps(spec, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def stage_digest(folder: Path) -> str:
    """The content digest of a stage's output folder (see the module docstring for what it covers and why).

    Hidden files are left out: they are temporary files of a writer, never part of the output.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> _ = (out / "manifest.json").write_text("{}")
        >>> before = stage_digest(out)
        >>> _ = (out / "person.parquet").write_bytes(b"1234")
        >>> stage_digest(out) != before
        True
    """
    folder = Path(folder)
    h = hashlib.sha256()
    manifest = folder / "manifest.json"
    h.update(manifest.read_bytes() if manifest.is_file() else b"")
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            h.update(f"\0{relative.as_posix()}\0{path.stat().st_size}".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class InputRecord:
    """One input stage as a stage read it: its run and its content digest."""

    run_id: str
    digest: str


@dataclass(frozen=True)
class Lineage:
    """The lineage block of one stage's run (``manifest.json``'s ``lineage``).

    Example:
        >>> block = Lineage("link", "20250301T083000Z-0a1b2c3d", "0.1", "2025-03-01T08:30:00+00:00")
        >>> Lineage.from_json(block.to_json()) == block
        True
    """

    stage: str
    run_id: str
    medspace_version: str
    built_at: str
    inputs: dict[str, InputRecord] = field(default_factory=dict)
    specs: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "run_id": self.run_id,
            "medspace_version": self.medspace_version,
            "built_at": self.built_at,
            "inputs": {k: {"run_id": v.run_id, "digest": v.digest} for k, v in self.inputs.items()},
            "specs": dict(self.specs),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Lineage:
        return cls(
            stage=str(data["stage"]),
            run_id=str(data["run_id"]),
            medspace_version=str(data.get("medspace_version", "unknown")),
            built_at=str(data.get("built_at", "")),
            inputs={
                str(k): InputRecord(str(v["run_id"]), str(v["digest"]))
                for k, v in dict(data.get("inputs") or {}).items()
            },
            specs={str(k): str(v) for k, v in dict(data.get("specs") or {}).items()},
        )


def read_lineage(folder: Path) -> Lineage | None:
    """The lineage block of a stage's output folder; None when the folder, its manifest or the block is
    missing or unreadable (an output written by an earlier medspace, or none at all)."""
    try:
        data = json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))
        return Lineage.from_json(data[LINEAGE_KEY])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def record_lineage(folder: Path, lineage: Lineage) -> None:
    """Write ``lineage`` into ``<folder>/manifest.json`` (created if the stage writes none), stamped with the
    time it is written: the moment the output is complete."""
    path = Path(folder) / "manifest.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    stamped = Lineage(
        lineage.stage,
        lineage.run_id,
        lineage.medspace_version,
        dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        lineage.inputs,
        lineage.specs,
    )
    data[LINEAGE_KEY] = stamped.to_json()
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _present(folder: Path) -> bool:
    return (folder / "manifest.json").is_file()


def _command(stage: str) -> str:
    return STAGE_COMMANDS.get(stage.split("/", 1)[0], f"medspace {stage}")


def stale_reason(root: Path, stage: str, seen: frozenset[str] = frozenset()) -> str | None:
    """Why a stage's output no longer belongs with the workspace's current inputs; None if it does.

    A stage is stale when it has no lineage (written by an earlier medspace), when an input it recorded is
    gone, was re-run since (another ``run_id``) or changed by hand (another digest), or when such an input is
    itself stale.

    Args:
        root: The workspace root.
        stage: The stage's folder relative to the root (``cdm``, ``deid/gbt39725-level3``).
    """
    folder = Path(root) / stage
    lineage = read_lineage(folder)
    if lineage is None:
        return (
            f"{stage} has no lineage record (it was written by an earlier medspace); "
            f"run `{_command(stage)}` again"
        )
    for name, recorded in lineage.inputs.items():
        source = Path(root) / name
        current = read_lineage(source)
        built = _BUILT_BY.get(name, name)
        if not _present(source):
            return f"{stage} was built from a {built} that is gone; run `{_command(name)}` first"
        if current is None or current.run_id != recorded.run_id:
            return (
                f"{stage} was built from an earlier {built} (run {recorded.run_id}; {name} is now "
                f"{current.run_id if current else 'of an earlier medspace'}); run `{_command(stage)}` again"
            )
        if stage_digest(source) != recorded.digest:
            return (
                f"{name} changed since {stage} was built from it (its content digest differs: edited or "
                f"copied by hand?); run `{_command(name)}` and then `{_command(stage)}` again"
            )
        if name not in seen and (upstream := stale_reason(root, name, seen | {stage})) is not None:
            return upstream
    return None


def stage_lineage(
    root: Path,
    stage: str,
    *,
    inputs: Iterable[str] = (),
    optional: Iterable[str] = (),
    specs: Mapping[str, Any] | None = None,
) -> Lineage:
    """The lineage block of a new run of ``stage``, after checking that its inputs belong together.

    Every stage calls this before it builds anything, and hands the result to `replace_folder`, which writes
    it into the new output's ``manifest.json``.

    Args:
        root: The workspace root.
        stage: The stage being built (``cdm``), or a release under it (``deid/gbt39725-level3``).
        inputs: The stages it reads, each of which must be present (e.g. ``("staging", "link")``).
        optional: Stages it reads when they are present (the CDM build reads ``vocab`` if loaded).
        specs: The specs it uses, by name: files, bytes or parsed models (`spec_digest`).

    Returns:
        The block, with a fresh ``run_id``.

    Raises:
        InputError: a required input is missing.
        StaleInputError: an input has no lineage, or an input was built from another run of a stage than
            the one in the workspace now; the message says which stage to re-run.

    Example:
        >>> import tempfile
        >>> ws = Path(tempfile.mkdtemp())
        >>> stage_lineage(ws, "staging").inputs
        {}
    """
    root = Path(root)
    recorded: dict[str, InputRecord] = {}
    for name, required in [*((n, True) for n in inputs), *((n, False) for n in optional)]:
        folder = root / name
        if not _present(folder):
            if required:
                raise InputError(
                    f"the workspace has no {name} output; run `{_command(name)}` first", file=str(folder)
                )
            continue
        reason = stale_reason(root, name)
        if reason is not None:
            raise StaleInputError(
                f"{stage} refuses its inputs: {reason}, then `{_command(stage)}`",
                file=str(folder),
                rule="lineage",
            )
        lineage = read_lineage(folder)
        assert lineage is not None  # stale_reason returned None, so the block was read
        recorded[name] = InputRecord(lineage.run_id, stage_digest(folder))
    return Lineage(
        stage=stage,
        run_id=new_run_id(),
        medspace_version=_version(),
        built_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        inputs=recorded,
        specs={name: spec_digest(spec) for name, spec in (specs or {}).items() if spec is not None},
    )


@dataclass(frozen=True)
class StageStatus:
    """One row of `workspace_status`: a stage's output, its run, and whether it is stale and why."""

    stage: str
    present: bool
    run_id: str | None = None
    built_at: str | None = None
    medspace_version: str | None = None
    stale: bool = False
    reason: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)  # input stage -> run_id it was built from

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "present": self.present,
            "run_id": self.run_id,
            "built_at": self.built_at,
            "medspace_version": self.medspace_version,
            "stale": self.stale,
            "reason": self.reason,
            "inputs": dict(self.inputs),
        }


def workspace_status(root: Path) -> list[StageStatus]:
    """Each stage of a workspace: present or not, its run id, when and by which version it was built,
    and whether it is stale (an input re-run since) and why. De-identified releases get one row each
    (``deid/<profile>``).

    Example:
        >>> import tempfile
        >>> [s.stage for s in workspace_status(Path(tempfile.mkdtemp()))]
        ['staging', 'vocab', 'link', 'cdm', 'quality', 'deid']
    """
    root = Path(root)
    stages: list[str] = []
    for name in STAGE_COMMANDS:
        if name == "deid":
            releases = releases_of(root / "deid")
            stages.extend(f"deid/{r}" for r in releases) if releases else stages.append("deid")
        else:
            stages.append(name)
    rows: list[StageStatus] = []
    for stage in stages:
        folder = root / stage
        if not _present(folder):
            rows.append(StageStatus(stage, present=False))
            continue
        lineage = read_lineage(folder)
        reason = stale_reason(root, stage)
        rows.append(
            StageStatus(
                stage,
                present=True,
                run_id=lineage.run_id if lineage else None,
                built_at=lineage.built_at if lineage else None,
                medspace_version=lineage.medspace_version if lineage else None,
                stale=reason is not None,
                reason=reason,
                inputs={k: v.run_id for k, v in lineage.inputs.items()} if lineage else {},
            )
        )
    return rows


def releases_of(folder: Path) -> list[str]:
    """The names of the releases in a ``deid`` folder (hidden entries are never releases)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir())
