"""The apply engine: the one entry point that ``expctl apply`` (and so the CI workflow) and ``--wait`` use.

    lock → observe once (backend objects ⋈ the tracker's view) → sync → complete killed applies' audit
    records → plan → freshness check (saved plan) → confirm → audit intent → apply in a bounded pool →
    audit completion → optional wait (observe, sync, retry due runs — still under the lock)

The lock is checked (held, not expired) before every write; a lost lock stops the apply. SIGINT/SIGTERM
stop starting new changes, let the ones in flight finish and complete the audit record; a second signal
exits at once (the next apply completes the record and converges).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path

from expctl.backends.base import Backend, Releases
from expctl.backends.locks import ApplyLock, file_lock, scope_of
from expctl.config.desired_state import Desired
from expctl.config.schema import Settings
from expctl.core import audit, pipeline
from expctl.core.backend_registry import gates_inputs
from expctl.core.diff import join_observed
from expctl.core.errors import BackendUnavailable, LockError, TrackingError
from expctl.core.inputs import ModelVersion
from expctl.core.model import Change, ObservedRun, Plan, Reason
from expctl.core.planfile import SavedPlan, check_fresh
from expctl.engine.logs import keep_finished
from expctl.engine.outputs import record_outputs
from expctl.engine.plan import PlanOptions, make_plan_of, model_versions, observe_alongside, resolved_runs
from expctl.engine.wait import Tried, WaitResult, finished, progress_bar, tally, unfinishable
from expctl.engine.writes import ApplyResult, Progress, Stop, apply_changes, crash_point
from expctl.tracking.base import Settles, Tracker, TrackerUnavailable, TrackerView

log = logging.getLogger(__name__)

Models = dict[str, ModelVersion | None]  # what each model input names in the registry (engine.plan)


@dataclass(frozen=True)
class ApplyOptions:
    plan: PlanOptions
    who: str
    actor: str = ""
    saved: SavedPlan | None = None
    concurrency: int = 4
    wait: bool = False
    wait_timeout: float = 3600.0
    poll: float = 1.0
    outage: float = 300.0  # --wait: how long the tracker or the backend may stay unreachable before giving up
    quiet: bool = True  # no progress bar while waiting


@dataclass
class Hooks:
    show_plan: Callable[[Plan], None] = lambda plan: None
    confirm: Callable[[Plan], bool] = lambda plan: True
    progress: Progress | None = None
    notice: Callable[[str], None] = lambda line: None  # one line for the operator (stderr)


@dataclass
class EngineResult:
    plan: Plan | None = None
    applied: list[ApplyResult] = field(default_factory=list)  # the apply, then each --wait retry round
    waited: WaitResult | None = None
    declined: bool = False
    signum: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def first(self) -> ApplyResult | None:
        return self.applied[0] if self.applied else None

    @property
    def exit_code(self) -> int:
        if self.signum is not None:
            return 128 + self.signum
        if any(not r.ok for r in self.applied):
            return 3
        if self.waited is not None and self.waited.timed_out:
            return 1
        return 0


DEFAULT_CONCURRENCY = 4


def write_concurrency(settings: Settings, backend: str) -> int:
    """The pool size of an apply: ``write_concurrency`` of the backend's block in expctl.yaml, else 4 (a
    backend that declares no block)."""
    block = settings.block(backend)
    return block.write_concurrency if block is not None else DEFAULT_CONCURRENCY


class _Unchecked:
    """A backend's lock that cannot tell whether it is still held: held for the ``with`` block."""

    def check(self) -> None:
        return None


@contextlib.contextmanager
def apply_lock(state_dir: Path, backend: str, settings: Settings, timeout: float) -> Iterator[ApplyLock]:
    """Serialise applies: the backend's own lock when it declares one (a Lease on Kubernetes), else a file
    lock under ``state_dir``. The engine calls the lock's ``check()`` before every write."""
    from expctl.core.backend_registry import BACKENDS, load

    info = BACKENDS.get(backend)
    if info is not None and info.lock is not None:
        with load(info.lock)(settings, timeout) as held:
            yield held if callable(getattr(held, "check", None)) else _Unchecked()
        return
    with file_lock(state_dir / "apply.lock", timeout) as lock:
        yield lock


@contextlib.contextmanager
def interruptible(stop: Stop, notice: Callable[[str], None]) -> Iterator[None]:
    """First SIGINT/SIGTERM: ``stop`` (finish what is in flight); a second one: exit at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        if stop.signum is not None:
            os._exit(128 + signum)
        stop.signum = signum
        stop.set(f"interrupted by {signal.Signals(signum).name}")
        notice(f"{signal.Signals(signum).name}: finishing the changes in flight; signal again to abort at once")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        if stop.signum is None:
            for sig, old in previous.items():
                signal.signal(sig, old)
        # else: interrupted once; the handler stays until exit, so that a second signal still aborts at once


@contextlib.contextmanager
def noted(stop: Stop) -> Iterator[None]:
    """Until the writes (``interruptible``): SIGINT aborts (KeyboardInterrupt) as always, and is also noted in
    ``stop``, so that an interrupt some code swallowed (a library's ``except``, a finaliser: "Exception
    ignored") still keeps the apply from writing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: object) -> None:
        stop.signum = signum
        stop.set(f"interrupted by {signal.Signals(signum).name}")
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is handler:
            signal.signal(signal.SIGINT, previous)


def _observe(backend: Backend, tracker: Tracker, desired: Desired) -> tuple[list[ObservedRun], TrackerView, Models]:
    """One observation: the backend's objects, the tracker's view and what model inputs name in its registry;
    the tracker follows the phases (of the runs as their inputs resolve)."""
    live, view = observe_alongside(backend, tracker.view)
    live = _release(backend, live)
    if record_outputs(backend, tracker, desired.runs, live, view.records):  # what consumers resolve: read again
        view = tracker.view()
    models = model_versions(tracker, desired.runs)
    runs = resolved_runs(desired.runs, join_observed(live, view.records), models, backend.name) if models or any(
        r.job.inputs for r in desired.runs) else desired.runs
    tracker.sync(live, runs, view)
    keep_finished(backend, tracker, live)  # finished runs' logs outlive their jobs, in MLflow
    return live, view, models


def _release(backend: Backend, live: list[ObservedRun]) -> list[ObservedRun]:
    """The consumers a backend holds for their upstream (Kubernetes suspension) whose upstream this observation
    sees succeeded are released now (idempotent: a crash before it leaves it to the next apply)."""
    if not isinstance(backend, Releases):
        return live
    freed = {name for name in pipeline.releasable(live) if backend.release(name)}
    return [replace(r, held_by=(), message="released: its upstream succeeded") if r.name in freed else r
            for r in live]


def _settle(tracker: Tracker, live: list[ObservedRun], desired: Desired, view: TrackerView, lock: ApplyLock,
            stop: Stop, result: EngineResult) -> None:
    """After the apply's writes: the runs nothing will change any more leave the tracker's search (a
    courtesy, under the lock: a failure is a warning, and the next apply tries again)."""
    if not isinstance(tracker, Settles) or stop.is_set():
        return
    try:
        lock.check()
    except LockError:
        return  # the apply already said so, if it had writes; settling waits for the next one
    try:
        tracker.settle(live, desired.runs, view, stop.is_set)
    except TrackingError as exc:
        result.warnings.append(f"could not settle finished runs (the next apply tries again): {exc}")


def _recover_audits(tracker: Tracker, view: TrackerView, live: list[ObservedRun], lock: ApplyLock,
                    result: EngineResult) -> None:
    """Complete the audit records killed applies under this lock left open (another lock's records — another
    project's, maybe still applying — are left to an apply under that lock, which sees their jobs)."""
    scope = scope_of(lock)
    for record in view.open_audits:
        if not audit.recovers(record, scope):
            continue
        try:
            tracker.complete_audit(audit.recover(record, live))
        except TrackingError as exc:
            result.warnings.append(f"could not complete the audit record of apply {record.apply_id}: {exc}")


def _apply_audited(plan: Plan, changes: list[Change], backend: Backend, tracker: Tracker, view: TrackerView,
                   lock: ApplyLock, options: ApplyOptions, hooks: Hooks, stop: Stop,
                   result: EngineResult) -> ApplyResult:
    """The audit intent, the writes, the audit completion (left for the next apply if the tracker is gone)."""
    lock.check()
    record = tracker.begin_audit(audit.new_record(plan, changes, options.who, options.actor, scope=scope_of(lock)))
    crash_point("after-audit-intent")
    outcome = apply_changes(changes, backend, tracker, options.who, view=view, concurrency=options.concurrency,
                            guard=lock.check, stop=stop, progress=hooks.progress)
    crash_point("before-audit-complete")
    note = outcome.stopped or ""
    try:
        tracker.complete_audit(audit.with_results(record, outcome.results(), note=note))
    except TrackingError as exc:
        result.warnings.append(f"the audit record of this apply stays open (the next apply completes it): {exc}")
    result.applied.append(outcome)
    return outcome


def _gated_waves(plan: Plan, desired: Desired, backend: Backend, tracker: Tracker, lock: ApplyLock,
                 options: ApplyOptions, hooks: Hooks, stop: Stop, result: EngineResult) -> None:
    """On a backend whose scheduler holds a consumer until its upstream succeeded (Slurm's afterok): the
    consumers that waited for an upstream this apply just submitted are submitted now, each after it — one
    more observation and audited write per level of the chain. A crash between two waves loses nothing: the
    next apply sees the upstream submitted and submits its consumers (once: creates are idempotent)."""
    waiting = {c.run_key for c in plan.changes if c.reason is Reason.WAITING and c.desired is not None
               and c.desired.job.inputs}
    if not gates_inputs(backend.name):
        return
    while waiting and result.applied and result.applied[-1].done and not stop.is_set():
        live, view, models = _observe(backend, tracker, desired)
        wave = make_plan_of(desired, join_observed(live, view.records), backend, options.plan, models=models)
        due = [c for c in wave.changes if c.action.writes and c.run_key in waiting]
        if not due:
            return
        hooks.notice(f"submitting {len(due)} consumer(s) after their upstream runs (the scheduler holds them)")
        outcome = _apply_audited(wave, due, backend, tracker, view, lock, options, hooks, stop, result)
        waiting -= {c.run_key for c in outcome.done}


def run_apply(desired: Desired, backend: Backend, tracker: Tracker, lock: AbstractContextManager[ApplyLock],
              options: ApplyOptions, hooks: Hooks) -> EngineResult:
    """Apply the desired state (see the module docstring); never raises for one change's failure."""
    result = EngineResult()
    tracker.check()
    stop = Stop()
    with lock as held:
        with noted(stop):
            live, view, models = _observe(backend, tracker, desired)
            observed = join_observed(live, view.records)
            _recover_audits(tracker, view, observed, held, result)
            plan = make_plan_of(desired, observed, backend, options.plan, models=models)
            result.plan = plan
            if options.saved is not None:
                check_fresh(options.saved, plan)
            hooks.show_plan(plan)
        if stop.is_set():  # an interrupt before the writes that did not abort: nothing is applied
            hooks.notice(f"{stop.reason} before the first write: nothing applied")
            result.signum = stop.signum
            return result
        if plan.has_writes:
            if not hooks.confirm(plan):
                result.declined = True
                return result
            with interruptible(stop, hooks.notice):
                _apply_audited(plan, list(plan.changes), backend, tracker, view, held, options, hooks, stop,
                               result)
                _gated_waves(plan, desired, backend, tracker, held, options, hooks, stop, result)
        with interruptible(stop, hooks.notice):
            _settle(tracker, live, desired, view, held, stop, result)
        if options.wait and not stop.is_set():
            with interruptible(stop, hooks.notice):
                result.waited = _wait(desired, backend, tracker, held, options, hooks, stop, result)
    result.signum = stop.signum
    return result


def _wait(desired: Desired, backend: Backend, tracker: Tracker, lock: ApplyLock, options: ApplyOptions,
          hooks: Hooks, stop: Stop, result: EngineResult) -> WaitResult:
    """Follow the desired runs until each is final, retrying due runs (audited) — under the lock."""
    deadline = time.monotonic() + options.wait_timeout
    counts: dict[str, int] = {}
    tried = Tried()
    for outcome in result.applied:
        tried.note(outcome)
    outage: float | None = None  # since when the tracker or the backend cannot be reached
    with progress_bar(len(desired.runs), options.quiet) as update:
        while not stop.is_set():
            lock.check()
            try:
                live, view, models = _observe(backend, tracker, desired)
            except (TrackerUnavailable, BackendUnavailable) as exc:
                # a server restarting must not end hours of waiting: keep polling for a while, saying so once
                now = time.monotonic()
                if outage is None:
                    outage = now
                    hooks.notice(f"warning: {exc}; still waiting (giving up after {options.outage:.0f}s)")
                if now - outage > options.outage or now > deadline:
                    raise
                stop.wait(options.poll)
                continue
            if outage is not None:
                hooks.notice("reachable again; waiting goes on")
                outage = None
            plan = make_plan_of(desired, join_observed(live, view.records), backend, options.plan, models=models)
            counts = tally(plan)
            # whatever the plan would write now: due retries, validation jobs whose training run just
            # succeeded (create, or replace of the previous one), anything else that became due
            due = tried.due(plan)
            if due:
                outcome = _apply_audited(plan, due, backend, tracker, view, lock, options, hooks, stop, result)
                tried.note(outcome)
                if outcome.stopped:
                    break
            _settle(tracker, live, desired, view, lock, stop, result)
            update(counts)
            done = finished(counts, len(desired.runs)) or unfinishable(counts, len(desired.runs), tried.failed(plan))
            if done is not None:
                return done
            if time.monotonic() > deadline:
                return WaitResult(counts, timed_out=True)
            stop.wait(options.poll)
    return WaitResult(counts, timed_out=False, interrupted=True)


__all__ = ["ApplyOptions", "EngineResult", "Hooks", "apply_lock", "run_apply", "write_concurrency"]
