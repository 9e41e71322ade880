"""The scan of a snapshot's configs before Hydra sees them (``config/prescan``): parsed safely, resolvers
allow-listed, no search path, no defaults entry leaving conf/ — each error with its file and key."""

from __future__ import annotations

from typing import Any

import pytest

from expctl.config.prescan import (
    OUTSIDE_CONF,
    SEARCHPATH_REFUSED,
    defaults_errors,
    escapes_conf,
    leaves,
    parse_configs,
    resolver_errors,
    searchpath_errors,
)


def test_parse_configs_reads_yaml_files_only_and_reports_each_bad_one() -> None:
    docs, errors = parse_configs({
        "conf/config.yaml": b"seed: 0\n",
        "conf/list.yml": b"- a\n- b\n",
        "conf/empty.yaml": b"",
        "code/train.py": b"print('not yaml')\n",
        "conf/hello.yaml": b"hello\n",
        "conf/broken.yaml": b"a: [1, 2\n",
        "conf/twice.yaml": b"a: 1\na: 2\n",
    })
    assert docs == {"conf/config.yaml": {"seed": 0}, "conf/list.yml": ["a", "b"], "conf/empty.yaml": None}
    assert [e.file for e in errors] == ["conf/broken.yaml", "conf/hello.yaml", "conf/twice.yaml"]
    assert errors[1].message == "must be a mapping of keys to values (got str 'hello')"


@pytest.mark.parametrize(("value", "allow", "blocked"), [
    ("${oc.env:HOME}", (), "oc.env"),
    ("${ oc.env :HOME}", (), "oc.env"),
    ("prefix-${now:%Y}-suffix", (), "now"),
    ("${oc.select:a.b, 1}", (), None),
    ("${oc.decode:${x}}", (), None),
    ("${x}", (), None),
    ("${oc.env:HOME}", ("oc.env",), None),
    ("${a.b:${oc.env:X}}", ("a.b",), "oc.env"),
    ("no interpolation", (), None),
])
def test_resolver_errors(value: str, allow: tuple[str, ...], blocked: str | None) -> None:
    errors = resolver_errors({"conf/model/small.yaml": {"model": {"name": [value]}}}, allow)
    if blocked is None:
        assert errors == []
        return
    (error,) = errors
    assert (error.file, error.key) == ("conf/model/small.yaml", "model.name[0]")
    assert error.message.startswith(f"resolver '{blocked}' is not allowed in committed configs")


def test_resolver_errors_skip_the_settings_file_and_scalars() -> None:
    docs: dict[str, Any] = {"expctl.yaml": {"x": "${oc.env:HOME}"}, "conf/s.yaml": "${oc.env:HOME}"}
    assert [(e.file, e.key) for e in resolver_errors(docs)] == [("conf/s.yaml", None)]


@pytest.mark.parametrize(("doc", "refused"), [
    ({"hydra": {"searchpath": ["file:///home/ci"]}}, True),
    ({"hydra": {"searchpath": []}}, True),
    ({"hydra": {"job": {"name": "x"}}}, False),
    ({"searchpath": ["x"]}, False),
    ({"hydra": "searchpath"}, False),
    (["hydra"], False),
])
def test_searchpath_errors(doc: Any, refused: bool) -> None:
    errors = searchpath_errors({"experiments/e.yaml": doc})
    assert [(e.file, e.key, e.message) for e in errors] == (
        [("experiments/e.yaml", "hydra.searchpath", SEARCHPATH_REFUSED)] if refused else [])


@pytest.mark.parametrize(("name", "escapes"), [
    ("../x", True), ("model/../../etc/creds", True), ("..\\x", True), ("a/..", True), ("..", True),
    ("model/small", False), ("/model", False), ("a..b", False), ("...", False), ("", False),
])
def test_escapes_conf(name: str, escapes: bool) -> None:
    assert escapes_conf(name) is escapes


@pytest.mark.parametrize(("entries", "keys"), [
    (["config", "_self_"], []),
    (["config", "../secret"], ["defaults[1]"]),
    ([{"model": "../../home/ci/creds"}], ["defaults[0]"]),
    ([{"override /model": "../x"}], ["defaults[0]"]),
    ([{"../group": "small"}], ["defaults[0]"]),
    ([{"model": ["small", "../x"]}], ["defaults[0]"]),
    ([{"model": "small"}, {"optional db": None}, 3], []),
    ("not a list", []),
])
def test_defaults_errors(entries: Any, keys: list[str]) -> None:
    errors = defaults_errors({"experiments/e.yaml": {"defaults": entries}})
    assert [e.key for e in errors] == keys
    assert all(e.file == "experiments/e.yaml" and e.message == OUTSIDE_CONF for e in errors)


@pytest.mark.parametrize(("data", "found"), [
    ({"a": {"b": 1, "c": [2, {"d": 3}]}}, [("a.b", 1), ("a.c[0]", 2), ("a.c[1].d", 3)]),
    ([1, [2]], [("[0]", 1), ("[1][0]", 2)]),
    ({}, []),
    (5, [("", 5)]),
    ({1: "x"}, [("1", "x")]),
])
def test_leaves(data: Any, found: list[tuple[str, Any]]) -> None:
    assert list(leaves(data, "")) == found
