"""The quality stage names no site's system, raw table or raw field (issue 9): every string literal in its
code is scanned for the names the shipped site mappings use, less the canonical model's own names."""

from __future__ import annotations

import ast
import re
from importlib.resources import files
from pathlib import Path

import yaml

import medspace.quality

SITES = files("medspace.sources").joinpath("data/sites")
MODEL = files("medspace.sources").joinpath("data/model/hospital.yaml")
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*")
# Words a site may also use as a name that are the domain's or SQL's own: SQL types and keywords, the
# national front-sheet field numbers (B34C discharge mode, D01 total cost: the standard's, not a vendor's),
# the check named for the fact it compares, and the results files' own key ("results").
ALLOWED = {"date", "type", "Value", "context", "B34C", "D01", "discharge_date", "results"}


def _site_names() -> set[str]:
    names: set[str] = set()
    for site in SITES.iterdir():
        if not site.name.endswith(".yaml"):
            continue
        data = yaml.safe_load(site.read_text(encoding="utf-8"))
        for system, spec in (data.get("systems") or {}).items():
            names.add(system)
            for table, t in (spec.get("tables") or {}).items():
                names.add(table)
                for f in t.get("fields") or []:
                    for key in ("name", "source"):
                        value = f.get(key)
                        if isinstance(value, str):
                            names.update(WORD.findall(value.split("{")[0]))
    model = yaml.safe_load(MODEL.read_text(encoding="utf-8"))
    canonical = set(model["tables"]) | {c for t in model["tables"].values() for c in t["columns"]}
    return {n for n in names if len(n) > 2} - canonical


def _literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


SQL = re.compile(r"\b(SELECT|FROM|WHERE|JOIN|GROUP BY|CREATE)\b")


def _code_like(text: str) -> bool:
    """SQL, or a single identifier (a column, table or check name): prose in messages may use the domain's
    plain words (patients, operations, results) that a site also happens to name a raw table."""
    return bool(SQL.search(text)) or (" " not in text.strip() and bool(text.strip()))


def test_no_site_name_in_the_quality_code() -> None:
    from medspace.quality._kpis import KPI_NAMES

    names = _site_names() - set(KPI_NAMES)  # the national KPIs' own names (domain.md §2)
    assert {"his", "front_sheets", "BRID"} <= names  # the scan sees the synthetic site's own names
    found = []
    for path in sorted(Path(medspace.quality.__file__).parent.glob("*.py")):
        for line, text in _literals(path):
            if not _code_like(text):
                continue
            hits = (set(WORD.findall(text)) & names) - ALLOWED
            found.extend(f"{path.name}:{line}: {hit}" for hit in sorted(hits))
    assert found == []
