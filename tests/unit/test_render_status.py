"""Reading live job objects back into ObservedRun: per-kind health and failure classes (pure)."""

from __future__ import annotations

import gc
import json
from typing import Any

import pytest

from expctl.backends.kubernetes.manifests import KubeSettings, render_manifest
from expctl.backends.kubernetes.status import decode_list, observed_from
from expctl.core.model import FailureClass, JobKind, Phase, Resources
from tests.support.factories import make_job, make_launch, make_spec

T = "2026-01-02T03:04:05Z"


def cond(ctype: str, status: str = "True", reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": ctype, "status": status, "reason": reason, "message": message, "lastTransitionTime": T}


def live(kind: JobKind, status: dict[str, Any] | None = None, **annotations: str) -> dict[str, Any]:
    job = make_job(kind, 3, runtime="rt", resources=Resources(cpu="1", gpus=2))
    obj = render_manifest(make_launch(make_spec("team/x", ("a=1",), job=job), attempt=2), KubeSettings())
    obj["metadata"]["creationTimestamp"] = "2026-01-02T03:00:00Z"
    obj["metadata"]["annotations"].update(annotations)
    obj["status"] = status or {}
    return obj


@pytest.mark.parametrize(
    ("conditions", "phase"),
    [
        ([], Phase.PENDING),
        ([cond("Created")], Phase.PENDING),
        ([cond("Created"), cond("Running")], Phase.RUNNING),
        ([cond("Created"), cond("Running", "False"), cond("Restarting")], Phase.RUNNING),
        ([cond("Created"), cond("Running", "False"), cond("Succeeded")], Phase.SUCCEEDED),
        ([cond("Created"), cond("Running", "False"), cond("Failed")], Phase.FAILED),
        ([cond("Created"), cond("Suspended")], Phase.PENDING),
    ],
)
@pytest.mark.parametrize("kind", [JobKind.PYTORCH, JobKind.TF, JobKind.MPI])
def test_v1_health(kind: JobKind, conditions: list[dict[str, str]], phase: Phase) -> None:
    run = observed_from(live(kind, {"conditions": conditions}))
    assert run.phase is phase and run.kind == kind.value


@pytest.mark.parametrize(
    ("conditions", "phase"),
    [
        ([], Phase.PENDING),
        ([cond("Suspended")], Phase.PENDING),
        ([cond("Complete")], Phase.SUCCEEDED),
        ([cond("Failed")], Phase.FAILED),
        ([cond("Complete", "False"), cond("Suspended", "False")], Phase.PENDING),
    ],
)
def test_trainjob_health(conditions: list[dict[str, str]], phase: Phase) -> None:
    assert observed_from(live(JobKind.TRAIN, {"conditions": conditions})).phase is phase


@pytest.mark.parametrize(
    ("reason", "message", "failure"),
    [
        ("PyTorchJobFailed", "job failed: exit code 1", FailureClass.CODE),
        ("Evicted", "The node was low on resource: memory.", FailureClass.INFRASTRUCTURE),
        ("PyTorchJobFailed", "pod x-worker-0 was Preempted", FailureClass.INFRASTRUCTURE),
        ("PyTorchJobFailed", "container pytorch OOMKilled", FailureClass.INFRASTRUCTURE),
        ("NodeLost", "", FailureClass.INFRASTRUCTURE),
        ("PyTorchJobFailed", "Back-off: ImagePullBackOff", FailureClass.INFRASTRUCTURE),
        ("", "ErrImagePull", FailureClass.INFRASTRUCTURE),
        ("DeadlineExceeded", "Job was active longer than specified deadline", FailureClass.INFRASTRUCTURE),
    ],
)
def test_failure_class(reason: str, message: str, failure: FailureClass) -> None:
    status = {"conditions": [cond("Failed", reason=reason, message=message)], "completionTime": T}
    run = observed_from(live(JobKind.PYTORCH, status))
    assert run.phase is Phase.FAILED and run.failure is failure
    assert run.finished_at is not None


def test_identity_round_trips() -> None:
    run = observed_from(live(JobKind.MPI, {"conditions": [cond("Succeeded")]}))
    spec = make_spec(
        "team/x", ("a=1",), job=make_job(JobKind.MPI, 3, runtime="rt", resources=Resources(cpu="1", gpus=2))
    )
    assert (run.run_key, run.spec_hash, run.experiment) == (spec.run_key, spec.spec_hash, "team/x")
    assert (run.attempt, run.overrides, run.commit) == (2, ("a=1",), "0" * 40)
    assert (run.replicas, run.gpus, run.mlflow_run_id) == (3, 2, "f" * 32)
    assert run.managed and run.live and run.user == "Test User <test@example.com>"
    assert run.created_at == pytest.approx(1767322800.0)
    assert run.finished_at == pytest.approx(1767323045.0)


def test_cancel_annotation_wins_over_an_unfinished_phase_only() -> None:
    ann = {"expctl.io/cancelled-by": "alice", "expctl.io/cancelled-at": T}
    running = observed_from(live(JobKind.PYTORCH, {"conditions": [cond("Running")]}, **ann))
    assert (running.phase, running.cancelled, running.message) == (
        Phase.CANCELLED,
        True,
        "cancelled by alice",
    )
    assert running.finished_at is not None
    done = observed_from(live(JobKind.PYTORCH, {"conditions": [cond("Succeeded")]}, **ann))
    assert (done.phase, done.cancelled) == (Phase.SUCCEEDED, True)


def test_unmanaged_object() -> None:
    obj = live(JobKind.TF)
    obj["metadata"]["labels"].pop("expctl.io/managed-by")
    assert not observed_from(obj).managed


@pytest.mark.parametrize("kind", [JobKind.PYTORCH, JobKind.TF, JobKind.MPI, JobKind.TRAIN])
def test_a_suspended_job_is_pending_never_failed(kind: JobKind) -> None:
    obj = live(kind, {"conditions": [cond("Created"), cond("Running")]})
    if kind is JobKind.TRAIN:
        obj["spec"]["suspend"] = True
    else:
        obj["spec"].setdefault("runPolicy", {})["suspend"] = True
    run = observed_from(obj)  # Kueue preempted it: suspend is set, the Running condition is still stale
    assert run.phase is Phase.PENDING and run.failure is None
    assert run.message == "suspended (by its queue: not admitted yet, or preempted)"
    obj["status"] = {"conditions": [cond("Suspended", reason="JobSuspended", message="job is suspended")]}
    assert observed_from(obj).message == "suspended: job is suspended"
    obj["status"]["conditions"].append(cond("Succeeded" if kind is not JobKind.TRAIN else "Complete"))
    assert observed_from(obj).phase is Phase.SUCCEEDED  # finished is finished, suspended or not
    obj["status"] = {}
    obj["metadata"]["annotations"]["expctl.io/cancelled-by"] = "ada"
    assert observed_from(obj).phase is Phase.CANCELLED  # expctl's own cancel suspends too: cancelled wins


@pytest.mark.parametrize(("overrides", "attempt", "expected"), [
    ('{"a": 1}', "2", ((), 2)),          # an object, not a list of overrides
    ("5", "x", ((), 1)),                  # a number; an attempt that is not one
    ('["a=1", 3]', "1" * 5000, ((), 1)),  # a non-string item; an integer too long to parse
    ("[" * 50_000, "2", ((), 2)),         # nested too deeply for the JSON parser
    ('["b=2"]', " 3 ", (("b=2",), 3)),
])
def test_hand_edited_annotations_never_stop_an_observe(overrides: str, attempt: str,
                                                        expected: tuple[tuple[str, ...], int]) -> None:
    obj = live(JobKind.PYTORCH, **{"expctl.io/overrides": overrides, "expctl.io/attempt": attempt})
    run = observed_from(obj)
    assert (run.overrides, run.attempt) == expected


@pytest.mark.parametrize("collecting", [True, False])
def test_a_list_page_is_decoded_from_its_bytes_and_the_collector_left_as_it_was(collecting: bool) -> None:
    obj = live(JobKind.PYTORCH, {"conditions": [cond("Succeeded")]})
    body = json.dumps({"kind": "PyTorchJobList", "metadata": {"continue": "t"}, "items": [obj]}).encode()
    was = gc.isenabled()
    (gc.enable if collecting else gc.disable)()
    try:
        page = decode_list(body)
        assert gc.isenabled() is collecting
    finally:
        (gc.enable if was else gc.disable)()
    assert page["metadata"] == {"continue": "t"} and observed_from(page["items"][0]) == observed_from(obj)
