"""A small synthetic hospital, staged once per test session by its shipped site mapping, shared by the
sources tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from medspace.sources import StagingReport, stage_site
from medspace.synth import HospitalConfig, generate_hospital

CONFIG = HospitalConfig(patients=1_500, seed=11)


@pytest.fixture(scope="session")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sources") / "hospital"
    generate_hospital(CONFIG, out)
    return out


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="session")
def report(hospital: Path, workspace: Path) -> StagingReport:
    """The hospital staged into ``workspace`` (tests read ``workspace / "staging"``)."""
    return stage_site("synthetic-hospital", hospital, workspace)
