"""A point's swept values set on a composed config without Hydra (``config/sweep_axes``): which paths exist,
how a value is set (mappings merge, the rest is shared), and when interpolations must be resolved again.
``simple_element_value`` is compared with Hydra's own parser in ``test_sweep_element_values.py``."""

from __future__ import annotations

from typing import Any

import pytest

from expctl.config.sweep_axes import Axis, depends_on_sweep, exists, set_path


def axis(path: str, group: bool = False) -> Axis:
    return Axis(key=path, path=path, group=group, sweep=True, elements=(f"{path}=1",), values=(1,))


@pytest.mark.parametrize(("path", "found"), [
    ("a", True), ("a.b", True), ("a.b.c", True), ("a.x", False), ("x", False), ("a.b.c.d", False),
    ("l", True), ("l.0", False), ("n", True), ("n.x", False),
])
def test_exists(path: str, found: bool) -> None:
    assert exists({"a": {"b": {"c": 1}}, "l": [1], "n": None}, path) is found


@pytest.mark.parametrize(("parts", "value", "result"), [
    (["a", "b"], 2, {"a": {"b": 2, "k": 0}, "s": {"t": 1}}),
    (["x"], 1, {"a": {"b": 1, "k": 0}, "s": {"t": 1}, "x": 1}),
    (["x", "y"], 1, {"a": {"b": 1, "k": 0}, "s": {"t": 1}, "x": {"y": 1}}),
    (["a"], {"b": 5, "new": 6}, {"a": {"b": 5, "k": 0, "new": 6}, "s": {"t": 1}}),  # mappings merge
    (["a"], 7, {"a": 7, "s": {"t": 1}}),
    (["a", "b", "c"], 1, {"a": {"b": {"c": 1}, "k": 0}, "s": {"t": 1}}),  # a scalar on the way is replaced
])
def test_set_path(parts: list[str], value: Any, result: dict[str, Any]) -> None:
    data: dict[str, Any] = {"a": {"b": 1, "k": 0}, "s": {"t": 1}}
    out = set_path(data, parts, value)
    assert out == result
    assert data == {"a": {"b": 1, "k": 0}, "s": {"t": 1}}  # never changed in place
    assert out["s"] is data["s"]  # only the spine is copied


@pytest.mark.parametrize(("config", "axes", "depends"), [
    ({"lr": 0.1, "opt": {"lr": "${lr}"}}, [axis("lr")], True),
    ({"lr": 0.1, "opt": {"name": "sgd"}}, [axis("lr")], False),
    ({"lr": 0.1, "a": "${b}", "b": "${lr}"}, [axis("lr")], True),  # through another interpolation
    ({"lr": 0.1, "x": "${seed}"}, [axis("lr")], False),
    ({"opt": {"lr": 0.1}, "x": "${..lr}"}, [axis("opt.lr")], True),  # relative: conservatively yes
    ({"opt": {"lr": 0.1}, "x": "${.lr}"}, [axis("opt.lr")], True),
    ({"model": "small", "x": "${model}"}, [axis("model", group=True)], False),  # group axes: recomposed
    ({"x": "${lr}"}, [], False),
])
def test_depends_on_sweep(config: dict[str, Any], axes: list[Axis], depends: bool) -> None:
    assert depends_on_sweep(config, axes) is depends
