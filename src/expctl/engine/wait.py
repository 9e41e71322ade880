"""``apply --wait``: where each desired run stands, and when waiting is over.

The loop itself (observe, sync, retry under the lock) is the engine's (``expctl.engine``); this module
counts states and draws the progress bar: a rich bar on stderr (quiet when stderr is not a terminal);
stdout gets only the summary.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from expctl.core.model import Action, Change, Plan, Reason

FINAL_STATES = ("succeeded", "gave-up", "cancelled", "blocked", "skipped")


@dataclass(frozen=True)
class WaitResult:
    counts: dict[str, int]
    timed_out: bool
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.timed_out and not self.interrupted and self.counts.get("failed", 0) == 0

    @property
    def summary(self) -> str:
        parts = ", ".join(f"{n} {state}" for state, n in sorted(self.counts.items()))
        head = "Interrupted" if self.interrupted else "Timed out" if self.timed_out else "Finished"
        return f"{head}: {parts}."


def state_of(change: Change) -> str:
    if change.action is Action.NOOP and change.reason is Reason.UNCHANGED:
        return change.detail or "running"
    if change.action is Action.NOOP:
        return change.reason.value
    return change.action.value


def tally(plan: Plan) -> dict[str, int]:
    """How many desired runs are in each state (succeeded, running, retry, gave-up, ...)."""
    counts: dict[str, int] = {}
    for change in plan.changes:
        if change.desired is not None:
            state = state_of(change)
            counts[state] = counts.get(state, 0) + 1
    return counts


def finished(counts: dict[str, int], total: int) -> WaitResult | None:
    """The result once every desired run is final (gave-up runs count as failed), else None."""
    if sum(counts.get(s, 0) for s in FINAL_STATES) != total:
        return None
    failed = counts.get("gave-up", 0)
    return WaitResult({**counts, "failed": failed} if failed else counts, timed_out=False)


@contextlib.contextmanager
def progress_bar(total: int, quiet: bool) -> Iterator[Callable[[dict[str, int]], None]]:
    """``update(counts)`` moves a bar of finished runs on stderr (disabled when quiet)."""
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), disable=quiet, transient=True) as bar:
        task = bar.add_task("runs finished", total=total)

        def update(counts: dict[str, int]) -> None:
            bar.update(task, completed=sum(counts.get(s, 0) for s in FINAL_STATES))

        yield update
