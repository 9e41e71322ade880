"""Validation jobs, pure: the dependent step's plan rules (the promotion verdicts: test_gate.py)."""

from __future__ import annotations

from dataclasses import replace

from expctl.core.desired import DEFAULT_EVALUATOR, validation_spec
from expctl.core.gate import evaluate
from expctl.core.model import Action, FailureClass, JobKind, ObservedRun, Phase, RetryPolicy, ValidationGate
from expctl.core.plan_rules import make_plan
from tests.support.factories import make_job, make_spec

GATE = ValidationGate(metric="accuracy", threshold=0.5, split="test", register_as="m", promote_alias="champion")
TRAIN = make_spec("exp", job=make_job(JobKind.PYTORCH, replicas=4, validation=GATE, retries=RetryPolicy(
    max_attempts=2, on=(FailureClass.CODE,), backoff_seconds=0)))
VAL = validation_spec(TRAIN)


def run(spec_key: str, spec_hash: str, phase: Phase, attempt: int = 1, run_id: str = "mlflow-train",
        failure: FailureClass | None = None) -> ObservedRun:
    return ObservedRun(run_key=spec_key, name=f"n-{spec_key[:6]}-{attempt}", experiment="exp", attempt=attempt,
                       spec_hash=spec_hash, phase=phase, backend="fake", mlflow_run_id=run_id, failure=failure,
                       finished_at=0.0, created_at=float(attempt))


def test_the_validation_job_is_its_own_single_replica_run() -> None:
    assert VAL is not None
    assert (VAL.validates, VAL.job.replicas, VAL.job.command) == (TRAIN.run_key, 1, DEFAULT_EVALUATOR)
    assert VAL.run_key != TRAIN.run_key and VAL.name != TRAIN.name and len(VAL.name) <= 59
    assert validation_spec(replace(TRAIN, job=replace(TRAIN.job, validation=replace(GATE, split=None)))) is None
    other = validation_spec(replace(TRAIN, spec_hash="new-training-spec"))
    assert other is not None and other.spec_hash != VAL.spec_hash  # a new training run means a new validation


def plan_of(*observed: ObservedRun) -> dict[str, tuple[Action, str, str]]:
    assert VAL is not None
    changes = make_plan([TRAIN, VAL], list(observed), commit="c", backend="fake", now=100.0).changes
    return {("val" if c.run_key == VAL.run_key else "train"): (c.action, c.reason,
            c.desired.target_run_id if c.desired else "") for c in changes}


def test_the_validation_waits_for_its_training_run() -> None:
    assert plan_of()["val"] == (Action.NOOP, "waiting", "")
    assert plan_of(run(TRAIN.run_key, TRAIN.spec_hash, Phase.RUNNING))["val"] == (Action.NOOP, "waiting", "")


def test_the_validation_starts_once_training_succeeded_and_knows_its_mlflow_run() -> None:
    assert plan_of(run(TRAIN.run_key, TRAIN.spec_hash, Phase.SUCCEEDED))["val"] == (
        Action.CREATE, "missing", "mlflow-train")


def test_a_training_run_that_will_be_retried_keeps_the_validation_waiting_and_one_that_gave_up_skips_it() -> None:
    failed = run(TRAIN.run_key, TRAIN.spec_hash, Phase.FAILED, failure=FailureClass.CODE)
    assert plan_of(failed)["val"] == (Action.NOOP, "waiting", "")
    gave_up = run(TRAIN.run_key, TRAIN.spec_hash, Phase.FAILED, attempt=2, failure=FailureClass.CODE)
    assert plan_of(gave_up)["val"] == (Action.NOOP, "skipped", "")


def test_a_failed_validation_is_retried_by_policy() -> None:
    assert VAL is not None
    trained = run(TRAIN.run_key, TRAIN.spec_hash, Phase.SUCCEEDED)
    failed = run(VAL.run_key, VAL.spec_hash, Phase.FAILED, run_id="mlflow-val", failure=FailureClass.CODE)
    assert plan_of(trained, failed)["val"] == (Action.RETRY, "failed", "mlflow-train")


def test_an_old_validation_waits_while_its_training_run_is_replaced() -> None:
    assert VAL is not None
    old_train = run(TRAIN.run_key, "old-hash", Phase.SUCCEEDED)
    old_val = run(VAL.run_key, "old-val-hash", Phase.SUCCEEDED, run_id="mlflow-val")
    plan = plan_of(old_train, old_val)
    assert plan["train"][:2] == (Action.REPLACE, "spec-changed") and plan["val"] == (Action.NOOP, "waiting", "")


def test_the_gate_reads_the_validation_metric_not_the_training_one() -> None:
    assert GATE.gate_metric == "validation.accuracy"
    assert evaluate(GATE, {"accuracy": 0.99, "validation.accuracy": 0.2}).outcome == "failed"
    assert evaluate(GATE, {"accuracy": 0.1, "validation.accuracy": 0.7}).passed
    assert evaluate(replace(GATE, split=None), {"accuracy": 0.99}).passed  # no platform validation: as before
