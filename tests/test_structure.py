"""The package's size rules (DEVELOPERS.md), checked on its source with :mod:`ast`.

No module over ~400 lines, no class over ~250, no function over ~60 lines or ~15
branches without a reason written next to it, and no private name of the package
imported across its modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "plausible_wsgi"
MODULE_LINES = 420  # "~400"
CLASS_LINES = 250
FUNCTION_LINES = 60
FUNCTION_BRANCHES = 15

_BRANCHES = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.ExceptHandler, ast.BoolOp, ast.IfExp)


def branches(node: ast.AST) -> int:
    count = 0
    for child in ast.walk(node):
        if isinstance(child, _BRANCHES):
            count += 1
        elif isinstance(child, ast.comprehension):
            count += len(child.ifs)
        elif type(child).__name__ == "match_case":
            count += 1
    return count


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def units(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.AST]]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            name = prefix + node.name
            yield name, node
            yield from units(node, name + ".")


def reason_above(lines: list[str], node: ast.AST) -> bool:
    """A comment right above the unit (or its decorators) that says why it is long."""
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    index = first - 2
    while index >= 0 and lines[index].strip().startswith("#"):
        if "lines" in lines[index] or "branches" in lines[index]:
            return True
        index -= 1
    return False


def oversized() -> Iterator[str]:
    for path in modules():
        relative = path.relative_to(PACKAGE).as_posix()
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        if len(lines) > MODULE_LINES and "over the usual" not in source:
            yield relative
        for name, node in units(ast.parse(source)):
            length = node.end_lineno - node.lineno + 1  # type: ignore[attr-defined]
            if isinstance(node, ast.ClassDef):
                over = length > CLASS_LINES
            else:
                over = length > FUNCTION_LINES or branches(node) > FUNCTION_BRANCHES
            if over and not reason_above(lines, node):
                yield f"{relative}:{name}"


def test_no_unit_over_the_limits_without_a_reason() -> None:
    assert sorted(oversized()) == []


def private_imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    ours: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            internal = node.level > 0 or (node.module or "").startswith("plausible_wsgi")
            for alias in node.names:
                if internal and alias.name.startswith("_") and not alias.name.startswith("__"):
                    yield f"from {node.module or '.'} import {alias.name}"
                if internal:
                    ours.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("plausible_wsgi"):
                    ours.add(alias.asname or alias.name.partition(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in ours
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not node.attr.startswith("_replace")  # namedtuple's public API
        ):
            yield f"{node.value.id}.{node.attr}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_private_name_imported_across_modules(path: Path) -> None:
    assert list(private_imports(path)) == []


def test_no_test_module_imports_another() -> None:
    """Shared servers and helpers live in helper modules (``wire``, ``sink``, ``faults``...):
    importing a test module runs its collection-time code twice and hides its fixtures."""
    here = Path(__file__).resolve().parent
    found = []
    for path in sorted(here.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("test_"):
                found.append(f"{path.name} imports {node.module}")
            elif isinstance(node, ast.Import):
                found += [
                    f"{path.name} imports {a.name}"
                    for a in node.names
                    if a.name.startswith("test_")
                ]
    assert found == []
