"""The job identity the local and Slurm backends' records share: filled from a Launch, given to an ObservedRun,
and persisted under the keys state files already on disk use."""

from __future__ import annotations

from dataclasses import asdict, fields

import pytest

from expctl.backends.job_record import IDENTITY_TYPES, JobIdentity, identity_of, observed_identity
from expctl.backends.local.state import RunState
from expctl.backends.slurm.record import JobRecord, record_from_json
from expctl.core.model import JobKind, ObservedRun, Phase
from tests.support.factories import make_job, make_launch, make_spec

IDENTITY = ["name", "run_key", "experiment", "attempt", "spec_hash", "kind", "replicas", "gpus", "commit",
            "overrides", "mlflow_run_id", "applied_by", "created_at"]


def test_the_keys_of_state_files_stay_as_they_are() -> None:
    assert [f.name for f in fields(JobIdentity)] == IDENTITY == list(IDENTITY_TYPES)
    launch = make_launch(make_spec("e", overrides=("lr=0.1",), job=make_job(JobKind.PYTORCH, 2)), attempt=2)
    local = RunState(**identity_of(launch), command=["python"], env={}, timeout_seconds=None)
    assert sorted(asdict(local)) == sorted([
        *IDENTITY, "command", "env", "timeout_seconds", "status", "started_at", "processes", "phase", "failure",
        "message", "finished_at", "cancelled", "cancelled_by", "master_port", "gpu_devices"])
    slurm = JobRecord(**identity_of(launch))
    assert sorted(asdict(slurm)) == sorted([
        *IDENTITY, "job_id", "phase", "failure", "message", "finished_at", "cancelled", "cancelled_by", "extra"])
    assert record_from_json(asdict(slurm)) == slurm
    assert RunState.from_json(asdict(local)) == local


def test_identity_from_a_launch_to_an_observed_run() -> None:
    launch = make_launch(make_spec("e", overrides=("lr=0.1",), job=make_job(JobKind.PYTORCH, 2)), attempt=2)
    record = JobRecord(**identity_of(launch))
    assert (record.name, record.attempt, record.kind, record.replicas, record.overrides) == (
        launch.name, 2, "PyTorchJob", 2, ["lr=0.1"])
    observed = ObservedRun(**observed_identity(record), phase=Phase.RUNNING, backend="slurm")
    assert (observed.run_key, observed.name, observed.spec_hash, observed.overrides, observed.user) == (
        launch.spec.run_key, launch.name, launch.spec.spec_hash, ("lr=0.1",), launch.applied_by)
    assert observed.mlflow_run_id == launch.tracking.run_id and observed.commit == launch.spec.commit


def test_a_state_is_checked_field_by_field_and_its_annotations_evaluated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import typing

    launch = make_launch(make_spec("e", job=make_job(JobKind.PYTORCH, 1)))
    good = asdict(RunState(**identity_of(launch), command=["python"], env={"A": "1"}, timeout_seconds=None))
    good["processes"] = [{"replica": "master-0", "pid": 4242, "start_ticks": 7, "boot_id": None}]
    calls: list[object] = []
    real = typing.get_type_hints
    monkeypatch.setattr(typing, "get_type_hints", lambda *a, **k: calls.append(a) or real(*a, **k))
    for _ in range(50):
        assert RunState.from_json(good).processes[0].pid == 4242
    assert len(calls) <= 2  # RunState and Proc, at most once each per process (the cache may be warm)
    for key, bad in (("env", {"A": 1}), ("command", ["python", None]), ("timeout_seconds", 1.5),
                     ("finished_at", "soon"), ("gpus", True), ("gpu_devices", [["0"], [0]]), ("cancelled", 0)):
        try:
            RunState.from_json({**good, key: bad})
        except ValueError as exc:
            assert str(exc).startswith(f"{key}: not a"), exc
        else:
            raise AssertionError(f"{key}={bad!r} accepted")
    assert RunState.from_json({**good, "finished_at": 3, "timeout_seconds": None}).finished_at == 3
