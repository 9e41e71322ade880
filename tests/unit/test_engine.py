"""The apply engine on the in-memory seams: order, faults, lost lock, stop, audit intent and recovery.

Real-backend proofs of the same behaviour are in tests/integration/test_apply_engine.py and
tests/kube/test_apply_engine_kube.py; these pin the engine's own logic quickly and deterministically.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from expctl.config.desired_state import Desired
from expctl.config.schema import Settings
from expctl.config.source import Snapshot
from expctl.core import audit
from expctl.core.errors import BackendError, LockError
from expctl.core.model import Action, Change, Launch, ObservedRun, Phase, Plan, Reason, RunSpec
from expctl.engine.apply import ApplyOptions, EngineResult, Hooks, run_apply
from expctl.engine.plan import PlanOptions
from expctl.engine.writes import Stop, apply_changes
from expctl.tracking.base import TrackerUnavailable
from tests.support.factories import make_spec
from tests.support.fakes import FakeBackend, FakeTracker


def desired(n: int) -> Desired:
    runs = [make_spec("sweep", (f"lr={i}",)) for i in range(n)]
    return Desired(Snapshot(Path("."), "c" * 40, "c" * 40), Settings(), runs)


class Lock:
    def __init__(self) -> None:
        self.lost = False
        self.checks = 0

    def check(self) -> None:
        self.checks += 1
        if self.lost:
            raise LockError("lost lease default/expctl-apply while applying")

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class SlowBackend(FakeBackend):
    """Creates take a random moment (so that a pool finishes them out of order); some names fail."""

    def __init__(self, fail: set[str] | None = None, on_create: object = None) -> None:
        super().__init__()
        self.fail = fail or set()
        self.on_create = on_create
        self.lock = threading.Lock()

    def create(self, launch: Launch) -> None:
        time.sleep(random.random() * 0.01)
        if launch.name in self.fail:
            raise RuntimeError("connection reset by peer\nsecond line")
        with self.lock:
            super().create(launch)
        if callable(self.on_create):
            self.on_create(launch)


def run(want: Desired, backend: FakeBackend, tracker: FakeTracker, lock: Lock | None = None,
        concurrency: int = 4) -> tuple[EngineResult, list[tuple[str, str]]]:
    shown: list[tuple[str, str]] = []
    options = ApplyOptions(plan=PlanOptions(), who="Ada", concurrency=concurrency)
    hooks = Hooks(progress=lambda change, status: shown.append((change.name, status)))
    return run_apply(want, backend, tracker, lock or Lock(), options, hooks), shown


def test_pool_reports_in_plan_order_and_audits_one_record() -> None:
    want, backend, tracker = desired(30), SlowBackend(), FakeTracker()
    result, shown = run(want, backend, tracker)
    assert result.exit_code == 0
    assert [name for name, _ in shown] == [s.name for s in want.runs]  # plan order, whatever finished first
    assert {status for _, status in shown} == {"done"}
    assert len(backend.objects) == 30
    (record,) = tracker.records_by_id.values()
    assert record.state == audit.COMPLETE and [c.result for c in record.changes] == ["done"] * 30
    assert tracker.requests.count("view") == 1, "one observation of the tracker per apply"


def test_a_failing_change_is_one_line_and_exit_3_others_applied() -> None:
    want = desired(6)
    backend, tracker = SlowBackend(fail={want.runs[2].name}), FakeTracker()
    result, _ = run(want, backend, tracker)
    assert result.exit_code == 3
    outcome = result.applied[0]
    assert [(c.name, m) for c, m in outcome.failed] == [
        (want.runs[2].name, "RuntimeError: connection reset by peer second line")]
    assert len(outcome.done) == 5
    results = {c.run: c.result for c in next(iter(tracker.records_by_id.values())).changes}
    assert results[want.runs[2].name].startswith("failed: RuntimeError")


def test_unreachable_tracker_stops_further_launches() -> None:
    want = desired(12)

    class Flaky(FakeTracker):
        def ensure_run(self, spec, attempt, applied_by, view=None):  # type: ignore[no-untyped-def]
            if spec.name == want.runs[3].name:
                raise TrackerUnavailable("MLflow at http://127.0.0.1:1 is unreachable: create run failed")
            return super().ensure_run(spec, attempt, applied_by, view)

    backend, tracker = SlowBackend(), Flaky()
    result, _ = run(want, backend, tracker, concurrency=1)
    outcome = result.applied[0]
    assert result.exit_code == 3
    assert [c.name for c in outcome.done] == [s.name for s in want.runs[:3]]
    assert [c.name for c, _ in outcome.failed] == [want.runs[3].name]
    assert [c.name for c in outcome.skipped] == [s.name for s in want.runs[4:]]
    assert outcome.stopped == "the tracking store is unreachable"
    assert len(backend.objects) == 3


def test_lost_lock_stops_before_the_next_write() -> None:
    want, lock = desired(10), Lock()
    backend = SlowBackend()

    def lose_after_four(launch: Launch) -> None:
        if len(backend.objects) == 4:
            lock.lost = True

    backend.on_create = lose_after_four
    result, _ = run(want, backend, FakeTracker(), lock, concurrency=1)
    outcome = result.applied[0]
    assert len(backend.objects) == 4, "no write after the lock was lost"
    assert "lost lease" in outcome.stopped
    assert result.exit_code == 3


def test_stop_leaves_the_rest_unstarted_and_in_flight_finish() -> None:
    want = desired(20)
    stop = Stop()
    backend = SlowBackend()
    backend.on_create = lambda launch: stop.set("interrupted by SIGINT") if len(backend.objects) == 5 else None
    plan_changes = [Change(Action.CREATE, Reason.MISSING, s.experiment, s.run_key, s.name, s.overrides,
                           s.spec_hash, 1, s) for s in want.runs]
    outcome = apply_changes(plan_changes, backend, FakeTracker(), "Ada", concurrency=3, stop=stop)
    assert len(outcome.done) == len(backend.objects) >= 5
    assert len(outcome.done) <= 5 + 3  # at most the ones in flight when the stop came
    assert len(outcome.done) + len(outcome.skipped) == 20 and not outcome.failed
    assert outcome.results()[want.runs[-1].name] == "not applied (interrupted by SIGINT)"


def test_killed_apply_record_is_completed_by_the_next_apply() -> None:
    want, backend, tracker = desired(4), FakeBackend(), FakeTracker()
    plan = Plan("c" * 40, "fake", tuple(Change(Action.CREATE, Reason.MISSING, s.experiment, s.run_key, s.name,
                                              s.overrides, s.spec_hash, 1, s) for s in want.runs), "fp")
    intent = tracker.begin_audit(audit.new_record(plan, list(plan.changes), "Ada", ""))
    # the killed apply had created two of its four jobs
    apply_changes(list(plan.changes[:2]), backend, tracker, "Ada")
    result, _ = run(want, backend, tracker)
    recovered = tracker.records_by_id[str(intent.record_id)]
    assert recovered.state == audit.RECOVERED
    assert [c.result for c in recovered.changes] == ["done", "done", "not applied", "not applied"]
    history = [e["run"] for e in tracker.audit_entries(limit=100)]
    assert sorted(history) == sorted(s.name for s in want.runs), "every created run exactly once"
    assert result.exit_code == 0


def test_recover_of_deletes_and_replaced_runs() -> None:
    spec = make_spec("x")
    gone = Change(Action.DELETE, Reason.MISSING, "x", "k", "x-old", (), "h0", 1, None, None, "", ("x-old",))
    kept = Change(Action.DELETE, Reason.MISSING, "x", "k2", "x-live", (), "h1", 1, None, None, "", ("x-live",))
    created = Change(Action.CREATE, Reason.MISSING, "x", spec.run_key, spec.name, (), spec.spec_hash, 1, spec)
    record = audit.new_record(Plan("c", "fake", (gone, kept, created), "fp"), [gone, kept, created], "Ada", "")
    backend = FakeBackend()
    backend.objects["x-live"] = replace(_observed(spec), name="x-live")
    backend.objects[spec.name] = _observed(spec)
    done = audit.recover(record, backend.observe())
    assert [c.result for c in done.changes] == ["done", "not applied", "done"]


def test_noops_are_not_part_of_the_record_so_recovery_never_lists_them() -> None:
    spec, new = make_spec("kept"), make_spec("new")
    noop = Change(Action.NOOP, Reason.UNCHANGED, "kept", spec.run_key, spec.name, (), spec.spec_hash, 1, spec)
    create = Change(Action.CREATE, Reason.MISSING, "new", new.run_key, new.name, (), new.spec_hash, 1, new)
    record = audit.new_record(Plan("c", "fake", (noop, create), "fp"), [noop, create], "Ada", "")
    assert [c.run for c in record.changes] == [new.name]
    done = audit.recover(record, [_observed(spec)])  # the unchanged run's object exists; the new one's not
    assert audit.entries(done) == []


def test_recover_counts_a_created_job_that_finished_and_was_garbage_collected() -> None:
    spec, other = make_spec("ttl"), make_spec("never")
    changes = [Change(Action.CREATE, Reason.MISSING, s.experiment, s.run_key, s.name, (), s.spec_hash, 1, s)
               for s in (spec, other)]
    record = audit.new_record(Plan("c", "fake", tuple(changes), "fp"), changes, "Ada", "")
    remembered = replace(_observed(spec), phase=Phase.SUCCEEDED, live=False)  # only the tracker remembers it
    tracked_only = replace(_observed(other), live=False)  # its MLflow run exists, its job was never created
    done = audit.recover(record, [remembered, tracked_only])
    assert [c.result for c in done.changes] == ["done", "not applied"]


def _observed(spec: RunSpec) -> ObservedRun:
    return ObservedRun(spec.run_key, spec.name, spec.experiment, 1, spec.spec_hash, Phase.PENDING, "fake")


def test_audit_record_round_trips_through_its_json_parts() -> None:
    import json

    want = desired(3)
    plan = Plan("c" * 40, "fake", tuple(Change(Action.CREATE, Reason.MISSING, s.experiment, s.run_key, s.name,
                                              s.overrides, s.spec_hash, 1, s) for s in want.runs), "fp")
    record = audit.with_results(audit.new_record(plan, list(plan.changes), "Ada", "ci-bot"),
                                {want.runs[0].name: "done", want.runs[1].name: "failed: x"})
    back = audit.decode(json.loads(json.dumps(record.header())), json.loads(record.changes_json()),
                        json.loads(record.results_json()))
    assert back == record
    assert [e["run"] for e in audit.entries(back)] == [want.runs[0].name]


def test_view_is_read_once_even_with_wait_and_no_writes() -> None:
    want, backend, tracker = desired(2), FakeBackend(), FakeTracker()
    run(want, backend, tracker)
    tracker.requests.clear()
    for name in list(backend.objects):
        backend.finish(name, Phase.SUCCEEDED)
    options = ApplyOptions(plan=PlanOptions(), who="Ada", wait=True, poll=0.01)
    result = run_apply(want, backend, tracker, Lock(), options, Hooks())
    assert result.waited is not None and result.waited.summary == "Finished: 2 succeeded."
    assert tracker.requests == ["view", "view"]  # the apply's observation, then one poll of --wait


def test_backend_error_message_is_kept_verbatim() -> None:
    want = desired(1)

    class Refusing(FakeBackend):
        def create(self, launch: Launch) -> None:
            raise BackendError(f'refusing to create {launch.name} in namespace "x": allowed: "y"')

    result, _ = run(want, Refusing(), FakeTracker())
    (change, message), = result.applied[0].failed
    assert message == f'refusing to create {change.name} in namespace "x": allowed: "y"'


def test_observe_reads_backend_and_tracker_at_once_and_reports_the_backend_first() -> None:
    from expctl.engine.plan import observe_alongside

    backend, tracker = FakeBackend(), FakeTracker()
    started = threading.Event()

    def view() -> object:
        started.set()
        return tracker.view()

    class Waiting(FakeBackend):
        def observe(self) -> list[ObservedRun]:
            assert started.wait(10), "the tracker is read while the backend is"
            return super().observe()

    live, got = observe_alongside(Waiting(), view)
    assert live == [] and got == tracker.view()

    def broken_view() -> object:
        raise TrackerUnavailable("MLflow at memory:// is unreachable")

    class Broken(FakeBackend):
        def observe(self) -> list[ObservedRun]:
            raise BackendError("Kubernetes API at memory:// is unreachable")

    with pytest.raises(BackendError, match="Kubernetes"):
        observe_alongside(Broken(), broken_view)
    with pytest.raises(TrackerUnavailable, match="MLflow"):
        observe_alongside(backend, broken_view)


def test_a_refused_launch_fails_its_run_so_the_next_plan_retries_it() -> None:
    want = desired(2)
    backend, tracker = SlowBackend(fail={want.runs[0].name}), FakeTracker()
    result, _ = run(want, backend, tracker)
    assert result.exit_code == 3
    failed = {r.name: r for r in tracker.remembered if r.phase is Phase.FAILED}
    assert list(failed) == [want.runs[0].name]
    assert failed[want.runs[0].name].message == "launch failed: RuntimeError: connection reset by peer second line"
    backend.fail.clear()
    tracker.remembered = [replace(r, finished_at=0.0) for r in tracker.remembered]  # past the backoff
    again, _ = run(want, backend, tracker)
    assert again.exit_code == 0
    assert [(c.action, c.attempt) for c in again.applied[0].done] == [(Action.RETRY, 2)]


def test_a_failure_to_mark_the_run_is_reported_next_to_the_launchs_own_error() -> None:
    want = desired(1)

    class Unmarkable(FakeTracker):
        def fail_launch(self, run_id: str, reason: str) -> None:
            raise TrackerUnavailable("MLflow at http://127.0.0.1:1 is unreachable: mark run failed")

    result, _ = run(want, SlowBackend(fail={want.runs[0].name}), Unmarkable())
    (_, message), = result.applied[0].failed
    assert message.startswith("RuntimeError: connection reset by peer second line; its MLflow run run0000 is left "
                              "RUNNING: MLflow at http://127.0.0.1:1 is unreachable"), message
