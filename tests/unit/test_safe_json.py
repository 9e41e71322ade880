"""JSON expctl reads from outside — saved plans, state and record files, annotations, MLflow tags: damage or
tampering is a ValueError or a default, never another exception (deep nesting is a RecursionError in json)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from expctl.backends.slurm.record import record_from_json
from expctl.core import safe_json
from expctl.core.model import Phase
from expctl.tracking.mlflow import audit as mlflow_audit
from expctl.tracking.mlflow.session import MlflowSession
from expctl.tracking.mlflow.tags import observed_from_run

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("text", [DEEP, '{"a":' * 50_000 + "1" + "}" * 50_000, "{", "", "\x00", "NaN]"])
def test_loads_raises_only_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        safe_json.loads(text)


@pytest.mark.parametrize(("text", "expected"), [
    (None, ()), ("", ()), ('["a=1", "b=2"]', ("a=1", "b=2")), ('{"a": 1}', ()), ("7", ()), ('["a", 1]', ()),
    ('"abc"', ()), (DEEP, ()), ("[", ()),
])
def test_string_list(text: str | None, expected: tuple[str, ...]) -> None:
    assert safe_json.string_list(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    (None, {}), ('{"d": "sha"}', {"d": "sha"}), ('["d"]', {}), ('{"d": 1}', {}), (DEEP, {}),
])
def test_string_map(text: str | None, expected: dict[str, str]) -> None:
    assert safe_json.string_map(text) == expected


@pytest.mark.parametrize(("text", "expected"), [(None, 4), ("2", 2), (" 3 ", 3), ("x", 4), ("1" * 5000, 4),
                                                ("2.5", 4)])
def test_integer(text: str | None, expected: int) -> None:
    assert safe_json.integer(text, 4) == expected


IDENTITY = {"expctl.attempt": "1", "expctl.run_key": "k", "expctl.spec_hash": "h", "expctl.job": "e-k"}
INFO = SimpleNamespace(status="FINISHED", start_time=1000, end_time=2000, run_id="r1")


@pytest.mark.parametrize("tags", [
    {"expctl.overrides": DEEP}, {"expctl.overrides": '{"x": 1}'}, {"expctl.overrides": "5"},
    {"expctl.replicas": "two", "expctl.gpus": "1" * 5000}, {"expctl.replicas": "", "expctl.gpus": "-"},
])
def test_tampered_tags_of_an_mlflow_run_never_stop_an_observe(tags: dict[str, str]) -> None:
    run = observed_from_run(INFO, {**IDENTITY, **tags}, "local")
    assert run is not None and run.phase is Phase.SUCCEEDED
    assert (run.overrides, run.replicas, run.gpus) == ((), 1, 0)  # the defaults, not a traceback


RECORD: dict[str, Any] = {"name": "e-k", "run_key": "k", "experiment": "e", "attempt": 1, "spec_hash": "h",
                          "kind": "Local", "replicas": 1, "gpus": 0, "commit": "c", "overrides": [],
                          "mlflow_run_id": "r", "applied_by": "a", "created_at": 1.5, "job_id": 7}


@pytest.mark.parametrize("data", [
    [], "x", {}, {**RECORD, "attempt": "1"}, {**RECORD, "job_id": "7"}, {**RECORD, "created_at": None},
    {**RECORD, "surprise": 1}, {**RECORD, "replicas": True},
])
def test_a_damaged_slurm_record_is_a_value_error(data: Any) -> None:
    with pytest.raises(ValueError):
        record_from_json(data)


def test_a_slurm_record_round_trips() -> None:
    assert record_from_json(RECORD).job_id == 7


@pytest.mark.parametrize("header", [DEEP, "[]", "{}", '{"apply_id": 1}'])
def test_a_damaged_audit_record_is_skipped(header: str) -> None:
    run = SimpleNamespace(info=SimpleNamespace(run_id="r"),
                          data=SimpleNamespace(tags={mlflow_audit.HEADER: header, mlflow_audit.STATE: "intent"}))
    assert mlflow_audit.open_records(MlflowSession("sqlite:///unused.db", "local"), [run]) == []


@pytest.mark.parametrize("entry", [DEEP, "[1]", "{", '"text"'])
def test_a_damaged_older_audit_entry_is_empty(entry: str) -> None:
    assert mlflow_audit._old_entry(entry) == {}
