"""``apply --wait``: follow the desired runs until each has succeeded or given up, running due retries.

Progress is a rich bar on stderr (quiet when stderr is not a terminal); stdout gets only the summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from expctl.apply import apply_change
from expctl.backends.base import Backend
from expctl.diff import join_observed
from expctl.model import Action, Change, Plan, RunSpec
from expctl.plan import make_plan
from expctl.tracking.base import Tracker


@dataclass(frozen=True)
class WaitResult:
    counts: dict[str, int]
    timed_out: bool

    @property
    def ok(self) -> bool:
        return not self.timed_out and self.counts.get("failed", 0) == 0

    @property
    def summary(self) -> str:
        parts = ", ".join(f"{n} {state}" for state, n in sorted(self.counts.items()))
        return f"{'Timed out' if self.timed_out else 'Finished'}: {parts}."


def wait_for_runs(backend: Backend, tracker: Tracker, desired: Sequence[RunSpec], *, timeout: float,
                  quiet: bool, applied_by: str = "expctl --wait", poll: float = 1.0,
                  clock: Callable[[], float] = time.time,
                  on_applied: Callable[[Plan, Change], None] | None = None) -> WaitResult:
    from rich.console import Console
    from rich.progress import Progress

    deadline = clock() + timeout
    with Progress(console=Console(stderr=True), disable=quiet, transient=True) as bar:
        task = bar.add_task("runs finished", total=len(desired))
        while True:
            observed = backend.observe()
            tracker.sync(observed, desired)
            plan = make_plan(desired, join_observed(observed, []), commit=desired[0].commit if desired else "",
                             backend=backend.name, now=clock())
            counts: dict[str, int] = {}
            for change in plan.changes:
                if change.desired is None:
                    continue
                state = _state(change.action, change.reason, change.detail)
                counts[state] = counts.get(state, 0) + 1
                # due retries, and validation jobs whose training run just succeeded (dependent steps)
                if change.action is Action.RETRY or (change.action is Action.CREATE and change.desired.validates):
                    apply_change(change, backend, tracker, applied_by)
                    if on_applied is not None:  # e.g. the audit trail
                        on_applied(plan, change)
            done = sum(counts.get(s, 0) for s in ("succeeded", "gave-up", "cancelled", "blocked", "skipped"))
            bar.update(task, completed=done)
            if done == len(desired):
                failed = counts.get("gave-up", 0)
                return WaitResult({**counts, "failed": failed} if failed else counts, timed_out=False)
            if clock() > deadline:
                return WaitResult(counts, timed_out=True)
            time.sleep(poll)


def _state(action: Action, reason: str, detail: str) -> str:
    if action is Action.NOOP and reason == "unchanged":
        return detail or "running"
    if action is Action.NOOP:
        return reason
    return action.value
