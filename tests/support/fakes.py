"""In-memory fakes of the backend and tracker seams, for unit tests of pure logic. The only fakes we have.

Integration tests never use these: they run the real local backend, a real MLflow server and a real
kube-apiserver.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from expctl.core.audit import INTENT, AuditRecord, entries
from expctl.core.errors import BackendError, TrackingError
from expctl.core.model import FailureClass, Launch, ObservedRun, Phase, RunSpec, TrackingRef
from expctl.core.quota import EnforcedQuotas
from expctl.core.team_platform import Team
from expctl.tracking.base import TrackerView


class FakeBackend:
    name = "fake"

    def __init__(self) -> None:
        self.objects: dict[str, ObservedRun] = {}
        self.writes: list[tuple[str, str]] = []
        self.clock = 1000.0

    def observe(self) -> list[ObservedRun]:
        return list(self.objects.values())

    def create(self, launch: Launch) -> None:
        existing = self.objects.get(launch.name)
        if existing is not None:
            if existing.spec_hash != launch.spec.spec_hash:
                raise BackendError(f"{launch.name} exists with another spec")
            return
        self.writes.append(("create", launch.name))
        spec = launch.spec
        self.objects[launch.name] = ObservedRun(
            run_key=spec.run_key, name=launch.name, experiment=spec.experiment, attempt=launch.attempt,
            spec_hash=spec.spec_hash, phase=Phase.PENDING, backend=self.name, created_at=self.clock,
            mlflow_run_id=launch.tracking.run_id, overrides=spec.overrides, commit=spec.commit,
        )
        self.clock += 1

    def delete(self, name: str) -> None:
        if self.objects.pop(name, None) is not None:
            self.writes.append(("delete", name))

    def cancel(self, name: str, by: str) -> None:
        if name not in self.objects:
            raise BackendError(f"no run named {name}")
        self.objects[name] = replace(self.objects[name], cancelled=True, phase=Phase.CANCELLED)

    def logs(self, name: str, replica: str | None = None, follow: bool = False) -> Iterator[str]:
        if name not in self.objects:
            raise BackendError(f"no run named {name}")
        yield f"{name}: hello\n"

    # test controls: play the platform
    def finish(self, name: str, phase: Phase, failure: FailureClass | None = None, at: float = 0.0,
               message: str = "") -> None:
        self.objects[name] = replace(self.objects[name], phase=phase, failure=failure, finished_at=at,
                                     message=message)


class FakeQuotaBackend(FakeBackend):
    """A backend named slurm whose scheduler enforces the GPU quotas of the teams in ``enforced``
    (``backends.base.EnforcesQuotas``); ``asked`` records the teams it was asked about."""

    name = "slurm"

    def __init__(self, enforced: Sequence[str] = (), notes: Sequence[str] = ()) -> None:
        super().__init__()
        self.answer = EnforcedQuotas(frozenset(enforced), tuple(notes))
        self.asked: list[list[str]] = []

    def enforced_quotas(self, teams: Sequence[Team]) -> EnforcedQuotas:
        self.asked.append([t.name for t in teams])
        return self.answer


class FakeQosLimits:
    """What ``sacctmgr show qos`` would list (``{qos: GPU limit}``; None: no accounting), or ``failure``
    raised as sacctmgr failing; ``calls`` counts the reads."""

    def __init__(self, limits: Mapping[str, str | None] | None, failure: str | None = None) -> None:
        self.limits, self.failure, self.calls = limits, failure, 0

    def __call__(self) -> Mapping[str, str | None] | None:
        self.calls += 1
        if self.failure is not None:
            raise BackendError(self.failure)
        return self.limits


class FakeTracker:
    """The tracker seam in memory: what ``ensure_run`` created and ``sync`` followed is what ``view`` returns
    (it passes ``tests/contract/tracker_suite.py``)."""

    def __init__(self) -> None:
        self.runs: dict[tuple[str, str, int], str] = {}
        self.remembered: list[ObservedRun] = []
        self.killed: list[str] = []
        self.audit: list[dict[str, Any]] = []
        self.records_by_id: dict[str, AuditRecord] = {}
        self.requests: list[str] = []

    def check(self) -> None:
        return None

    def view(self) -> TrackerView:
        self.requests.append("view")
        open_ones = [r for r in self.records_by_id.values() if r.state == INTENT]
        return TrackerView(list(self.remembered), open_ones, None)

    def records(self) -> list[ObservedRun]:
        return self.view().records

    def ensure_run(self, spec: RunSpec, attempt: int, applied_by: str,
                   view: TrackerView | None = None) -> TrackingRef:
        key = (spec.run_key, spec.spec_hash, attempt)
        if key not in self.runs:
            self.requests.append("create")
            self.runs[key] = f"run{len(self.runs):04d}"
            self.remembered.append(ObservedRun(
                run_key=spec.run_key, name=spec.name_for(attempt), experiment=spec.experiment, attempt=attempt,
                spec_hash=spec.spec_hash, phase=Phase.PENDING, backend="fake", kind=spec.job.kind.value,
                mlflow_run_id=self.runs[key], overrides=spec.overrides, commit=spec.commit, user=applied_by,
                live=False))
        return TrackingRef("memory://", self.runs[key], spec.experiment)

    def _update(self, run_id: str, **changes: Any) -> None:
        self.remembered = [replace(r, **changes) if r.mlflow_run_id == run_id else r for r in self.remembered]

    def sync(self, observed: Sequence[ObservedRun], desired: Sequence[RunSpec],
             view: TrackerView | None = None) -> None:
        """A run's phase follows its job's (never back from finished), with its failure and cancellation."""
        known = {r.mlflow_run_id: r for r in self.remembered}
        for obs in observed:
            run = known.get(obs.mlflow_run_id)
            if not obs.live or run is None or run.phase.finished or obs.phase is Phase.PENDING:
                continue
            self._update(run.mlflow_run_id or "", phase=obs.phase, failure=obs.failure, message=obs.message,
                         finished_at=obs.finished_at if obs.phase.finished else None,
                         cancelled=run.cancelled or obs.cancelled)

    def mark_killed(self, run_id: str, by: str = "") -> None:
        self.killed.append(run_id)
        run = next((r for r in self.remembered if r.mlflow_run_id == run_id), None)
        if run is not None:
            self._update(run_id, phase=run.phase if run.phase.finished else Phase.CANCELLED, cancelled=True)

    def fail_launch(self, run_id: str, reason: str) -> None:
        self._update(run_id, phase=Phase.FAILED, failure=FailureClass.INFRASTRUCTURE,
                     message=f"launch failed: {reason}", finished_at=time.time())

    def begin_audit(self, record: AuditRecord) -> AuditRecord:
        stored = replace(record, record_id=f"audit{len(self.records_by_id)}")
        self.records_by_id[str(stored.record_id)] = stored
        return stored

    def complete_audit(self, record: AuditRecord) -> None:
        self.records_by_id[str(record.record_id)] = record
        self.audit.extend(entries(record))

    def record_audit(self, entry: dict[str, Any]) -> None:
        self.audit.append(entry)

    def audit_entries(self, experiment: str | None = None, limit: int = 50,
                      team: str | None = None) -> list[dict[str, Any]]:
        return [e for e in reversed(self.audit) if experiment in (None, e["experiment"])
                and team in (None, e.get("team"))][:limit]


class FakeCheckpointTracker(FakeTracker):
    """A tracker that also knows attempts' checkpoints (``tracking.base.CheckpointRecords``)."""

    def __init__(self) -> None:
        super().__init__()
        self.checkpoints: dict[str, Any] = {}  # run id → Checkpoint
        self.resumed: dict[str, Any] = {}  # run id → ResumeFrom recorded on it

    def checkpoint_of(self, run_id: str) -> Any:
        return self.checkpoints.get(run_id)

    def record_resume(self, run_id: str, resume: Any) -> None:
        self.resumed[run_id] = resume


class FakeLogTracker(FakeTracker):
    """A tracker that keeps logs (``tracking.base.LogStore``), in memory."""

    def __init__(self, tail_bytes: int = 1024) -> None:
        super().__init__()
        self.log_tail_bytes = tail_bytes
        self.kept: dict[str, dict[str, str] | None] = {}  # run id → logs (None: unavailable)
        self.why_not: dict[str, str] = {}
        self.down = False  # play a tracking store that fails every write

    def logs_kept(self, run_id: str) -> bool:
        return run_id in self.kept

    def keep_logs(self, run_id: str, logs: dict[str, str] | None, why_not: str = "") -> None:
        if self.down:
            from expctl.core.errors import TrackingError

            raise TrackingError("MLflow at memory://: keep logs failed: down")
        self.kept[run_id] = logs
        if logs is None:
            self.why_not[run_id] = why_not

    def kept_logs(self, run_id: str) -> dict[str, str] | None:
        return self.kept.get(run_id)


class FakeWorkspaceStore(FakeTracker):
    """One MLflow workspace's store, in memory, as ``tracking.mlflow.team_stores.TeamStores`` uses it: its runs
    get ids prefixed by the workspace; a run id it does not hold is refused, as the server refuses another
    workspace's run; ``models`` are the registered versions it answers for."""

    def __init__(self, workspace: str | None) -> None:
        super().__init__()
        self.workspace = workspace
        self.tracking_uri = self.shown_uri = "http://mlflow.test"
        self.log_tail_bytes = 1000
        self.models: dict[str, Any] = {}
        self.views_given: list[TrackerView | None] = []
        self.rest = None  # no server to list workspaces on: no note of moved runs

    def ensure_run(self, spec: RunSpec, attempt: int, applied_by: str,
                   view: TrackerView | None = None) -> TrackingRef:
        self.views_given.append(view)
        ref = super().ensure_run(spec, attempt, applied_by, view)
        run_id = f"{self.workspace or 'default'}-{ref.run_id}"
        self._update(ref.run_id, mlflow_run_id=run_id)
        self.runs = {k: (run_id if v == ref.run_id else v) for k, v in self.runs.items()}
        return TrackingRef(ref.tracking_uri, run_id, ref.experiment_name)

    def experiment_of_run(self, run_id: str) -> str:
        found = next((r.experiment for r in self.remembered if r.mlflow_run_id == run_id), None)
        if found is None:
            raise TrackingError(f"MLflow at {self.shown_uri}: read run {run_id} failed: RESOURCE_DOES_NOT_EXIST")
        return found

    def model_version(self, decl: Any) -> Any:
        return self.models.get(str(decl))
