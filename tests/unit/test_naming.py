"""Deterministic identities (``core/naming``): experiment names, run keys, object names within RFC 1035."""

from __future__ import annotations

import pytest

from expctl.core.naming import (
    MAX_NAME,
    attempt_name,
    canonical_json,
    experiment_name_error,
    is_rfc1035,
    run_key,
    run_name,
    sha256_hex,
    slug,
)


@pytest.mark.parametrize(("name", "error"), [
    ("resnet", None),
    ("team-a/resnet-50", None),
    ("a/b/c", None),
    ("a" * 63, None),
    ("", "experiment name is empty"),
    ("Resnet", "each path segment must start with a lowercase letter"),
    ("1st", "each path segment must start with a lowercase letter"),
    ("res_net", "each path segment must start with a lowercase letter"),
    ("resnet-", "each path segment must start with a lowercase letter"),
    ("team//resnet", "each path segment must start with a lowercase letter"),
    ("/resnet", "each path segment must start with a lowercase letter"),
    ("a" * 64, "longer than 63 characters"),
    ("a" * 40 + "/" + "b" * 22, None),  # 63 once slugged
    ("a" * 40 + "/" + "b" * 23, "longer than 63 characters"),
])
def test_experiment_name_error(name: str, error: str | None) -> None:
    found = experiment_name_error(name)
    assert (found is None) if error is None else (found is not None and error in found), found


@pytest.mark.parametrize(("experiment", "label"), [("resnet", "resnet"), ("team-a/resnet", "team-a-resnet"),
                                                   ("a/b/c", "a-b-c")])
def test_slug_is_one_label(experiment: str, label: str) -> None:
    assert slug(experiment) == label


@pytest.mark.parametrize(("value", "text"), [
    ({"b": 1, "a": [1, 2]}, '{"a":[1,2],"b":1}'),
    ({"é": "ü"}, '{"é":"ü"}'),
    ([float("nan")], "[NaN]"),
    ("x", '"x"'),
])
def test_canonical_json_is_sorted_compact_and_unescaped(value: object, text: str) -> None:
    assert canonical_json(value) == text


def test_sha256_hex() -> None:
    assert sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_a_run_key_ignores_the_order_of_overrides_and_nothing_else() -> None:
    key = run_key("exp", ["lr=0.1", "seed=1"])
    assert len(key) == 32 and int(key, 16) >= 0
    assert run_key("exp", ["seed=1", "lr=0.1"]) == key
    assert run_key("exp", ("seed=1", "lr=0.1")) == key
    assert len({key, run_key("exp", ["lr=0.1"]), run_key("exp2", ["lr=0.1", "seed=1"]),
                run_key("exp", ["lr=0.1", "seed=2"]), run_key("exp", [])}) == 5


@pytest.mark.parametrize("experiment", ["resnet", "team-a/resnet", "a" * 63, "a" * 35 + "-" + "b" * 10, "x"])
def test_a_run_name_leaves_room_for_attempts(experiment: str) -> None:
    key = run_key(experiment, ["lr=0.1"])
    name = run_name(experiment, key)
    assert name.endswith("-" + key[:10])
    assert len(attempt_name(name, 99)) <= MAX_NAME
    assert is_rfc1035(name) and is_rfc1035(attempt_name(name, 99))
    assert name.startswith(slug(experiment)[:8])


@pytest.mark.parametrize(("attempt", "name"), [(0, "job"), (1, "job"), (2, "job-r2"), (17, "job-r17")])
def test_attempt_name(attempt: int, name: str) -> None:
    assert attempt_name("job", attempt) == name


@pytest.mark.parametrize(("name", "ok"), [
    ("a", True), ("job-1", True), ("a" * 63, True), ("a" * 64, False), ("1job", False), ("job-", False),
    ("Job", False), ("job_1", False), ("", False), ("-job", False),
])
def test_is_rfc1035(name: str, ok: bool) -> None:
    assert is_rfc1035(name) is ok
