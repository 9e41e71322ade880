"""``apply --wait``: where each desired run stands, which writes are due, and when waiting is over.

The loop itself (observe, sync, apply what became due, under the lock) is the engine's (``engine/apply``);
this module counts states, says which of a round's planned writes to apply (``Tried``: every write the plan
asks for — a due retry, a validation job to create or replace — once; a write that failed is left to the next
``expctl apply``), ends the wait when nothing can move any more (``unfinishable``), and draws the progress
bar: a rich bar on stderr (quiet when stderr is not a terminal); stdout gets only the summary.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from expctl.core.model import Action, Change, Plan, Reason

if TYPE_CHECKING:
    from expctl.engine.writes import ApplyResult

FINAL_STATES = ("succeeded", "gave-up", "cancelled", "blocked", "skipped")


@dataclass(frozen=True)
class WaitResult:
    counts: dict[str, int]
    timed_out: bool
    interrupted: bool = False
    unapplied: int = 0  # runs whose planned write failed: waiting could never finish them

    @property
    def ok(self) -> bool:
        return (not self.timed_out and not self.interrupted and not self.unapplied
                and self.counts.get("failed", 0) == 0)

    @property
    def summary(self) -> str:
        parts = ", ".join(f"{n} {state}" for state, n in sorted(self.counts.items()))
        head = ("Interrupted" if self.interrupted else "Timed out" if self.timed_out
                else "Stopped waiting" if self.unapplied else "Finished")
        tail = ""
        if self.unapplied:
            plural = "s" * (self.unapplied != 1)
            tail = f" {self.unapplied} planned change{plural} failed to apply: run `expctl apply` again."
        return f"{head}: {parts}.{tail}"


def _key(change: Change) -> tuple[str, str, str | None, int]:
    return change.action.value, change.name, change.spec_hash, change.attempt


@dataclass
class Tried:
    """The writes this apply made (or tried): ``due`` is what a round's plan asks for that is not among
    them; a write that was done and shows again (an observation behind) is not repeated, one that failed
    is not hammered every poll."""

    done: set[tuple[str, str, str | None, int]] = field(default_factory=set)
    failures: set[tuple[str, str, str | None, int]] = field(default_factory=set)

    def note(self, outcome: ApplyResult) -> None:
        self.done.update(_key(c) for c in outcome.done)
        self.failures.update(_key(c) for c, _ in outcome.failed)

    def due(self, plan: Plan) -> list[Change]:
        return [c for c in plan.changes if c.action.writes and _key(c) not in self.done | self.failures]

    def failed(self, plan: Plan) -> int:
        """How many desired runs wait on a write that failed (and that waiting will not try again)."""
        return sum(1 for c in plan.changes if c.desired is not None and _key(c) in self.failures)


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


def unfinishable(counts: dict[str, int], total: int, unapplied: int) -> WaitResult | None:
    """The result when every desired run that is not final waits on a write that failed (else None): the
    wait stops at once instead of idling until its timeout."""
    final = sum(counts.get(s, 0) for s in FINAL_STATES)
    if not unapplied or final + unapplied < total:
        return None
    return WaitResult(counts, timed_out=False, unapplied=unapplied)


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
