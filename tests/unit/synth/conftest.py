"""A small synthetic hospital shared by the synth tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from medspace.synth import HospitalConfig, generate_hospital

CONFIG = HospitalConfig(patients=2_000, seed=3, chunk_patients=700)


@pytest.fixture(scope="session")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "hospital"
    generate_hospital(CONFIG, out)
    return out
