"""The plan rules table, row by row (pure: desired and observed values in, changes out)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from expctl.core.diff import join_observed, pair_runs
from expctl.core.model import Action, FailureClass, ObservedRun, Phase, Reason, RetryPolicy
from expctl.core.plan_rules import PlanRefused, fingerprint, make_plan
from tests.support.factories import make_job, make_spec

NOW = 10_000.0
SPEC = make_spec("exp", ("lr=0.1",), job=make_job(retries=RetryPolicy(
    max_attempts=3, on=(FailureClass.INFRASTRUCTURE,), backoff_seconds=60, backoff_factor=2)))
OTHER = replace(SPEC, spec_hash="different")


def observed(phase: Phase, *, spec_hash: str = SPEC.spec_hash, attempt: int = 1,
             failure: FailureClass | None = None, finished_at: float | None = None,
             cancelled: bool = False, live: bool = True, run_key: str = SPEC.run_key) -> ObservedRun:
    return ObservedRun(run_key=run_key, name=SPEC.name_for(attempt), experiment="exp", attempt=attempt,
                       spec_hash=spec_hash, phase=phase, backend="fake", failure=failure,
                       finished_at=finished_at, cancelled=cancelled, live=live, created_at=float(attempt))


CASES = [
    # (id, observed, options, action, reason)
    ("missing", [], {}, Action.CREATE, "missing"),
    ("pending unchanged", [observed(Phase.PENDING)], {}, Action.NOOP, "unchanged"),
    ("running unchanged", [observed(Phase.RUNNING)], {}, Action.NOOP, "unchanged"),
    ("succeeded unchanged", [observed(Phase.SUCCEEDED)], {}, Action.NOOP, "unchanged"),
    ("failed infra, backoff elapsed",
     [observed(Phase.FAILED, failure=FailureClass.INFRASTRUCTURE, finished_at=NOW - 61)], {},
     Action.RETRY, Reason.FAILED),
    ("failed infra, backoff pending",
     [observed(Phase.FAILED, failure=FailureClass.INFRASTRUCTURE, finished_at=NOW - 10)], {},
     Action.NOOP, "backoff"),
    ("second failure backs off twice as long",
     [observed(Phase.FAILED, attempt=2, failure=FailureClass.INFRASTRUCTURE, finished_at=NOW - 100)], {},
     Action.NOOP, "backoff"),
    ("failed code, not retried by policy",
     [observed(Phase.FAILED, failure=FailureClass.CODE, finished_at=0)], {}, Action.GAVE_UP, "gave-up"),
    ("out of attempts",
     [observed(Phase.FAILED, attempt=3, failure=FailureClass.INFRASTRUCTURE, finished_at=0)], {},
     Action.GAVE_UP, "gave-up"),
    ("spec changed, finished", [observed(Phase.SUCCEEDED, spec_hash="old")], {}, Action.REPLACE,
     "spec-changed"),
    ("spec changed, failed", [observed(Phase.FAILED, spec_hash="old", finished_at=0)], {}, Action.REPLACE,
     "spec-changed"),
    ("spec changed, running", [observed(Phase.RUNNING, spec_hash="old")], {}, Action.BLOCKED,
     "spec-changed"),
    ("spec changed, pending", [observed(Phase.PENDING, spec_hash="old")], {}, Action.BLOCKED,
     "spec-changed"),
    ("spec changed, running, --replace-running", [observed(Phase.RUNNING, spec_hash="old")],
     {"replace_running": True}, Action.REPLACE, "spec-changed"),
    ("cancelled stays cancelled", [observed(Phase.CANCELLED, cancelled=True)], {}, Action.NOOP, "cancelled"),
    ("cancelled but spec changed", [observed(Phase.CANCELLED, cancelled=True, spec_hash="old")], {},
     Action.REPLACE, "spec-changed"),
    ("TTL-deleted but tracked as finished", [observed(Phase.SUCCEEDED, live=False)], {}, Action.NOOP,
     "unchanged"),
    ("latest attempt decides", [observed(Phase.FAILED, failure=FailureClass.INFRASTRUCTURE, finished_at=0),
                                observed(Phase.RUNNING, attempt=2)], {}, Action.NOOP, "unchanged"),
]


@pytest.mark.parametrize(("seen", "options", "action", "reason"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_rule(seen: list[ObservedRun], options: dict[str, bool], action: Action, reason: str) -> None:
    plan = make_plan([SPEC], seen, commit="c" * 40, backend="fake", now=NOW, **options)
    (change,) = plan.changes
    assert (change.action, change.reason) == (action, reason)


def test_retry_names_the_next_attempt() -> None:
    seen = [observed(Phase.FAILED, failure=FailureClass.INFRASTRUCTURE, finished_at=0)]
    (change,) = make_plan([SPEC], seen, commit="c", backend="fake", now=NOW).changes
    assert change.attempt == 2 and change.name == SPEC.name + "-r2"


def test_replace_deletes_every_live_attempt_then_starts_at_attempt_one() -> None:
    seen = [observed(Phase.FAILED, spec_hash="old", finished_at=0, failure=FailureClass.CODE),
            observed(Phase.FAILED, spec_hash="old", attempt=2, finished_at=0, failure=FailureClass.CODE)]
    (change,) = make_plan([SPEC], seen, commit="c", backend="fake", now=NOW).changes
    assert change.deletes == (SPEC.name, SPEC.name + "-r2") and change.attempt == 1


def test_removed_experiment_is_deleted_only_with_prune() -> None:
    orphan = observed(Phase.SUCCEEDED, run_key="gone")
    (shown,) = make_plan([SPEC], [observed(Phase.SUCCEEDED), orphan], commit="c", backend="fake",
                         now=NOW).changes[1:]
    assert (shown.action, shown.reason) == (Action.NOOP, "would-prune")
    plan = make_plan([SPEC], [observed(Phase.SUCCEEDED), orphan], commit="c", backend="fake", now=NOW,
                     prune=True)
    assert plan.changes[0].action is Action.DELETE and plan.changes[0].deletes == (orphan.name,)


def test_prune_never_touches_unmanaged_or_gone_objects() -> None:
    unmanaged = replace(observed(Phase.SUCCEEDED, run_key="x"), managed=False)
    remembered = observed(Phase.SUCCEEDED, run_key="y", live=False)
    plan = make_plan([SPEC], [unmanaged, remembered], commit="c", backend="fake", now=NOW, prune=True)
    assert [c.action for c in plan.changes] == [Action.CREATE]


def test_prune_with_nothing_desired_is_refused_unless_forced() -> None:
    with pytest.raises(PlanRefused):
        make_plan([], [observed(Phase.SUCCEEDED)], commit="c", backend="fake", now=NOW, prune=True)
    plan = make_plan([], [observed(Phase.SUCCEEDED)], commit="c", backend="fake", now=NOW, prune=True,
                     force_prune=True)
    assert plan.changes[0].action is Action.DELETE


def test_deletes_come_first() -> None:
    orphan = observed(Phase.SUCCEEDED, run_key="gone")
    plan = make_plan([SPEC], [orphan], commit="c", backend="fake", now=NOW, prune=True)
    assert [c.action for c in plan.changes] == [Action.DELETE, Action.CREATE]


def test_fingerprint_moves_with_observed_state_only() -> None:
    a = [observed(Phase.RUNNING)]
    assert fingerprint(a) == fingerprint(list(a))
    assert fingerprint(a) != fingerprint([observed(Phase.SUCCEEDED)])


def test_join_keeps_tracked_finished_runs_whose_objects_are_gone() -> None:
    tracked = observed(Phase.SUCCEEDED, live=False)
    assert join_observed([], [tracked]) == [tracked]
    live = observed(Phase.RUNNING)
    assert join_observed([live], [tracked]) == [live]
    assert join_observed([], [observed(Phase.RUNNING, live=False)]) == []


def test_pairs_follow_desired_order_then_orphans() -> None:
    other = make_spec("exp", ("lr=0.2",))
    pairs = pair_runs([SPEC, other], [observed(Phase.RUNNING, run_key="orphan")])
    assert [p.run_key for p in pairs] == [SPEC.run_key, other.run_key, "orphan"]


@pytest.mark.parametrize(("factor", "seconds"), [(1e300, 30.0), (10.0, 1e308), (1.0, 0.0)])
def test_a_huge_backoff_never_overflows(factor: float, seconds: float) -> None:
    """``factor ** attempt`` raises OverflowError for floats: the plan must still be made (capped backoff)."""
    policy = RetryPolicy(max_attempts=100, backoff_seconds=seconds, backoff_factor=factor, max_backoff_seconds=60)
    assert policy.backoff_after(50) == (0.0 if seconds == 0 else 60.0)
    spec = replace(SPEC, job=replace(SPEC.job, retries=policy))
    seen = [observed(Phase.FAILED, attempt=50, failure=FailureClass.INFRASTRUCTURE, finished_at=NOW - 61)]
    (change,) = make_plan([spec], seen, commit="c", backend="fake", now=NOW).changes
    assert change.action is Action.RETRY and change.attempt == 51
