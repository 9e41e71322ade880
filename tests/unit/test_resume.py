"""Which checkpoint a retry resumes from: the pure decision, the tracker lookup, the env the job gets."""

from __future__ import annotations

from dataclasses import replace

import pytest

from expctl.backends.kubernetes.manifests.common import env as kube_env
from expctl.core.jobenv import checkpoint_env
from expctl.core.model import (
    Action,
    Change,
    Checkpoint,
    CheckpointPolicy,
    FailureClass,
    Launch,
    ObservedRun,
    Phase,
    ResumeFrom,
)
from expctl.engine.resume import choose, resume_point, resumes
from expctl.engine.writes import apply_change
from expctl.tracking.mlflow.tags import checkpoint_in, resume_tags, resumed_from
from tests.support.factories import make_job, make_launch, make_spec
from tests.support.fakes import FakeBackend, FakeCheckpointTracker, FakeTracker

DEFAULT = CheckpointPolicy()


def _retry(failure: FailureClass | None, policy: CheckpointPolicy = DEFAULT, *,
           action: Action = Action.RETRY, phase: Phase = Phase.FAILED, attempt: int = 2,
           other_hash: bool = False) -> Change:
    spec = make_spec("resnet", job=make_job(checkpoints=policy))
    previous = ObservedRun(run_key=spec.run_key, name=spec.name_for(attempt - 1), experiment=spec.experiment,
                           attempt=attempt - 1, spec_hash="other" if other_hash else spec.spec_hash, phase=phase,
                           backend="fake", failure=failure, mlflow_run_id="run-1")
    return Change(action, "failed", spec.experiment, spec.run_key, spec.name_for(attempt), spec.overrides,
                  spec.spec_hash, attempt, spec, previous)


@pytest.mark.parametrize(("change", "resumed"), [
    (_retry(FailureClass.INFRASTRUCTURE), True),
    (_retry(FailureClass.CODE), False),  # a code failure starts from scratch ...
    (_retry(None), False),  # (unknown counts as code)
    (_retry(FailureClass.CODE, CheckpointPolicy(resume_on=(FailureClass.CODE,))), True),  # ... unless asked
    (_retry(FailureClass.INFRASTRUCTURE, CheckpointPolicy(resume_on=())), False),  # resuming switched off
    (_retry(FailureClass.INFRASTRUCTURE, action=Action.CREATE), False),
    (_retry(FailureClass.INFRASTRUCTURE, phase=Phase.SUCCEEDED), False),
    (_retry(FailureClass.INFRASTRUCTURE, other_hash=True), False),  # another spec: nothing to resume
    (_retry(FailureClass.INFRASTRUCTURE, attempt=3), True),
])
def test_resumes(change: Change, resumed: bool) -> None:
    assert (resumes(change) is change.observed) is resumed
    assert (resumes(change) is not None) is resumed


def test_choose_prefers_the_tracked_checkpoint_then_the_declared_dir() -> None:
    previous = _retry(FailureClass.INFRASTRUCTURE).observed
    assert previous is not None
    tracked = Checkpoint("runs:/run-1/checkpoints/epoch-0004.pt", 4)
    assert choose(previous, tracked, "/shared/ckpt") == ResumeFrom(tracked.uri, 1, "run-1", 4)
    assert choose(previous, None, "/shared/ckpt/") == ResumeFrom(f"/shared/ckpt/{previous.name}", 1, "run-1")
    assert choose(previous, None, None) is None  # nothing to resume from: start from scratch


def test_resume_point_asks_the_tracker_and_records_the_link() -> None:
    tracker = FakeCheckpointTracker()
    tracker.checkpoints["run-1"] = Checkpoint("runs:/run-1/checkpoints/epoch-0002.pt", 2)
    resume = resume_point(_retry(FailureClass.INFRASTRUCTURE), tracker, "run-2")
    assert resume == ResumeFrom("runs:/run-1/checkpoints/epoch-0002.pt", 1, "run-1", 2)
    assert tracker.resumed == {"run-2": resume}
    assert resume_point(_retry(FailureClass.CODE), tracker, "run-3") is None
    assert "run-3" not in tracker.resumed
    assert resume_point(_retry(FailureClass.INFRASTRUCTURE), FakeTracker(), "run-4") is None  # cannot look up


def test_apply_hands_the_checkpoint_to_the_job() -> None:
    backend, tracker = RecordingBackend(), FakeCheckpointTracker()
    change = _retry(FailureClass.INFRASTRUCTURE)
    tracker.checkpoints["run-1"] = Checkpoint("/shared/a/epoch-0001.pt", 1)
    apply_change(change, backend, tracker, "ci")
    launch = backend.launches[0]
    assert launch.resume == ResumeFrom("/shared/a/epoch-0001.pt", 1, "run-1", 1)
    assert checkpoint_env(launch) == {"EXPCTL_RESUME_FROM": "/shared/a/epoch-0001.pt",
                                       "EXPCTL_RESUME_ATTEMPT": "1", "EXPCTL_RESUME_RUN_ID": "run-1",
                                       "EXPCTL_RESUME_EPOCH": "1"}


def test_the_kubernetes_env_carries_the_resume_and_the_checkpoint_dir() -> None:
    spec = make_spec("resnet", job=make_job(checkpoints=CheckpointPolicy(dir="s3://bucket/ckpt/")))
    launch = replace(make_launch(spec, attempt=2), resume=ResumeFrom("s3://bucket/ckpt/x", 1, "run-1", 3))
    values = {e["name"]: e["value"] for e in kube_env(launch)}
    assert values["EXPCTL_CHECKPOINT_DIR"] == f"s3://bucket/ckpt/{spec.name_for(2)}"
    assert values["EXPCTL_RESUME_FROM"] == "s3://bucket/ckpt/x" and values["EXPCTL_RESUME_EPOCH"] == "3"
    assert "EXPCTL_RESUME_FROM" not in {e["name"] for e in kube_env(make_launch(spec))}


def test_checkpoint_tags() -> None:
    resume = ResumeFrom("runs:/a/checkpoints/epoch-0001.pt", 1, "a", 1)
    tags = resume_tags(resume)
    assert resumed_from(tags) == resume
    # an attempt that died before its own first checkpoint hands on the one it resumed from
    assert checkpoint_in(tags) == Checkpoint(resume.uri, 1)
    own = {**tags, "expctl.checkpoint": "runs:/b/checkpoints/epoch-0003.pt", "expctl.checkpoint_epoch": "3"}
    assert checkpoint_in(own) == Checkpoint("runs:/b/checkpoints/epoch-0003.pt", 3)
    assert checkpoint_in({}) is None and resumed_from({}) is None


class RecordingBackend(FakeBackend):
    def __init__(self) -> None:
        super().__init__()
        self.launches: list[Launch] = []

    def create(self, launch: Launch) -> None:
        self.launches.append(launch)
        super().create(launch)
