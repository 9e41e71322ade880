"""Apply a plan: deletes first, then find-or-create each MLflow run and create its job; then sync status.

Every write is idempotent by deterministic name, so a crash at any point followed by a rerun converges to
exactly one job and one MLflow run per (run key, attempt).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from expctl import crash as _crash
from expctl.backends.base import Backend
from expctl.errors import ExpctlError
from expctl.model import Action, Change, Launch, ObservedRun, Plan, RunSpec
from expctl.tracking.base import Tracker

log = logging.getLogger(__name__)

Progress = Callable[[Change, str], None]


@dataclass
class ApplyResult:
    done: list[Change] = field(default_factory=list)
    failed: list[tuple[Change, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


# the test hook (``EXPCTL_TEST_CRASH_AT=<point>:<n>`` or ``EXPCTL_TEST_CRASH_SEED=<seed>``): see expctl.crash.
# Points: ``before-ensure-run``, ``after-ensure-run``, ``after-create`` (here), ``after-replica`` (local backend).
crash_point = _crash.crash_point


def _launch(change: Change, backend: Backend, tracker: Tracker, applied_by: str) -> None:
    spec = change.desired
    assert spec is not None
    crash_point("before-ensure-run")
    ref = tracker.ensure_run(spec, change.attempt, applied_by)
    crash_point("after-ensure-run")
    backend.create(Launch(spec=spec, attempt=change.attempt, name=change.name, tracking=ref,
                          applied_by=applied_by))
    crash_point("after-create")


def apply_change(change: Change, backend: Backend, tracker: Tracker, applied_by: str) -> None:
    if change.action in (Action.DELETE, Action.REPLACE):
        for name in change.deletes:
            backend.delete(name)
        # a replaced job that had not finished never reports again: close its MLflow run (KILLED), or it would
        # stay SCHEDULED/RUNNING forever (and keep its sweep's parent run RUNNING)
        cur = change.observed
        if (change.action is Action.REPLACE and cur is not None and cur.live and cur.mlflow_run_id
                and not cur.phase.finished and cur.name in change.deletes):
            tracker.mark_killed(cur.mlflow_run_id, by=applied_by)
    if change.action in (Action.CREATE, Action.RETRY, Action.REPLACE):
        _launch(change, backend, tracker, applied_by)


def apply_plan(plan: Plan, backend: Backend, tracker: Tracker, applied_by: str,
               progress: Progress | None = None) -> ApplyResult:
    """Perform the plan's writes in order; one change failing does not stop the others (exit 3)."""
    result = ApplyResult()
    for change in plan.changes:
        if not change.action.writes:
            continue
        try:
            apply_change(change, backend, tracker, applied_by)
        except ExpctlError as exc:
            log.debug("change failed", exc_info=True)
            result.failed.append((change, str(exc)))
            if progress:
                progress(change, f"failed: {exc}")
            continue
        result.done.append(change)
        if progress:
            progress(change, "done")
    return result


def sync(backend: Backend, tracker: Tracker, desired: Sequence[RunSpec]) -> list[ObservedRun]:
    """Follow observed phases into the tracker (run status, validation gate)."""
    observed = backend.observe()
    tracker.sync(observed, desired)
    return observed
