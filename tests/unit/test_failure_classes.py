"""A code failure is never classed as infrastructure (and so never retried as one), on either backend."""

from __future__ import annotations

import signal

import pytest

from expctl.backends.kubernetes.status import classify
from expctl.backends.local.state import judge
from expctl.core.model import FailureClass, Phase


def ended(code: int) -> dict[str, object]:
    return {"returncode": code, "finished_at": 1.0}


@pytest.mark.parametrize(("code", "expected"), [
    (1, FailureClass.CODE),
    (2, FailureClass.CODE),
    (127, FailureClass.CODE),  # command not found (the wrapper reports a program it cannot start as 127)
    (126, FailureClass.CODE),  # not executable
    (-signal.SIGSEGV, FailureClass.CODE),  # the program crashed by itself
    (-signal.SIGABRT, FailureClass.CODE),
    (-signal.SIGFPE, FailureClass.CODE),
    (-signal.SIGKILL, FailureClass.INFRASTRUCTURE),  # the OOM killer, or a machine going down
    (-signal.SIGTERM, FailureClass.INFRASTRUCTURE),
])
def test_local_exit_classification(code: int, expected: FailureClass) -> None:
    verdict = judge({"master-0": ended(code)}, set())  # type: ignore[dict-item]
    assert verdict.phase is Phase.FAILED and verdict.failure is expected


def test_a_vanished_replica_is_infrastructure() -> None:
    assert judge({"master-0": None}, set()).failure is FailureClass.INFRASTRUCTURE


@pytest.mark.parametrize(("reason", "message", "expected"), [
    ("PyTorchJobFailed", "PyTorchJob demo is failed because 1 Master replica(s) failed.", FailureClass.CODE),
    ("Error", "container exited with code 127: python: command not found", FailureClass.CODE),
    ("PyTorchJobFailed", "metric grpc_deadline_exceeded_total went up; preemptedness=0", FailureClass.CODE),
    ("Evicted", "The node was low on resource: memory.", FailureClass.INFRASTRUCTURE),
    ("OOMKilled", "", FailureClass.INFRASTRUCTURE),
    ("DeadlineExceeded", "Job was active longer than specified deadline", FailureClass.INFRASTRUCTURE),
    ("Failed", "pod was preempted by a higher priority pod", FailureClass.INFRASTRUCTURE),
    ("Failed", "Back-off pulling image: ErrImagePull", FailureClass.INFRASTRUCTURE),
])
def test_kubernetes_failure_classification(reason: str, message: str, expected: FailureClass) -> None:
    assert classify(reason, message) is expected
