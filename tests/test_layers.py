"""Layers point down: every rrlib import, read with ``ast``, goes to its own layer or below, and no cycle exists."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import rrlib

PACKAGE = Path(rrlib.__file__).parent
LAYER_OF = {unit: i for i, layer in enumerate(rrlib.LAYERS) for unit in layer}


def _unit(module: str) -> str | None:
    """``rrlib.judges.llm`` -> ``judges``; None outside rrlib."""
    parts = module.split(".")
    return parts[1] if parts[0] == "rrlib" and len(parts) > 1 else None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[str]:
    """Every imported rrlib module, at any depth (in functions too), except under ``if TYPE_CHECKING:``."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            if node.module == "rrlib":  # from rrlib import data, results
                found.extend(f"rrlib.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Unit -> the other units it imports."""
    graph: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package.parent).with_suffix("")
        unit = _unit(".".join(relative.parts))
        if unit is None or unit == "__init__":
            continue
        targets = {_unit(m) for m in _imports(ast.parse(path.read_text(), str(path)))}
        graph.setdefault(unit, set()).update(t for t in targets if t and t != unit and t != "__init__")
    return graph


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} (layer {LAYER_OF[a]}) imports {b} (layer {LAYER_OF[b]})"
                  for a, targets in graph.items() for b in targets if LAYER_OF[b] > LAYER_OF[a])


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_every_module_has_a_layer():
    graph = import_graph()
    assert set(graph) <= set(LAYER_OF), f"modules missing from rrlib.LAYERS: {sorted(set(graph) - set(LAYER_OF))}"
    assert set(LAYER_OF) <= set(graph), f"rrlib.LAYERS names modules that do not exist: {sorted(set(LAYER_OF) - set(graph))}"


def test_no_module_imports_one_above_it():
    assert upward_imports(import_graph()) == []


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_the_checks_catch_an_upward_import_and_a_cycle():
    """The checks themselves bite: a planted upward import and a planted cycle are found."""
    graph = {unit: set(targets) for unit, targets in import_graph().items()}
    graph["metrics"].add("book")
    assert f"metrics (layer {LAYER_OF['metrics']}) imports book (layer {LAYER_OF['book']})" in upward_imports(graph)
    graph["book"].add("metrics")
    graph["metrics"].add("book")
    graph["narrative"].add("book")
    graph["book"].add("narrative")
    assert find_cycle(graph) is not None


@pytest.mark.parametrize("source, expected", [
    ("from rrlib import data, results\n", {"rrlib", "rrlib.data", "rrlib.results"}),
    ("def f():\n    from rrlib.book import build\n", {"rrlib.book"}),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rrlib.book import build\n", {"typing"}),
])
def test_imports_are_read_at_any_depth_but_not_for_type_checking(source, expected):
    assert set(_imports(ast.parse(source))) == expected
