"""Each team's runs in its own MLflow workspace: ``TeamStores``, the Tracker over one tracking server with
workspaces, made of one ``MlflowStore`` per workspace (a store sends every request of its own in its workspace:
``session.InWorkspace``, ``rest_search``'s header).

A run goes to the workspace of its experiment's team (``workspace_of``); the server's default workspace holds
what is no team's: the audit trail of applies (the platform's CI identity's record, one per apply across
teams), the team writes of ``teams apply``, and the runs of an experiment of no team. A view is every
workspace's view, merged; a request about one run goes to the store whose view showed it (else the stores are
asked in turn: a run id names one run on the whole server). Models are looked for in every team's workspace.

Each store keeps its own experiments, run index and ledger of settled runs: nothing of one workspace is looked
for in another. ``open_teams`` decides whether a server has workspaces (one request): without them, or with no
team declaring ``mlflow:``, the engine keeps the one ``MlflowStore`` of before.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from expctl.core.audit import AuditRecord
from expctl.core.errors import TrackingError
from expctl.core.gate import GateResult
from expctl.core.inputs import InputDecl, ModelVersion
from expctl.core.model import Checkpoint, ObservedRun, ResumeFrom, RunSpec, TrackingRef, ValidationGate
from expctl.core.report import Reference, TrackedRun
from expctl.tracking.base import TrackerView
from expctl.tracking.mlflow.store import MlflowStore

__all__ = ["TeamStores"]

DEFAULT = ""  # the key of the server's default workspace among the stores


class TeamStores:
    """The Tracker of runs kept in their teams' MLflow workspaces (see the module's docstring)."""

    def __init__(self, make: Callable[[str | None], MlflowStore], workspaces: Iterable[str],
                 workspace_of: Callable[[str], str | None]) -> None:
        self._make = make
        self.default = make(None)
        self.tracking_uri, self.shown_uri = self.default.tracking_uri, self.default.shown_uri
        self.stores: dict[str, MlflowStore] = {DEFAULT: self.default}
        for ws in workspaces:
            self.stores.setdefault(ws, make(ws))
        self._workspace_of = workspace_of
        self._run_store: dict[str, MlflowStore] = {}
        self.log_tail_bytes = self.default.log_tail_bytes
        self._looked_for_moves = False

    # -- where a run goes ----------------------------------------------------------------------------

    def store_for(self, experiment: str) -> MlflowStore:
        """The store of the workspace that holds ``experiment``'s runs."""
        ws = self._workspace_of(experiment) or DEFAULT
        if ws not in self.stores:
            self.stores[ws] = self._make(ws)
        return self.stores[ws]

    def _key(self, store: MlflowStore) -> str:
        return store.workspace or DEFAULT

    def store_of_run(self, run_id: str) -> MlflowStore:
        """The store whose workspace holds run ``run_id``: as a view showed it, else asked in turn."""
        if run_id in self._run_store:
            return self._run_store[run_id]
        last: TrackingError | None = None
        for store in self.stores.values():
            try:
                store.experiment_of_run(run_id)
            except TrackingError as exc:
                last = exc
                continue
            self._run_store[run_id] = store
            return store
        raise last or TrackingError(f"MLflow at {self.shown_uri}: no workspace holds run {run_id}")

    def _remember(self, store: MlflowStore, records: Iterable[ObservedRun]) -> None:
        for record in records:
            if record.mlflow_run_id:
                self._run_store[record.mlflow_run_id] = store

    def _split(self, items: Iterable[Any]) -> dict[str, list[Any]]:
        by: dict[str, list[Any]] = {key: [] for key in self.stores}
        for item in items:
            by.setdefault(self._key(self.store_for(item.experiment)), []).append(item)
        return by

    def moved_runs(self, empty: Collection[str]) -> list[str]:
        """For a team workspace that holds none of its runs yet (``empty``): the experiments of its team whose runs
        are in another workspace expctl made for a team no longer declared there — a team renamed, or its
        ``mlflow.workspace`` changed. Their runs stay where they are; one line each says so (two requests, and
        one search per such workspace: only while a team's workspace is empty)."""
        status, found = self.default.rest.get("3.0/mlflow/workspaces") if self.default.rest else (0, {})
        if status != 200:
            return []
        lines = []
        for item in found.get("workspaces") or []:
            name = str(item.get("name", "")) if isinstance(item, dict) else ""
            if not name or name in self.stores or not str(item.get("description", "")).startswith("expctl team "):
                continue
            try:
                experiments = self._make(name).managed_experiment_names()
            except TrackingError:
                continue
            for experiment in sorted(experiments):
                now = self._workspace_of(experiment)
                if now in empty:
                    lines.append(f"MLflow: the runs of {experiment} stay in workspace {name!r} (its team was renamed, "
                                 f"or its mlflow.workspace changed); its new runs go to workspace {now!r}")
        return lines

    # -- the Tracker ---------------------------------------------------------------------------------

    def check(self) -> None:
        self.default.check()

    def view(self) -> TrackerView:
        """Every workspace's view: each team's runs read in its own workspace, the open audit records in the
        default one."""
        views = {key: store.view() for key, store in list(self.stores.items())}
        empty = [key for key, one in views.items() if key != DEFAULT and not one.records]
        if empty and not self._looked_for_moves:
            self._looked_for_moves = True
            for line in self.moved_runs(empty):
                warnings.warn(line, UserWarning, stacklevel=1)
        records: list[ObservedRun] = []
        for key, one in views.items():
            self._remember(self.stores[key], one.records)
            records += one.records
        return TrackerView(records, [a for one in views.values() for a in one.open_audits], views)

    def records(self) -> list[ObservedRun]:
        return self.view().records

    @staticmethod
    def _part(view: TrackerView | None, key: str) -> TrackerView | None:
        return view.index.get(key) if view is not None and isinstance(view.index, dict) else None

    def ensure_run(self, spec: RunSpec, attempt: int, applied_by: str,
                   view: TrackerView | None = None) -> TrackingRef:
        store = self.store_for(spec.experiment)
        ref = store.ensure_run(spec, attempt, applied_by, self._part(view, self._key(store)))
        self._run_store[ref.run_id] = store
        return ref

    def sync(self, observed: Sequence[ObservedRun], desired: Sequence[RunSpec],
             view: TrackerView | None = None) -> None:
        view = view if view is not None else self.view()
        seen, wanted = self._split(observed), self._split(desired)
        for key, store in list(self.stores.items()):
            part = self._part(view, key)
            if seen.get(key) or wanted.get(key):
                store.sync(seen.get(key, []), wanted.get(key, []), part)

    def settle(self, observed: Sequence[ObservedRun], desired: Sequence[RunSpec], view: TrackerView,
               stop: Callable[[], bool] = lambda: False) -> int:
        seen, wanted = self._split(observed), self._split(desired)
        done = 0
        for key, store in list(self.stores.items()):
            part = self._part(view, key)
            if part is not None:
                done += store.settle(seen.get(key, []), wanted.get(key, []), part, stop)
        return done

    def apply_gate(self, run_id: str, gate: ValidationGate,
                   metrics: Mapping[str, float] | None = None) -> GateResult:
        return self.store_of_run(run_id).apply_gate(run_id, gate, metrics)

    def mark_killed(self, run_id: str, by: str = "") -> None:
        self.store_of_run(run_id).mark_killed(run_id, by)

    def fail_launch(self, run_id: str, reason: str) -> None:
        self.store_of_run(run_id).fail_launch(run_id, reason)

    # -- the audit trail: the platform's, in the default workspace -------------------------------------

    def begin_audit(self, record: AuditRecord) -> AuditRecord:
        return self.default.begin_audit(record)

    def complete_audit(self, record: AuditRecord) -> None:
        self.default.complete_audit(record)

    def record_audit(self, entry: dict[str, Any]) -> None:
        self.default.record_audit(entry)

    def audit_entries(self, experiment: str | None = None, limit: int = 50,
                      team: str | None = None) -> list[dict[str, Any]]:
        return self.default.audit_entries(experiment, limit, team)

    # -- logs, produced datasets and checkpoints of one run ---------------------------------------------

    def logs_kept(self, run_id: str) -> bool:
        return self.store_of_run(run_id).logs_kept(run_id)

    def keep_logs(self, run_id: str, logs: dict[str, str] | None, why_not: str = "") -> None:
        store = self.store_of_run(run_id)
        store.log_tail_bytes = self.log_tail_bytes
        store.keep_logs(run_id, logs, why_not)

    def kept_logs(self, run_id: str) -> dict[str, str] | None:
        return self.store_of_run(run_id).kept_logs(run_id)

    def record_output(self, run_id: str, dataset: str, directory: str | None, manifest: str, digest: str) -> None:
        self.store_of_run(run_id).record_output(run_id, dataset, directory, manifest, digest)

    def fetch_output(self, run_id: str, dataset: str, into: str) -> str:
        return self.store_of_run(run_id).fetch_output(run_id, dataset, into)

    def checkpoint_of(self, run_id: str) -> Checkpoint | None:
        return self.store_of_run(run_id).checkpoint_of(run_id)

    def record_resume(self, run_id: str, resume: ResumeFrom) -> None:
        self.store_of_run(run_id).record_resume(run_id, resume)

    # -- reads for the operator and for reports --------------------------------------------------------

    def ui_experiments(self, names: Sequence[str] = ()) -> dict[str, tuple[str, bool]]:
        found: dict[str, tuple[str, bool]] = {}
        for store in self.stores.values():
            found.update(store.ui_experiments(names))
        return found

    def ui_workspaces(self, names: Sequence[str] = ()) -> dict[str, str]:
        """``{experiment: workspace}`` of ``names`` (of a team's workspace only): what links name."""
        return {name: ws for name in names if (ws := self._workspace_of(name))}

    def experiment_of_run(self, run_id: str) -> str:
        return self.store_of_run(run_id).experiment_of_run(run_id)

    def workspace_of_run(self, run_id: str) -> str | None:
        return self.store_of_run(run_id).workspace

    def registered_models(self) -> list[dict[str, Any]]:
        return [v for store in self.stores.values() for v in store.registered_models()]

    def _first(self, read: Callable[[MlflowStore], Any], what: str) -> Any:
        """What the first workspace that knows answers (team workspaces first, the default last)."""
        last: TrackingError | None = None
        for store in [*(s for k, s in self.stores.items() if k != DEFAULT), self.default]:
            try:
                found = read(store)
            except TrackingError as exc:
                last = exc
                continue
            if found is not None:
                return found
        if last is not None and what:
            raise last
        return None

    def model_version(self, decl: InputDecl) -> ModelVersion | None:
        found: ModelVersion | None = self._first(lambda s: s.model_version(decl), "")
        return found

    def lineage(self, ref: str) -> dict[str, Any]:
        found: dict[str, Any] = self._first(lambda s: s.lineage(ref), ref)
        return found

    def experiment_runs(self, experiment: str) -> list[TrackedRun]:
        return self.store_for(experiment).experiment_runs(experiment)

    def metric_history(self, run_id: str, metric: str) -> list[tuple[int, float]]:
        return self.store_of_run(run_id).metric_history(run_id, metric)

    def champion(self, model: str, alias: str, metric: str, mine: Collection[str] = ()) -> Reference | None:
        found: Reference | None = self._first(lambda s: s.champion(model, alias, metric, mine), "")
        return found

    def promotion(self, model_version: str) -> str:
        found: str = self._first(lambda s: s.promotion(model_version) or None, model_version) or ""
        return found

    def log_report_files(self, run_id: str, files: Sequence[Path], artifact_path: str = "expctl-report") -> None:
        self.store_of_run(run_id).log_report_files(run_id, files, artifact_path)


_ANSWERED: dict[str, bool] = {}  # tracking URI → whether it has workspaces, as its server answered


def has_workspaces(tracking_uri: str) -> bool:
    """Whether the tracking server has workspaces (``mlflow server --enable-workspaces``): one request, once per
    process for a server that answered (a command that opens the tracker and the store asks once). A server that
    does not answer is taken as without them (the first real request then says why in one line)."""
    from expctl.tracking.mlflow.rest_search import RestSearch

    if tracking_uri not in _ANSWERED:
        status = RestSearch(tracking_uri).answers("3.0/mlflow/workspaces")
        if status == 0:
            return False
        _ANSWERED[tracking_uri] = status not in (404, 501, 503)
    return _ANSWERED[tracking_uri]
