"""The cdm stage's code names no site: no system, raw table, raw column or numbering convention of a shipped
site.

Systems appear in cdm only as data (the ``system`` column, ``site.json``). Same scan as the link stage's
(``tests/unit/link/test_no_site_names.py``): every system name of the shipped site mappings, every raw column
header they read and every raw table name that is not a plain English word. The mapping files' notes
(``data/mappings/*.csv``) may cite the national front-sheet fields they document.
"""

from __future__ import annotations

import re
from pathlib import Path

import medspace.cdm
from medspace.sources import DEFAULT_SITE, load_model, load_site

CDM = Path(medspace.cdm.__file__).parent
CONVENTIONS = ("R$", "FS:", "ZY%", "'ZY", '"ZY')


def _site_names() -> set[str]:
    site = load_site(DEFAULT_SITE)
    model = load_model()
    canonical = set(model.tables) | {c for t in model.tables.values() for c in t.columns}
    names = set(site.systems)
    for system in site.systems.values():
        for name, table in system.tables.items():
            if "_" in name:
                names.add(name)
            for column in table.columns:
                sources = [column.source] if isinstance(column.source, str) else column.source
                names.update(s for s in sources if not re.fullmatch(r"[a-z]+", s))
    return names - canonical


def test_cdm_code_names_no_system_table_or_column_of_a_shipped_site() -> None:
    names = _site_names()
    assert {"his", "lis", "emr", "insurance"} <= names
    found = []
    for path in sorted(CDM.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        for name in names:
            if re.search(r"(?<![A-Za-z0-9_])" + re.escape(name) + r"(?![A-Za-z0-9_])", text):
                found.append(f"{path.name}: {name}")
        found += [f"{path.name}: {c}" for c in CONVENTIONS if c in text]
    assert not found, found
