"""The tests as a codebase: shared helpers live in ``tests/support`` (and the contract suites in
``tests/contract``), so that moving a helper never breaks an unrelated test module.

- no module under ``tests/`` imports a test module (``test_*``) or a conftest: fixtures reach tests through
  pytest, everything else through ``tests.support``;
- a test runs Python given as ``python -c SOURCE`` only for one short statement (imports aside); longer code is
  a file under ``tests/support/`` (a job under ``tests/support/jobs/``), which refactoring tools see;
- no string holds a Python program (a module with imports, over several lines): it is a file too.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
SELF = Path(__file__).name  # its examples of what the checks find are strings
PYTHONS = ("python", "python3")
MAX_INLINE = 100  # characters of a ``python -c`` source
YAML_COMMAND = re.compile(r"\[python3?, -c, (\"(?:[^\"\\]|\\.)*\"|'(?:[^']|'')*'|[^\],]*)")
SHELL_COMMAND = re.compile(r"python3? -c (\"(?:[^\"\\]|\\.)*\"|'[^']*')")


def modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(TESTS.rglob("*.py")):
        yield str(path.relative_to(TESTS.parent)), ast.parse(path.read_text(), str(path))


def imported(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Every module an import statement names (``from a import b`` names ``a`` and ``a.b``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.lineno, node.module
            yield from ((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)


def is_test_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "tests" and any(p.startswith("test_") or p == "conftest" for p in parts[1:])


def text(node: ast.expr) -> str | None:
    """The string an expression spells, as far as the file alone says (f-string values read as ``{}``, and
    ``sys.executable`` as ``python``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(text(v) or "{}" for v in node.values)
    if isinstance(node, ast.FormattedValue):
        return text(node.value)
    if isinstance(node, ast.Attribute) and ast.unparse(node) == "sys.executable":
        return "python"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = text(node.left), text(node.right)
        return None if left is None or right is None else left + right
    return None


def inline_sources(tree: ast.Module) -> Iterator[tuple[int, str | None]]:
    """Every ``python -c`` source of a file: in an argument list (``("python", "-c", SOURCE)``, SOURCE a string
    or a name bound to one), in an experiment's YAML (``[python, -c, SOURCE]``) or in a shell command line."""
    bound = sorted(((node.lineno, t.id, node.value) for node in ast.walk(tree) if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name)), key=lambda b: b[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.List | ast.Tuple):
            items = node.elts
            for i in range(1, len(items) - 1):
                if text(items[i]) == "-c" and text(items[i - 1]) in PYTHONS:
                    source = items[i + 1]
                    if isinstance(source, ast.Name):  # the name's last binding before this line
                        values = [v for line, name, v in bound if name == source.id and line <= node.lineno]
                        source = values[-1] if values else source
                    yield node.lineno, text(source)
        elif isinstance(node, ast.Constant | ast.JoinedStr):
            spelled = text(node) or ""
            for pattern in (YAML_COMMAND, SHELL_COMMAND):
                for match in pattern.finditer(spelled):
                    yield node.lineno, match.group(1).strip().strip("'\"")


def short(source: str | None) -> bool:
    """One simple statement (imports aside), on one line, of at most MAX_INLINE characters."""
    if source is None or "\n" in source or len(source) > MAX_INLINE:
        return False
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    statements = [s for s in body if not isinstance(s, ast.Import | ast.ImportFrom)]
    simple = (ast.Expr, ast.Assign, ast.AugAssign, ast.Pass, ast.Raise)
    return len(statements) <= 1 and all(isinstance(s, simple) for s in statements)


def held_programs(tree: ast.Module) -> Iterator[int]:
    """Strings that are Python programs: several lines that parse as a module importing something."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.count("\n") >= 2):
            continue
        try:
            body = ast.parse(node.value).body
        except SyntaxError:
            continue
        if any(isinstance(s, ast.Import | ast.ImportFrom) for s in body):
            yield node.lineno


def test_no_module_imports_a_test_module_or_a_conftest() -> None:
    found: dict[str, str] = {}
    for path, tree in modules():
        for line, name in imported(tree):
            if is_test_module(name):
                found.setdefault(f"{path}:{line}", name)
    listed = "\n".join(f"{where}: imports {name}" for where, name in found.items())
    assert not found, "tests/support holds what tests share:\n" + listed


def test_tests_import_only_the_support_and_contract_packages() -> None:
    found: dict[str, str] = {}
    for path, tree in modules():
        for line, name in imported(tree):
            if name.startswith("tests.") and name.split(".")[1] not in ("support", "contract"):
                found.setdefault(f"{path}:{line}", name)
    assert not found, "\n".join(f"{k}: imports {v}" for k, v in found.items())


def test_python_given_on_a_command_line_is_one_short_statement() -> None:
    found = [f"{path}:{line}: python -c {source!r}" for path, tree in modules() if not path.endswith(SELF)
             for line, source in inline_sources(tree) if not short(source)]
    assert found == [], "make these files under tests/support/ (jobs: tests/support/jobs/):\n" + "\n".join(found)


def test_no_string_holds_a_python_program() -> None:
    found = [f"{path}:{line}" for path, tree in modules() if not path.endswith(SELF)
             for line in held_programs(tree)]
    assert found == [], "make these files under tests/support/ (jobs: tests/support/jobs/):\n" + "\n".join(found)


@pytest.mark.parametrize(("source", "ok"), [
    ("pass", True),
    ("print('hello')", True),
    ("import os; os.abort()", True),
    ("import os, sys; sys.exit(os.environ['EXPCTL_ATTEMPT'] == '1')", True),
    ("import json, os; keys = ['A']; print(json.dumps(keys))", False),  # two statements
    ("import time\nfor i in range(3):\n    print(i)", False),  # a block over lines
    ("while True: pass", False),  # a compound statement
    ("print('" + "x" * MAX_INLINE + "')", False),  # too long
    ("exit 0", False),  # not Python
    (None, False),  # not a string the file spells (a file would do)
])
def test_a_short_source_is_one_simple_statement(source: str | None, ok: bool) -> None:
    assert short(source) is ok


def test_the_checks_find_what_they_look_for() -> None:
    """The finders themselves: each form of ``python -c`` and a held program are seen."""
    tree = ast.parse('''
import sys
SCRIPT = "import os; a = 1; b = 2"
a = ("python", "-c", SCRIPT)
b = [sys.executable, "-c", "pass"]
c = "expctl:\\n  command: [python, -c, \\"import os; os.abort()\\"]\\n"
d = f"{sys.executable} -c \\"import sys; print(1)\\" %s"
e = """import os\\nprint(os.getcwd())\\nprint(1)\\n"""
''' + "from tests" + ".integration.test_x import helper\n")  # spelled apart: a grep for such imports stays empty
    assert [source for _, source in inline_sources(tree)] == [
        "import os; a = 1; b = 2", "pass", "import os; os.abort()", "import sys; print(1)"]
    assert list(held_programs(tree)) == [8]
    assert [name for _, name in imported(tree) if is_test_module(name)] == [
        "tests.integration.test_x", "tests.integration.test_x.helper"]
