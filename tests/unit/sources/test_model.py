"""The canonical hospital model: loads, gives every staged table its schema, names nothing vendor-specific,
and its document is generated from it."""

from __future__ import annotations

from pathlib import Path

from medspace.sources import LINEAGE, load_model, load_site, model_markdown
from medspace.sources._check import NOT_AVAILABLE

DOC = Path(__file__).parents[3] / "docs" / "hospital-model.md"


def test_the_model_loads_with_keys_and_event_times() -> None:
    model = load_model()
    assert model.version == 1
    for name, table in model.tables.items():
        assert table.columns["record_key"].required, name
        assert table.event_time is None or table.event_time in table.columns
        schema = model.arrow_schema(name)
        assert schema.names == [*table.columns, *LINEAGE.names]


def test_the_committed_document_is_generated_from_the_model() -> None:
    assert DOC.read_text(encoding="utf-8") == model_markdown(), (
        "docs/hospital-model.md is stale: regenerate it with "
        "python -c 'from medspace.sources import model_markdown; print(model_markdown(), end=\"\")'"
    )


def test_every_model_table_says_what_its_absence_disables() -> None:
    assert set(NOT_AVAILABLE) == set(load_model().tables)


def test_no_model_name_is_a_vendor_name() -> None:
    site = load_site("synthetic-hospital")
    vendor = set(site.systems) | {t.name for _, t in site.raw_tables()}
    vendor |= {s for _, t in site.raw_tables() for c in t.columns for s in c.sources}
    model = load_model()
    names = set(model.tables) | {c for t in model.tables.values() for c in t.columns}
    assert not names & vendor
