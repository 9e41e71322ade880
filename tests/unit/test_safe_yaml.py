"""The one YAML loader: strict and bounded (expctl.safe_yaml)."""

from __future__ import annotations

import pytest

from expctl.config import safe_yaml
from expctl.core.errors import ConfigError


def bomb(levels: int) -> str:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("text", "message"), [
    ("a: 1\nb: 2\na: 3\n", "f.yaml: line 3: duplicate key 'a' (first defined on line 1)"),
    ("a:\n  b: 1\n  b: 2\n", "f.yaml: line 3: duplicate key 'b' (first defined on line 2)"),
    ("- {x: 1, x: 2}\n", "f.yaml: line 1: duplicate key 'x' (first defined on line 1)"),
    ("1: a\n1: b\n", "f.yaml: line 2: duplicate key 1 (first defined on line 1)"),
    (bomb(9), "f.yaml: line 1: document expands to more than 200,000 nodes (a YAML alias bomb?)"),
    ("a: &a [*a]\n", "f.yaml: line 1: recursive YAML alias (an anchor used inside itself)"),
    ("a: [1\n", "f.yaml: line 2: YAML syntax error: expected ',' or ']', but got '<stream end>'"),
    ("a: 1\n---\nb: 2\n", "f.yaml: line 2: YAML syntax error: but found another document"),
    ("x: !!python/name:os.system\n", "f.yaml: line 1: YAML syntax error: could not determine a constructor"),
    ("[" * 5000 + "]" * 5000, "f.yaml: line 1: YAML nesting is too deep (more than 100 levels)"),
    ("a:\n" + "".join(f"{'  ' * i}- b:\n" for i in range(1, 60)) + "  " * 60 + "- 1\n",
     "f.yaml: line 51: YAML nesting is too deep (more than 100 levels)"),
])
def test_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        safe_yaml.load(text, "f.yaml")
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_nesting_up_to_the_bound_is_read() -> None:
    assert safe_yaml.load("[" * safe_yaml.MAX_DEPTH + "]" * safe_yaml.MAX_DEPTH, "f.yaml") is not None


def test_too_many_aliases() -> None:
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * (safe_yaml.MAX_ALIASES + 1)) + "]\n"
    with pytest.raises(ConfigError, match=r"more than 1000 YAML aliases"):
        safe_yaml.load(text, "f.yaml")


def test_size_limit_and_encoding() -> None:
    with pytest.raises(ConfigError, match=r"^f.yaml: file is 1.0 MiB, over the limit of 1 MiB"):
        safe_yaml.load(b"x: '" + b"a" * (1 << 20) + b"'\n", "f.yaml")
    with pytest.raises(ConfigError, match=r"^f.yaml: not UTF-8 text \(byte 3\)"):
        safe_yaml.load(b"a: \xff\n", "f.yaml")


def test_accepted() -> None:
    assert safe_yaml.load("base: &b {x: 1}\nuse:\n  <<: *b\n  y: 2\n", "f.yaml") == \
        {"base": {"x": 1}, "use": {"x": 1, "y": 2}}
    assert safe_yaml.load("", "f.yaml") is None
    assert safe_yaml.load(bomb(4), "f.yaml")["l3"][0][0][0] == ["x"] * 9  # aliases are fine within bounds

