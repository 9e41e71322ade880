"""The plan rules: what to do about each desired/observed pair, and why. Policy lives only here.

Pure: the clock comes in as ``now``; nothing here performs I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from expctl.diff import Pair, pair_runs
from expctl.model import Action, Change, FailureClass, ObservedRun, Phase, Plan, Reason, RunSpec
from expctl.naming import attempt_name, canonical_json, sha256_hex


class PlanRefused(Exception):
    """The plan would do something dangerous that the user did not explicitly ask for."""


def fingerprint(observed: Iterable[ObservedRun]) -> str:
    """A digest of the observed state: a saved plan is stale once this changes."""
    rows = sorted(
        (r.run_key, r.name, r.spec_hash, r.phase.value, r.attempt, r.cancelled, r.live) for r in observed
    )
    return sha256_hex(canonical_json(rows))[:16]


def _change(action: Action, reason: Reason, pair: Pair, attempt: int, detail: str = "",
            deletes: tuple[str, ...] = ()) -> Change:
    spec, cur = pair.desired, pair.current
    if spec is not None:
        return Change(action, reason, spec.experiment, spec.run_key, attempt_name(spec.name, attempt),
                      spec.overrides, spec.spec_hash, attempt, spec, cur, detail, deletes)
    assert cur is not None
    return Change(action, reason, cur.experiment, cur.run_key, cur.name, cur.overrides, cur.spec_hash,
                  cur.attempt, None, cur, detail, deletes)


def _live_names(pair: Pair) -> tuple[str, ...]:
    return tuple(r.name for r in pair.history if r.live)


def _decide_failed(pair: Pair, spec: RunSpec, cur: ObservedRun, now: float) -> Change:
    policy = spec.job.retries
    failure = cur.failure or FailureClass.CODE
    if failure not in policy.on:
        return _change(Action.GAVE_UP, Reason.GAVE_UP, pair, cur.attempt,
                       f"{failure.value} failure; retries are not enabled for it: {cur.message}".rstrip(": "))
    if cur.attempt >= policy.max_attempts:
        return _change(Action.GAVE_UP, Reason.GAVE_UP, pair, cur.attempt,
                       f"failed {cur.attempt} of {policy.max_attempts} attempts: {cur.message}".rstrip(": "))
    due = (cur.finished_at or 0.0) + policy.backoff_after(cur.attempt)
    if now < due:
        return _change(Action.NOOP, Reason.BACKOFF, pair, cur.attempt,
                       f"attempt {cur.attempt} failed ({failure.value}); retry in {due - now:.0f}s")
    return _change(Action.RETRY, Reason.FAILED, pair, cur.attempt + 1,
                   f"attempt {cur.attempt} failed ({failure.value}): {cur.message}".rstrip(": "))


def decide(pair: Pair, now: float, prune: bool = False, replace_running: bool = False) -> Change | None:
    """Apply the plan rules table to one pair. None means there is nothing to say about it."""
    spec, cur = pair.desired, pair.current
    if spec is None:
        if cur is None or not cur.managed or not _live_names(pair):
            return None
        if prune:
            return _change(Action.DELETE, Reason.REMOVED, pair, cur.attempt, deletes=_live_names(pair))
        return _change(Action.NOOP, Reason.WOULD_PRUNE, pair, cur.attempt, "no longer desired; run with --prune")
    if cur is None:
        return _change(Action.CREATE, Reason.MISSING, pair, 1)
    if cur.spec_hash != spec.spec_hash:
        if cur.phase.finished:
            return _change(Action.REPLACE, Reason.SPEC_CHANGED, pair, 1, deletes=_live_names(pair))
        if replace_running:
            return _change(Action.REPLACE, Reason.SPEC_CHANGED, pair, 1,
                           f"replacing a {cur.phase.value.lower()} run", deletes=_live_names(pair))
        return _change(Action.BLOCKED, Reason.SPEC_CHANGED, pair, cur.attempt,
                       f"run is {cur.phase.value.lower()}; use --replace-running to replace it")
    if cur.cancelled or cur.phase is Phase.CANCELLED:
        return _change(Action.NOOP, Reason.CANCELLED, pair, cur.attempt, "cancelled; change its spec to run again")
    if cur.phase is Phase.FAILED:
        return _decide_failed(pair, spec, cur, now)
    return _change(Action.NOOP, Reason.UNCHANGED, pair, cur.attempt, cur.phase.value.lower())


def make_plan(
    desired: Sequence[RunSpec],
    observed: Sequence[ObservedRun],
    *,
    commit: str,
    backend: str,
    now: float,
    prune: bool = False,
    replace_running: bool = False,
    force_prune: bool = False,
    worktree: bool = False,
) -> Plan:
    """Diff desired against observed and order the changes as apply performs them: deletes first."""
    if prune and not desired and any(r.managed and r.live for r in observed) and not force_prune:
        raise PlanRefused(
            "refusing to prune: no runs are desired (an empty or broken checkout?) — pass --force-prune "
            "to delete every managed run"
        )
    changes = [c for pair in pair_runs(desired, observed)
               if (c := decide(pair, now, prune, replace_running)) is not None]
    changes.sort(key=lambda c: 0 if c.action is Action.DELETE else 1)
    return Plan(commit=commit, backend=backend, changes=tuple(changes), fingerprint=fingerprint(observed),
                worktree=worktree, prune=prune, replace_running=replace_running)
