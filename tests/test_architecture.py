"""The layout is the architecture (docs/DESIGN.md "Layout"): dependencies point one way, modules and functions
stay small enough to hold in mind. The checks read the sources with `ast`, imports inside functions included."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# engine <- collector <- canary, evals <- gate <- inferwatch; dashboards read the store (anything but inferwatch)
MAY_IMPORT: dict[str, frozenset[str]] = {
    "engine": frozenset({"engine"}),
    "collector": frozenset({"engine", "collector"}),
    "canary": frozenset({"engine", "collector", "canary"}),
    "evals": frozenset({"engine", "collector", "evals"}),
    "gate": frozenset({"engine", "collector", "canary", "evals", "gate"}),
    "dashboards": frozenset({"engine", "collector", "canary", "evals", "gate", "dashboards"}),
    "inferwatch": frozenset({"engine", "collector", "canary", "evals", "gate", "dashboards", "inferwatch"}),
}
PACKAGES = tuple(MAY_IMPORT)
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> Iterator[tuple[str, Path]]:
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            yield package, path


def imported_packages(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, top-level package) of every absolute import in the tree, at any depth."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


def upward_imports(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    found = []
    for package, path in modules(root, packages):
        for line, target in imported_packages(ast.parse(path.read_text(), str(path))):
            if target in MAY_IMPORT and target not in MAY_IMPORT[package]:
                found.append(f"{path.relative_to(root)}:{line}: {package} imports {target}")
    return found


def long_modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    return [
        f"{path.relative_to(root)}: {n} lines"
        for _, path in modules(root, packages)
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]


def long_functions(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    found = []
    for _, path in modules(root, packages):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = (node.end_lineno or node.lineno) - first + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(root)}:{node.lineno}: {node.name} is {length} lines")
    return found


def test_dependencies_point_one_way() -> None:
    assert upward_imports(ROOT) == []


def test_no_module_is_longer_than_400_lines() -> None:
    assert long_modules(ROOT) == []


def test_no_function_is_longer_than_60_lines() -> None:
    assert long_functions(ROOT) == []


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A made-up tree that breaks each rule once, to show the checks can fail."""
    (tmp_path / "engine").mkdir()
    (tmp_path / "collector").mkdir()
    (tmp_path / "engine" / "a.py").write_text("def f():\n    from collector.store import door\n")
    body = "".join(f"    x{i} = {i}\n" for i in range(60))
    (tmp_path / "collector" / "b.py").write_text("import engine.specs\n\n\ndef g():\n" + body + "\n" * 340)
    return tmp_path


def test_the_checks_find_an_upward_import_inside_a_function(tree: Path) -> None:
    assert upward_imports(tree, ("engine", "collector")) == ["engine/a.py:2: engine imports collector"]


def test_the_checks_count_module_and_function_lines(tree: Path) -> None:
    assert long_modules(tree, ("engine", "collector")) == ["collector/b.py: 404 lines"]
    assert long_functions(tree, ("engine", "collector")) == ["collector/b.py:4: g is 61 lines"]
