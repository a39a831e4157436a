"""No stage after `sources` names a site: no system, raw table, raw column or numbering convention.

The names come from every site mapping medspace ships (`sources/data/sites/*.yaml`), so a new site file
extends the scan by itself: its systems, raw tables and raw column headers, and the patterns its expressions
match (regular expressions, LIKE). The scan reads each stage module's string literals (docstrings aside:
prose may describe a hospital) and identifiers. A stage that wrote ``"his"``, ``"front_sheets"``,
``"BRID"``, ``hadm_id`` or the synthetic HIS's recalled-serial suffix ``R$`` would be coding against one
hospital, not the canonical model. Plain words (``patients``, ``VALUE``) are prose as much as names and are
left out, and so are the canonical model's own names; a site's field names are its mapping's own words.
"""

from __future__ import annotations

import ast
import re
from importlib import resources
from pathlib import Path

import pytest

from medspace.cdm import cdm_schema
from medspace.sources import load_model, load_site

STAGES = ("link", "cdm", "quality", "privacy")
SOURCE = Path(__file__).resolve().parents[2] / "src" / "medspace"
#: Names of medspace's own that a site's raw header happens to share: the link stage's visit columns, and
#: the common patient-identifier headers privacy's role proposals recognise in any table given to deid.
OWN = frozenset({"visit_id", "visit_type", "subject_id", "patient_no", "patient_name", "id_card_no"})


def _sites() -> list[str]:
    folder = resources.files("medspace.sources").joinpath("data", "sites")
    return sorted(p.name.rsplit(".", 1)[0] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _patterns(expression: str) -> set[str]:
    """The patterns an expression matches: regular expressions of regexp_* and LIKE patterns."""
    regexes = re.findall(r"regexp_\w+\(\s*[^,]+,\s*'((?:[^']|'')*)'", expression, flags=re.IGNORECASE)
    likes = re.findall(r"\bLIKE\s+'((?:[^']|'')*)'", expression, flags=re.IGNORECASE)
    return {p for p in (*regexes, *likes) if len(p) >= 2}


def _site_names() -> tuple[set[str], set[str]]:
    """(names, conventions): systems, raw tables, fields and raw columns; constants in map expressions."""
    model = load_model()
    canonical = set(model.tables) | {c for t in model.tables.values() for c in t.columns}
    canonical |= {v for t in model.tables.values() for c in t.columns.values() for v in (c.values or ())}
    names: set[str] = set()
    conventions: set[str] = set()
    declared: set[str] = set()
    for name in _sites():
        site = load_site(name)
        declared |= set(site.code_systems)
        for system_name, system in site.systems.items():
            names.add(system_name)
            for table_name, table in system.tables.items():
                names.add(table_name)
                for column in table.columns:
                    sources = [column.source] if isinstance(column.source, str) else list(column.source)
                    names.update(s for s in sources if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", s))
        for entry in site.maps:
            for expression in (*entry.columns.values(), entry.where or ""):
                conventions |= _patterns(str(expression))
    # A header that is a plain word of the model's or OMOP's own vocabulary (MIMIC's VALUE, GENDER, DRUG) is
    # prose as much as a name; every other header (BRID, RequestNo, HADM_ID) is the site's alone.
    ours = canonical | _omop_names() | OWN
    vocabulary = {w for n in ours for w in n.split("_")}
    names = {n for n in names if not (re.fullmatch(r"[A-Za-z]+", n) and n.lower() in vocabulary)}
    names = {n for n in names if not re.fullmatch(r"[a-z]+", n) and n.lower() not in ours}
    # an upper-case key header is also looked for as code would write it (HADM_ID as hadm_id)
    names |= {n.lower() for n in names if re.fullmatch(r"[A-Z0-9]+(?:_[A-Z0-9]+)+", n)}
    for name in _sites():
        names |= set(load_site(name).systems)
    return names - canonical - declared - OWN, conventions


def _omop_names() -> set[str]:
    return {f.name for t in cdm_schema().tables for f in t.fields} | {t.name for t in cdm_schema().tables}


def _texts(path: Path) -> list[tuple[int, str]]:
    """The string literals (docstrings aside) and identifiers of one module, with their lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.Name):
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.arg):
            found.append((node.lineno, node.arg))
    return found


def _violations(root: Path, names: set[str], conventions: set[str]) -> list[str]:
    pattern = "|".join(sorted(map(re.escape, names), key=len, reverse=True))
    # "day_surgery" and "day-surgery" are words of their own, not the surgery system's name
    words = re.compile(rf"(?<![A-Za-z0-9_-])({pattern})(?![A-Za-z0-9_-])")
    out = []
    for stage in STAGES:
        for path in sorted((root / stage).rglob("*.py")):
            for line, text in _texts(path):
                hits = {m.group(1) for m in words.finditer(text)} | {c for c in conventions if c in text}
                hits -= OWN
                out.extend(f"{path.relative_to(root)}:{line}: {hit!r}" for hit in sorted(hits))
    return out


def test_the_shipped_sites_give_names_to_look_for() -> None:
    names, conventions = _site_names()
    assert len(_sites()) >= 3
    assert {"his", "lis", "emr", "BRID", "front_sheets", "HADM_ID"} <= names
    assert "R$" in conventions  # the synthetic HIS marks a recalled discharge's continuation row so


def test_no_stage_names_a_site() -> None:
    names, conventions = _site_names()
    assert _violations(SOURCE, names, conventions) == []


def test_the_scan_finds_vendor_names_planted_in_stage_code(tmp_path: Path) -> None:
    """The scan can fail: a module reading the HIS patient index by its vendor's names is reported."""
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / "_planted.py").write_text(
        'def f(st):\n    return st.table("his", "patients").BRID.re_replace("R$", "")\n', encoding="utf-8"
    )
    found = _violations(tmp_path, *_site_names())
    assert {v.split(": ")[1] for v in found} >= {"'his'", "'BRID'", "'R$'"}


@pytest.mark.parametrize("site", _sites())
def test_every_shipped_site_loads(site: str) -> None:
    assert load_site(site).systems
