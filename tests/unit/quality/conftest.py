"""Shared by the quality tests: how a small hospital is made to contain every defect kind."""

from __future__ import annotations

import pytest

from medspace.synth import DefectRates


@pytest.fixture(scope="session")
def rare_defects_raised() -> DefectRates:
    """Rare defects raised so that a small hospital surely has some of each kind to detect."""
    return DefectRates(
        settlement_cost_mismatch=0.05,
        recalled_discharge=0.05,
        resident_id_typo=0.02,
        duplicate_patient_id=0.03,
        mixed_code_edition=0.1,
    )
