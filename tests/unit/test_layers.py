"""Stages import in one direction only (STYLE.md section 1), checked by reading the source with `ast`.

This repeats the import-linter contracts in `pyproject.toml` so that a plain `pytest` run catches a wrong
import too, including imports inside functions (the CLI imports stages lazily).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "medspace"


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    type_checking_only: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_in(path: Path) -> list[Import]:
    """Every module a source file imports, anywhere in the file, with relative imports resolved."""
    return imports_in_source(path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py")


def imports_in_source(source: str, importer: str, is_package: bool) -> list[Import]:
    found: list[Import] = []

    def visit(node: ast.AST, type_checking: bool) -> None:
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, type_checking)
            return
        if isinstance(node, ast.Import):
            found.extend(Import(importer, alias.name, type_checking) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = importer.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                parent = ".".join(base + ([node.module] if node.module else []))
            else:
                parent = node.module or ""
            found.append(Import(importer, parent, type_checking))
            # `from medspace import synth` imports the module medspace.synth.
            found.extend(Import(importer, f"{parent}.{alias.name}", type_checking) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child, type_checking)

    visit(ast.parse(source), False)
    return found


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


ALL_IMPORTS = [imp for path in sorted(PACKAGE.rglob("*.py")) for imp in imports_in(path)]


def test_walker_sees_lazy_imports() -> None:
    # Guards the walker itself: the CLI imports medspace.synth inside a function.
    assert any(imp.importer == "medspace.cli" and imp.imported == "medspace.synth" for imp in ALL_IMPORTS)


def test_core_imports_no_other_stage() -> None:
    wrong = [
        imp
        for imp in ALL_IMPORTS
        if within(imp.importer, "medspace.core")
        and not imp.type_checking_only
        and within(imp.imported, "medspace")
        and imp.imported != "medspace"
        and not within(imp.imported, "medspace.core")
    ]
    assert wrong == []


def test_only_the_cli_imports_synth() -> None:
    wrong = [
        imp
        for imp in ALL_IMPORTS
        if within(imp.imported, "medspace.synth")
        and imp.importer != "medspace.cli"
        and not within(imp.importer, "medspace.synth")
    ]
    assert wrong == []


@pytest.mark.parametrize(
    ("source", "importer", "is_package", "expected"),
    [
        ("from . import errors", "medspace.core", True, "medspace.core.errors"),
        ("from ._identifiers import x", "medspace.core.errors", False, "medspace.core._identifiers"),
        ("from .. import synth", "medspace.core.errors", False, "medspace.synth"),
        ("def f():\n    import medspace.synth.x", "medspace.cli", False, "medspace.synth.x"),
    ],
)
def test_walker_resolves_imports(source: str, importer: str, is_package: bool, expected: str) -> None:
    assert expected in {imp.imported for imp in imports_in_source(source, importer, is_package)}


def test_walker_marks_type_checking_imports() -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from medspace.cdm import Person\n"
    found = imports_in_source(source, "medspace.core.x", False)
    assert [imp.type_checking_only for imp in found if imp.imported == "medspace.cdm"] == [True]


# The stages in order (STYLE.md §1): each may import only those before it.
STAGES = [
    "medspace.core",
    "medspace.sources",
    "medspace.link",
    "medspace.cdm",
    "medspace.quality",
    "medspace.privacy",
]


@pytest.mark.parametrize("position", range(len(STAGES)))
def test_stages_import_only_earlier_stages(position: int) -> None:
    stage, later = STAGES[position], STAGES[position + 1 :]
    wrong = [
        imp
        for imp in ALL_IMPORTS
        if within(imp.importer, stage)
        and not imp.type_checking_only
        and any(within(imp.imported, other) for other in [*later, "medspace.cli", "medspace.synth"])
    ]
    assert wrong == []
