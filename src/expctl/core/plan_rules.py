"""The plan rules: what to do about each desired/observed pair, and why. Policy lives only here.

Pure: the clock comes in as ``now``; nothing here performs I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from expctl.core import pipeline
from expctl.core.backend_registry import gates_inputs
from expctl.core.diff import Pair, pair_runs
from expctl.core.inputs import ModelVersion
from expctl.core.model import Action, Change, FailureClass, ObservedRun, Phase, Plan, Reason, RunSpec
from expctl.core.naming import attempt_name, canonical_json, sha256_hex
from expctl.core.quota import Quotas, hold_over_quota


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


def changed_reason(spec: RunSpec, cur: ObservedRun) -> tuple[Reason, str]:
    """Why a run's spec hash changed: "upstream-changed" when an input resolves to another upstream, else
    "data-changed" when the digest of its datasets' manifests changed (whatever else changed with it), else
    "spec-changed"; with a detail naming old → new."""
    if cur.inputs is not None and spec.inputs and cur.inputs != pipeline.labels(spec):
        old = dict(cur.inputs)
        moved = [f"{name}: {old.get(name, 'none')} → {label}" for name, label in pipeline.labels(spec)
                 if old.get(name) != label]
        return Reason.UPSTREAM_CHANGED, "; ".join(moved) or "inputs changed"
    if cur.data_digest is not None and cur.data_digest != spec.data_digest and (cur.data_digest or spec.data_digest):
        names = ", ".join(d.name for d in spec.datasets) or "datasets"
        return Reason.DATA_CHANGED, f"{names}: {cur.data_digest[:12] or 'none'} → {spec.data_digest[:12] or 'none'}"
    return Reason.SPEC_CHANGED, ""


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
        why, data = changed_reason(spec, cur)
        if cur.phase.finished or cur.after_failed or cur.held_by:  # held by a gate: it never started
            return _change(Action.REPLACE, why, pair, 1, data, deletes=_live_names(pair))
        if replace_running:
            return _change(Action.REPLACE, why, pair, 1,
                           f"replacing a {cur.phase.value.lower()} run", deletes=_live_names(pair))
        return _change(Action.BLOCKED, why, pair, cur.attempt,
                       f"run is {cur.phase.value.lower()}; use --replace-running to replace it")
    if cur.cancelled or cur.phase is Phase.CANCELLED:
        return _change(Action.NOOP, Reason.CANCELLED, pair, cur.attempt, "cancelled; change its spec to run again")
    if cur.phase is Phase.FAILED:
        return _decide_failed(pair, spec, cur, now)
    return _change(Action.NOOP, Reason.UNCHANGED, pair, cur.attempt, cur.phase.value.lower())


def dependents(desired: Sequence[RunSpec],
               observed: Sequence[ObservedRun]) -> tuple[list[RunSpec], dict[str, Reason]]:
    """Validation jobs wait for their training run: the desired runs with the target MLflow run filled in for
    each validation whose training run succeeded, and ``{run key: "waiting" | "skipped"}`` for the others
    (skipped: the training run finished without succeeding, so there is no model to validate)."""
    trains = {s.run_key: s for s in desired if not s.validates}
    latest: dict[str, ObservedRun] = {}
    for run in observed:
        if run.run_key in trains and trains[run.run_key].spec_hash == run.spec_hash:
            have = latest.get(run.run_key)
            if have is None or (run.attempt, run.created_at or 0.0) > (have.attempt, have.created_at or 0.0):
                latest[run.run_key] = run
    out: list[RunSpec] = []
    held: dict[str, Reason] = {}
    for spec in desired:
        train = latest.get(spec.validates) if spec.validates else None
        if train is not None and train.phase is Phase.SUCCEEDED and train.mlflow_run_id:
            out.append(replace(spec, target_run_id=train.mlflow_run_id))
            continue
        if spec.validates:
            gave_up = train is not None and _gave_up(train, trains[spec.validates])
            held[spec.run_key] = Reason.SKIPPED if gave_up else Reason.WAITING
        out.append(spec)
    return out, held


_gave_up = pipeline.final_failure


def _held(pair: Pair, held: dict[str, Reason]) -> Change | None:
    why = held.get(pair.run_key)
    if why is None or pair.desired is None:
        return None
    cur = pair.current
    detail = ("waits for its training run to succeed" if why is Reason.WAITING
              else "its training run did not succeed: no model to validate")
    return _change(Action.NOOP, why, pair, cur.attempt if cur else 1, detail)


def _waiting(pair: Pair, holds: dict[str, pipeline.Hold]) -> Change | None:
    hold = holds.get(pair.run_key)
    if hold is None or pair.desired is None:
        return None
    cur = pair.current
    return _change(hold.action, hold.reason, pair, cur.attempt if cur else 1, hold.detail)


def _rewait(pair: Pair) -> Change | None:
    """A consumer its scheduler will never start (the upstream attempt it waited on failed) whose upstream
    runs again (a retry): its attempt is closed and the next one submitted, after the upstream's new attempt."""
    spec, cur = pair.desired, pair.current
    if spec is None or cur is None or not cur.after_failed or cur.spec_hash != spec.spec_hash or cur.cancelled:
        return None
    return _change(Action.REPLACE, Reason.UPSTREAM_CHANGED, pair, cur.attempt + 1,
                   f"attempt {cur.attempt} never started: the upstream attempt it waited on failed",
                   deletes=_live_names(pair))


def _with_after(change: Change) -> Change:
    """A launch on a gated backend says which upstream attempts its scheduler waits on."""
    names = pipeline.after(change.desired) if change.desired is not None and change.action.writes else []
    if not names:
        return change
    note = f"starts after {', '.join(names)} succeeds"
    return replace(change, detail=f"{change.detail}; {note}" if change.detail else note)


def make_plan(
    desired: Sequence[RunSpec],
    observed: Sequence[ObservedRun],
    *,
    models: Mapping[str, ModelVersion | None] | None = None,
    commit: str,
    backend: str,
    now: float,
    prune: bool = False,
    replace_running: bool = False,
    force_prune: bool = False,
    worktree: bool = False,
    quotas: Quotas | None = None,
) -> Plan:
    """Diff desired against observed and order the changes as apply performs them: deletes first, then the
    rest in the order of ``desired`` (dependency order). ``models``: the registry's answer for each model
    input (``pipeline.model_inputs``); an input not resolvable yet holds its run. With ``quotas`` (expctl
    decides who starts), starts beyond a team's GPU quota wait (``core.quota``)."""
    if prune and not desired and any(r.managed and r.live for r in observed) and not force_prune:
        raise PlanRefused(
            "refusing to prune: no runs are desired (an empty or broken checkout?) — pass --force-prune "
            "to delete every managed run"
        )
    desired, holds = pipeline.resolve(desired, observed, models or {}, gates_inputs(backend))
    desired, held = dependents(desired, observed)
    changes = [_with_after(c) for pair in pair_runs(desired, observed)
               if (c := _waiting(pair, holds) or _held(pair, held) or _rewait(pair)
                   or decide(pair, now, prune, replace_running)) is not None]
    if quotas is not None:
        changes = hold_over_quota(changes, observed, quotas)
    changes.sort(key=lambda c: 0 if c.action is Action.DELETE else 1)
    return Plan(commit=commit, backend=backend, changes=tuple(changes), fingerprint=fingerprint(observed),
                worktree=worktree, prune=prune, replace_running=replace_running)
