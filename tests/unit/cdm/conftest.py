"""Reference OMOP databases the cdm tests import: OHDSI's Synthea27Nj (CSV zip), Eunomia GiBleed (DuckDB)."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

import reference_data


@pytest.fixture(scope="session")
def synthea_zip() -> Path:
    return reference_data.synthea_zip()


@pytest.fixture(scope="session")
def gibleed() -> Path:
    return reference_data.gibleed()


def read_synthea_csv(name: str) -> list[dict[str, str]]:
    """Rows of one CSV file of the Synthea27Nj zip, read with Python's csv module (independent of DuckDB)."""
    with zipfile.ZipFile(reference_data.synthea_zip()) as archive:
        text = archive.read(name).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="session")
def synthea_csv(synthea_zip: Path) -> Callable[[str], list[dict[str, str]]]:
    """Reads one CSV of the Synthea27Nj zip with the csv module."""
    return read_synthea_csv
