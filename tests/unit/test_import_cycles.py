"""No import cycle among expctl's modules: every import counts, those under ``TYPE_CHECKING`` and those inside a
function (a lazy import only defers the cycle) included.

Read from the source with ``ast`` (nothing is imported), so the check costs milliseconds. References held in
strings (the backend registry's ``"module:function"``, the CLI's command table) are not imports and are not
followed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
ROOT = "expctl"


def _modules() -> dict[str, Path]:
    """``{dotted name: file}`` of every module of the package (a package is its ``__init__``)."""
    found: dict[str, Path] = {}
    for path in sorted((SRC / ROOT).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of a (possibly relative) ``from`` import's module."""
    if level == 0:
        return name or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _imported(module: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """Every expctl module ``module`` imports, anywhere in its file: for ``import a.b`` the module ``a.b``; for
    ``from a import b`` the submodule ``a.b`` when there is one, else ``a`` (the package whose name ``b`` is).
    A package above the module named is not counted (as import-linter does not): importing a submodule runs its
    package's ``__init__``, but a package that imports its own submodules is not a cycle."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, is_package, node.level, node.module)
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        for name in names:
            if name in modules and name != module:
                yield name


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: set(_imported(name, path, modules)) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan), each as a closed path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(_path_within(graph, set(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _path_within(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A closed path through a strongly connected component, for the failure message."""
    start = min(component)
    path, seen = [start], {start}
    while True:
        nxt = min(n for n in graph[path[-1]] if n in component)
        path.append(nxt)
        if nxt in seen:
            return path[path.index(nxt):]
        seen.add(nxt)


def test_the_checker_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_type_checking_and_lazy_imports() -> None:
    graph = import_graph()
    assert "expctl.tracking.base" in graph["expctl.engine.apply"]  # a module-level import
    assert "expctl.tracking.mlflow.store" in graph["expctl.engine.workspace"]  # a lazy import in a method


def test_no_import_cycle_among_expctl_modules() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)
