"""Generation as a whole: deterministic for a seed, safe to re-run, and never leaves a half-written output."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from medspace.core import InputError
from medspace.synth import HospitalConfig, generate_hospital


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_output_whatever_the_workers(tmp_path: Path) -> None:
    config = HospitalConfig(patients=600, seed=5, chunk_patients=200)
    generate_hospital(config, tmp_path / "a")
    generate_hospital(config.model_copy(update={"workers": 2}), tmp_path / "b")
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert len(a) > 20
    assert a == b


def test_another_seed_gives_another_hospital(tmp_path: Path) -> None:
    generate_hospital(HospitalConfig(patients=300, seed=1), tmp_path / "a")
    generate_hospital(HospitalConfig(patients=300, seed=2), tmp_path / "b")
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert a["his/patients.csv"] != b["his/patients.csv"]


def test_rerun_replaces_the_previous_hospital(tmp_path: Path) -> None:
    out = tmp_path / "h"
    generate_hospital(HospitalConfig(patients=300, seed=1), out)
    first = _digest(out)
    summary = generate_hospital(HospitalConfig(patients=300, seed=1), out)
    assert _digest(out) == first
    assert summary.rows == sum(f.rows for f in summary.files) > 0
    # `h` points to the one run left in `.runs` beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == [".runs", "h"]
    assert [p.resolve() for p in (tmp_path / ".runs").iterdir()] == [out.resolve()]


def test_a_failed_run_leaves_the_previous_hospital_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "h"
    generate_hospital(HospitalConfig(patients=300, seed=1), out)
    before = _digest(out)
    calls = {"n": 0}
    from medspace.synth import _generate

    real = _generate.build_chunk

    def failing(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_generate, "build_chunk", failing)
    with pytest.raises(OSError, match="disk full"):
        generate_hospital(HospitalConfig(patients=600, seed=9, chunk_patients=200), out)
    assert _digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".runs", "h"]
    assert [p.resolve() for p in (tmp_path / ".runs").iterdir()] == [out.resolve()]


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(InputError, match="was not written by"):
        generate_hospital(HospitalConfig(patients=100, seed=1), out)
    assert (out / "notes.txt").read_text(encoding="utf-8") == "keep me"


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="patients"):
        HospitalConfig(patients=0, seed=1)
    with pytest.raises(ValueError, match="name_typo"):
        HospitalConfig.model_validate({"patients": 10, "seed": 1, "defects": {"name_typo": 2}})
