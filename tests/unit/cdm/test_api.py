"""The cdm stage's public API: a snapshot, so changes to it are deliberate (STYLE.md §2)."""

from __future__ import annotations

import inspect

import medspace.cdm as cdm


def test_public_names() -> None:
    assert set(cdm.__all__) >= {
        "CdmField",
        "CdmTable",
        "ImportReport",
        "cdm_schema",
        "duckdb_ddl",
        "import_omop",
        "load_mappings",
        "to_canonical",
        "to_canonical_arrow",
        "to_canonical_ibis",
    }
    assert all(hasattr(cdm, name) for name in cdm.__all__)


def test_signatures() -> None:
    assert str(inspect.signature(cdm.import_omop)) == "(source: 'Path', workspace: 'Path') -> 'ImportReport'"
    assert str(inspect.signature(cdm.to_canonical)) == (
        "(test: 'str', value: 'float', unit: 'str', *, mappings: 'Mappings | None' = None) -> 'float'"
    )
