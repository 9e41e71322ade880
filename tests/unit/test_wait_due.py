"""``apply --wait`` applies whatever its plan asks for once due — a validation job's replace included — once
each, and stops when only writes that failed are left (pure: plans in, decisions out)."""

from __future__ import annotations

from expctl.core.desired import validation_spec
from expctl.core.model import Action, Change, JobKind, ObservedRun, Phase, Plan, Reason, ValidationGate
from expctl.core.plan_rules import make_plan
from expctl.engine.wait import Tried, WaitResult, finished, tally, unfinishable
from expctl.engine.writes import ApplyResult
from tests.support.factories import make_job, make_spec

GATE = ValidationGate(metric="accuracy", threshold=0.5, split="test", register_as="m")
OLD = make_spec("exp", job=make_job(JobKind.PYTORCH, validation=GATE), config={"seed": 0})
NEW = make_spec("exp", job=make_job(JobKind.PYTORCH, validation=GATE), config={"seed": 1})


def observed(spec_key: str, spec_hash: str, phase: Phase, run_id: str, name: str) -> ObservedRun:
    return ObservedRun(run_key=spec_key, name=name, experiment="exp", attempt=1, spec_hash=spec_hash, phase=phase,
                       backend="fake", mlflow_run_id=run_id, finished_at=0.0, created_at=1.0, live=True)


def plan_after_the_config_changed(training: Phase) -> Plan:
    """The new training run (seed 1) is ``training``; the old validation job (of seed 0's run) finished."""
    old_val, new_val = validation_spec(OLD), validation_spec(NEW)
    assert old_val is not None and new_val is not None and old_val.spec_hash != new_val.spec_hash
    runs = [observed(NEW.run_key, NEW.spec_hash, training, "train-2", "t-2"),
            observed(old_val.run_key, old_val.spec_hash, Phase.SUCCEEDED, "val-1", "v-1")]
    return make_plan([NEW, new_val], runs, commit="c", backend="fake", now=0.0)


def test_the_validation_job_is_replaced_once_its_replaced_training_run_succeeded() -> None:
    running = plan_after_the_config_changed(Phase.RUNNING)
    assert Tried().due(running) == [] and finished(tally(running), 2) is None  # it waits, nothing to write
    done = plan_after_the_config_changed(Phase.SUCCEEDED)
    (due,) = Tried().due(done)
    assert (due.action, due.reason, due.deletes) == (Action.REPLACE, Reason.SPEC_CHANGED, ("v-1",))
    assert due.desired is not None and due.desired.target_run_id == "train-2"


def test_a_write_is_made_once_and_one_that_failed_ends_the_wait() -> None:
    plan = plan_after_the_config_changed(Phase.SUCCEEDED)
    (due,) = Tried().due(plan)
    made = Tried()
    made.note(ApplyResult(done=[due]))
    assert made.due(plan) == [] and made.failed(plan) == 0  # an observation behind the write: not repeated
    failed = Tried()
    failed.note(ApplyResult(failed=[(due, "backend unavailable")]))
    assert failed.due(plan) == [] and failed.failed(plan) == 1
    counts = tally(plan)
    result = unfinishable(counts, 2, failed.failed(plan))
    assert result is not None and not result.ok and result.unapplied == 1
    assert result.summary == ("Stopped waiting: 1 replace, 1 succeeded. 1 planned change failed to apply: run "
                              "`expctl apply` again.")
    assert unfinishable(counts, 2, 0) is None


def test_the_wait_goes_on_while_other_runs_can_still_move() -> None:
    counts = {"running": 2, "replace": 1}
    assert unfinishable(counts, 3, 1) is None  # two runs still running: their outcome may matter
    assert unfinishable({"succeeded": 2, "replace": 1}, 3, 1) == WaitResult(
        {"succeeded": 2, "replace": 1}, timed_out=False, unapplied=1)


def test_every_kind_of_write_becomes_due() -> None:
    plan = Plan(commit="c", backend="fake", fingerprint="f", changes=tuple(
        Change(action, Reason.MISSING, "exp", f"k{i}", f"n{i}", (), "h", 1)
        for i, action in enumerate(Action)))
    assert {c.action for c in Tried().due(plan)} == {Action.CREATE, Action.RETRY, Action.REPLACE, Action.DELETE}
