"""The tracker contract: one class of tests every Tracker passes (as ``backend_suite`` is for backends, and Hydra's
LauncherTestSuite for launchers).

What ``expctl.tracking.base.Tracker`` promises, and what each optional capability there promises when the
tracker has it: find-or-create is idempotent (never two runs for one identity, with or without a view), the
view returns what was recorded and what sync followed, the audit trail round-trips, and a settled run is still
in the view. A tracker's test module subclasses ``TrackerContract`` and provides two fixtures:

- ``tracker``: a tracker on a store that holds nothing of it yet (on a shared store: its own backend name);
- ``reopen``: a callable giving another tracker on the same state (expctl restarted; an in-memory tracker may
  give itself).

Every test names its own experiment (``experiment``), so that trackers on one shared store (one ``mlflow
server`` for the session) do not see each other's runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from expctl.core import audit
from expctl.core.model import (
    Action,
    Change,
    Checkpoint,
    FailureClass,
    ObservedRun,
    Phase,
    Plan,
    Reason,
    ResumeFrom,
    RunSpec,
    TrackingRef,
)
from expctl.tracking.base import CheckpointRecords, LogStore, Settles, Tracker
from tests.support.factories import make_spec

WHO = "Contract Tester <contract@example.com>"


def observed(spec: RunSpec, ref: TrackingRef, phase: Phase, attempt: int = 1, **kw: Any) -> ObservedRun:
    """The backend's object of a run, as a sync would pass it (live)."""
    return ObservedRun(run_key=spec.run_key, name=spec.name_for(attempt), experiment=spec.experiment,
                       attempt=attempt, spec_hash=spec.spec_hash, phase=phase, backend="contract",
                       mlflow_run_id=ref.run_id, overrides=spec.overrides, commit=spec.commit, **kw)


def recorded(tracker: Tracker, ref: TrackingRef) -> ObservedRun:
    """The one record of the run ``ref`` in a new view."""
    found = [r for r in tracker.view().records if r.mlflow_run_id == ref.run_id]
    assert len(found) == 1, f"expected exactly one record of run {ref.run_id}, got {found}"
    return found[0]


class TrackerContract:
    @pytest.fixture
    def experiment(self) -> str:
        return f"contract-{uuid.uuid4().hex[:8]}"

    # -- check and view --------------------------------------------------------------------------------

    def test_check_passes_on_a_usable_store(self, tracker: Tracker) -> None:
        tracker.check()

    def test_view_starts_empty(self, tracker: Tracker) -> None:
        view = tracker.view()
        assert view.records == [] and view.open_audits == []
        assert tracker.records() == []

    # -- find-or-create --------------------------------------------------------------------------------

    def test_ensure_run_is_find_or_create(self, tracker: Tracker, experiment: str) -> None:
        spec = make_spec(experiment)
        ref = tracker.ensure_run(spec, 1, WHO)
        assert ref.run_id and ref.experiment_name == spec.experiment
        assert tracker.ensure_run(spec, 1, WHO) == ref
        assert tracker.ensure_run(spec, 1, WHO, tracker.view()) == ref
        assert len(tracker.view().records) == 1

    def test_ensure_run_with_one_view_creates_once(self, tracker: Tracker, experiment: str) -> None:
        specs = [make_spec(experiment, overrides=(f"lr={lr}",), config={"lr": lr}) for lr in (0.1, 0.2)]
        view = tracker.view()
        refs = [tracker.ensure_run(spec, 1, WHO, view) for spec in specs]
        assert [tracker.ensure_run(spec, 1, WHO, view) for spec in specs] == refs, "the view knows what it made"
        assert [tracker.ensure_run(spec, 1, WHO) for spec in specs] == refs, "a search finds them too"
        assert len({ref.run_id for ref in refs}) == 2
        assert sorted(r.mlflow_run_id or "" for r in tracker.view().records) == sorted(r.run_id for r in refs)

    def test_attempts_and_spec_changes_are_new_runs(self, tracker: Tracker, experiment: str) -> None:
        spec = make_spec(experiment)
        changed = replace(spec, spec_hash="0" * 20)
        ids = {tracker.ensure_run(spec, 1, WHO).run_id, tracker.ensure_run(spec, 2, WHO).run_id,
               tracker.ensure_run(changed, 1, WHO).run_id}
        assert len(ids) == 3
        identities = {(r.run_key, r.spec_hash, r.attempt) for r in tracker.view().records}
        assert identities == {(spec.run_key, spec.spec_hash, 1), (spec.run_key, spec.spec_hash, 2),
                              (spec.run_key, changed.spec_hash, 1)}

    def test_view_returns_what_was_recorded(self, tracker: Tracker, reopen: Callable[[], Tracker],
                                            experiment: str) -> None:
        spec = make_spec(experiment, overrides=("lr=0.5",), config={"lr": 0.5})
        ref = tracker.ensure_run(spec, 2, WHO)
        for seen in (tracker, reopen()):
            run = recorded(seen, ref)
            assert (run.run_key, run.spec_hash, run.attempt) == (spec.run_key, spec.spec_hash, 2)
            assert (run.name, run.experiment) == (spec.name_for(2), spec.experiment)
            assert tuple(run.overrides) == spec.overrides and run.commit == spec.commit
            assert not run.live and not run.phase.finished and run.failure is None and not run.cancelled
            assert seen.records() == seen.view().records

    # -- sync and cancel -------------------------------------------------------------------------------

    def test_sync_follows_phases_never_back_from_finished(self, tracker: Tracker, reopen: Callable[[], Tracker],
                                                          experiment: str) -> None:
        spec = make_spec(experiment)
        ref = tracker.ensure_run(spec, 1, WHO)
        tracker.sync([observed(spec, ref, Phase.RUNNING)], [spec], tracker.view())
        assert recorded(tracker, ref).phase is Phase.RUNNING
        tracker.sync([observed(spec, ref, Phase.SUCCEEDED, finished_at=1_700_000_000.0)], [spec])
        tracker.sync([observed(spec, ref, Phase.RUNNING)], [spec], tracker.view())
        run = recorded(reopen(), ref)
        assert run.phase is Phase.SUCCEEDED and run.finished_at == pytest.approx(1_700_000_000.0)

    def test_sync_records_a_failure_and_its_class(self, tracker: Tracker, experiment: str) -> None:
        spec = make_spec(experiment)
        ref = tracker.ensure_run(spec, 1, WHO)
        tracker.sync([observed(spec, ref, Phase.FAILED, failure=FailureClass.INFRASTRUCTURE,
                               message="node lost", finished_at=1_700_000_000.0)], [spec], tracker.view())
        run = recorded(tracker, ref)
        assert (run.phase, run.failure, run.message) == (Phase.FAILED, FailureClass.INFRASTRUCTURE, "node lost")

    def test_sync_of_a_cancelled_job_and_mark_killed(self, tracker: Tracker, experiment: str) -> None:
        specs = [make_spec(experiment, overrides=(f"lr={lr}",), config={"lr": lr}) for lr in (0.1, 0.2)]
        refs = [tracker.ensure_run(spec, 1, WHO) for spec in specs]
        tracker.sync([observed(specs[0], refs[0], Phase.CANCELLED, cancelled=True, finished_at=1_700_000_000.0)],
                     specs, tracker.view())
        tracker.mark_killed(refs[1].run_id, by="someone")
        for ref in refs:
            run = recorded(tracker, ref)
            assert run.phase is Phase.CANCELLED and run.cancelled, run

    def test_sync_of_nothing_live_writes_nothing(self, tracker: Tracker, experiment: str) -> None:
        spec = make_spec(experiment)
        ref = tracker.ensure_run(spec, 1, WHO)
        gone = replace(observed(spec, ref, Phase.SUCCEEDED), live=False)
        tracker.sync([gone], [spec], tracker.view())
        assert not recorded(tracker, ref).phase.finished

    # -- the audit trail -------------------------------------------------------------------------------

    def test_audit_record_round_trips(self, tracker: Tracker, reopen: Callable[[], Tracker], experiment: str) -> None:
        specs = [make_spec(experiment, overrides=(f"lr={lr}",), config={"lr": lr}) for lr in (0.1, 0.2)]
        changes = [Change(Action.CREATE, Reason.MISSING, s.experiment, s.run_key, s.name, s.overrides,
                          s.spec_hash, 1, s) for s in specs]
        record = audit.new_record(Plan("c" * 40, "contract", tuple(changes), "fp"), changes, WHO, "ci-bot")
        begun = tracker.begin_audit(record)
        assert begun.record_id and begun == record
        assert [r for r in reopen().view().open_audits if r.apply_id == record.apply_id] == [begun]
        done = audit.with_results(begun, {specs[0].name: audit.DONE, specs[1].name: "failed: boom"})
        tracker.complete_audit(done)
        assert not [r for r in tracker.view().open_audits if r.apply_id == record.apply_id]
        entries = reopen().audit_entries(experiment=experiment)
        assert entries == list(reversed(audit.entries(done))) and [e["run"] for e in entries] == [specs[0].name]

    def test_record_audit_entries_newest_first(self, tracker: Tracker, experiment: str) -> None:
        spec = make_spec(experiment)
        first, second = ({"action": action, "run": spec.name, "experiment": experiment, "run_key": spec.run_key,
                          "attempt": 1, "reason": "operator", "kind": "pytorch", "namespace": "", "who": WHO,
                          "commit": spec.commit, "fingerprint": "", "time": when, "backend": "contract",
                          "spec_hash": spec.spec_hash}
                         for action, when in (("cancel", 1_700_000_000.0), ("delete", 1_700_000_100.0)))
        tracker.record_audit(first)
        tracker.record_audit(second)
        got = tracker.audit_entries(experiment=experiment)
        keys = ("action", "run", "experiment", "run_key", "attempt", "reason", "who", "commit", "spec_hash")
        assert [{k: e[k] for k in keys} for e in got] == [{k: e[k] for k in keys} for e in (second, first)]
        assert [e["action"] for e in tracker.audit_entries(experiment=experiment, limit=1)] == ["delete"]
        assert tracker.audit_entries(experiment=f"{experiment}-other") == []

    # -- optional capabilities (``tracking/base.py``): tested when the tracker has them ----------------------

    def test_settled_runs_stay_in_the_view(self, tracker: Tracker, reopen: Callable[[], Tracker],
                                           experiment: str) -> None:
        if not isinstance(tracker, Settles):
            pytest.skip("this tracker does not settle runs")
        specs = [make_spec(experiment, overrides=(f"lr={lr}",), config={"lr": lr}) for lr in (0.1, 0.2)]
        refs = [tracker.ensure_run(spec, 1, WHO) for spec in specs]
        tracker.sync([observed(specs[0], refs[0], Phase.SUCCEEDED, finished_at=1_700_000_000.0)], specs,
                     tracker.view())
        view = tracker.view()  # the sync's writes are behind it: the finished run settles now
        assert tracker.settle([], specs, view) == 1
        assert tracker.settle([], specs, tracker.view()) == 0, "settled once"
        for seen in (tracker, reopen()):
            assert recorded(seen, refs[0]).phase is Phase.SUCCEEDED
            assert not recorded(seen, refs[1]).phase.finished
        tracker.mark_killed(refs[0].run_id, by="someone")  # a write to a settled run: the view shows it
        assert recorded(reopen(), refs[0]).cancelled

    def test_kept_logs_round_trip(self, tracker: Tracker, reopen: Callable[[], Tracker], experiment: str) -> None:
        if not isinstance(tracker, LogStore):
            pytest.skip("this tracker does not keep logs")
        specs = [make_spec(experiment, overrides=(f"lr={lr}",), config={"lr": lr}) for lr in (0.1, 0.2)]
        kept, lost = (tracker.ensure_run(spec, 1, WHO).run_id for spec in specs)
        tracker.view()
        assert tracker.log_tail_bytes > 0 and not tracker.logs_kept(kept)
        tracker.keep_logs(kept, {"worker-0": "hello\n", "chief-0": "bye\n"})
        tracker.keep_logs(lost, None, why_not="the pods are gone")
        again = reopen()
        assert isinstance(again, LogStore)
        assert again.logs_kept(kept) and again.kept_logs(kept) == {"worker-0": "hello\n", "chief-0": "bye\n"}
        assert again.logs_kept(lost) and again.kept_logs(lost) is None

    def test_checkpoint_records_round_trip(self, tracker: Tracker, experiment: str) -> None:
        if not isinstance(tracker, CheckpointRecords):
            pytest.skip("this tracker does not know checkpoints")
        spec = make_spec(experiment)
        first, second = (tracker.ensure_run(spec, attempt, WHO).run_id for attempt in (1, 2))
        assert tracker.checkpoint_of(first) is None
        tracker.record_resume(second, ResumeFrom("runs:/x/checkpoints/epoch-3.pt", 1, first, 3))
        # an attempt that logged no checkpoint of its own hands on the one it resumed from
        assert tracker.checkpoint_of(second) == Checkpoint("runs:/x/checkpoints/epoch-3.pt", 3)
        assert recorded(tracker, TrackingRef("", second, spec.experiment)).resumed_from == ResumeFrom(
            "runs:/x/checkpoints/epoch-3.pt", 1, first, 3)
