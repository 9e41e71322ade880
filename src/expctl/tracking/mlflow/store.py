"""MLflow tracking: the facade, ``MlflowStore``, the one Tracker of expctl (``mlflow`` is imported lazily: it costs
over a second).

One MLflow experiment per expctl experiment; a sweep gets one parent run per (experiment, commit) and one
child run per point. ``view`` is what MLflow remembers: one paginated search of every managed run (and of the
audit records left open by a killed apply), the settled runs read from the ledger. ``ensure_run`` finds a run
by its tags in that view, or creates it with all its tags in one request and logs its params in one more —
never two runs, even across crashes. ``sync`` follows job phases into run status and applies the validation
gate to succeeded runs, registering passing models in the Model Registry. Every MLflow failure becomes a
one-line ``TrackingError`` (``TrackerUnavailable`` when the server cannot be reached at all).

The adapter is three layers, and only this module sees all of them: the plumbing (``session.MlflowSession``:
client, failures, experiments, searches, the ledger's bookkeeping), the features written on it (``runs``,
``audit``, ``ledger``, ``sync``, ``promote``, ``ui``, ``lineage``, ``inputs``, ``outputs``, and the capabilities
``logs.KeptLogs`` and ``checkpoints.Checkpoints``), and this facade, which composes them into the ``Tracker``
methods. No feature imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from expctl.core.audit import AuditRecord
from expctl.core.gate import GateResult
from expctl.core.inputs import InputDecl, ModelVersion
from expctl.core.model import ObservedRun, RunSpec, TrackingRef, ValidationGate
from expctl.core.report import Reference, TrackedRun
from expctl.tracking.base import TrackerView
from expctl.tracking.mlflow import audit, inputs, ledger, outputs, promote, results, runs, session, ui
from expctl.tracking.mlflow import lineage as lineages
from expctl.tracking.mlflow import sync as syncing
from expctl.tracking.mlflow import tags as g
from expctl.tracking.mlflow.checkpoints import Checkpoints
from expctl.tracking.mlflow.logs import KeptLogs
from expctl.tracking.mlflow.run_index import RunIndex
from expctl.tracking.mlflow.session import MlflowSession

__all__ = ["MlflowStore"]


class MlflowStore(KeptLogs, Checkpoints, MlflowSession):
    """The Tracker of expctl on one MLflow tracking URI, for the runs of one backend (the facade: every method
    hands its work to a feature module, on this store's session)."""

    def __init__(self, tracking_uri: str, backend_name: str, artifact_root: str | Path | None = None,
                 repository: str | None = None, repo_url: str | None = None, embedded: bool = False,
                 project: str | None = None, workspace: str | None = None) -> None:
        super().__init__(tracking_uri, backend_name, artifact_root=artifact_root, repository=repository,
                         repo_url=repo_url, embedded=embedded, project=project, workspace=workspace)
        self.last_ledger: ledger.Ledger | None = None  # the settled runs, as the last view read them

    # -- what MLflow remembers -------------------------------------------------------------------------

    def view(self) -> TrackerView:
        """Every managed run of this project — the open ones searched, then the settled ones from the ledger —
        and every open audit record of this backend and project: ⌈open runs/1000⌉ + 1 requests (+ 1 to read the
        ledger again after several pages). Another project's runs on the same server (an experiment of the same
        name in another repository) are not in it (``core.project``)."""
        for again in (True, False):  # once more when a settle may have moved the pages (``ledger``)
            searched, ids = self.managed_runs()
            read = ledger.read(self, searched, ids, paged=len(searched) >= session.PAGE or len(ids) > 100)
            if not (again and read.reread):
                break
        self.last_ledger = read
        found = [r for r in (*(r for r in searched if ledger.MARK not in r.data.tags), *read.runs)
                 if self.owns(r.data.tags)]
        self.remember_view(found, {run.info.run_id for run in read.runs})
        index = RunIndex.of(found)
        records = (g.observed_from_run(run.info, run.data.tags, self.backend_name, run.data.metrics)
                   for run in index.raw)
        return TrackerView([r for r in records if r is not None], audit.open_records(self, index.raw), index)

    def records(self) -> list[ObservedRun]:
        return self.view().records

    # -- find-or-create (``runs``) ---------------------------------------------------------------------

    def ensure_run(self, spec: RunSpec, attempt: int, applied_by: str,
                   view: TrackerView | None = None) -> TrackingRef:
        """The run of (run key, spec hash, attempt), found in ``view`` or created: see ``runs``."""
        return runs.ensure_run(self, spec, attempt, applied_by, view)

    # -- sync (``sync``), settling (``ledger``) and the validation gate (``promote``) ------------------------

    def sync(self, observed: Sequence[ObservedRun], desired: Sequence[RunSpec],
             view: TrackerView | None = None) -> None:
        syncing.sync(self, observed, desired, view if view is not None else self.view())

    def settle(self, observed: Sequence[ObservedRun], desired: Sequence[RunSpec], view: TrackerView,
               stop: Callable[[], bool] = lambda: False) -> int:
        """Take the view's runs that nothing will change any more out of the search, into the ledger
        (``ledger``); how many. Called by applies only, after their writes."""
        if self.last_ledger is None:
            return 0
        found = ledger.candidates(view.index.raw, observed, desired, self.touched, self.from_ledger,
                                  self.owns if self.project is not None else None)
        return ledger.settle(self, self.last_ledger, found, stop)

    def apply_gate(self, run_id: str, gate: ValidationGate,
                   metrics: Mapping[str, float] | None = None) -> GateResult:
        """Evaluate the gate on the run's latest metrics (or on ``metrics``: the platform's validation job's);
        register a passing model; record the verdict (``promote``)."""
        return promote.apply_gate(self, run_id, gate, metrics)

    def mark_killed(self, run_id: str, by: str = "") -> None:
        """A cancelled job's run: status KILLED now, tagged so that it reads as cancelled, not failed."""
        with self.calling(f"kill run {run_id}"):
            run = self.client.get_run(run_id)
            if run.info.status not in g.TERMINAL_STATUSES:
                self.client.set_terminated(run_id, status="KILLED")
        self.set_run_tags(run_id, {"expctl.cancelled": "true", **({"expctl.cancelled_by": by} if by else {})})

    def fail_launch(self, run_id: str, reason: str) -> None:
        runs.fail_launch(self, run_id, reason)

    # -- the audit trail (``audit``): one record per apply in the experiment ``expctl-audit`` ----------------

    def begin_audit(self, record: AuditRecord) -> AuditRecord:
        return audit.begin(self, record)

    def complete_audit(self, record: AuditRecord) -> None:
        audit.complete(self, record)

    def record_audit(self, entry: dict[str, Any]) -> None:
        audit.record_entry(self, entry)

    def audit_entries(self, experiment: str | None = None, limit: int = 50,
                      team: str | None = None) -> list[dict[str, Any]]:
        return audit.entries(self, experiment, limit, team)

    # -- reads for the operator: the UI's addresses, the Model Registry, lineage ---------------------------

    def ui_experiments(self, names: Sequence[str] = ()) -> dict[str, tuple[str, bool]]:
        """``{name: (id, has expctl's saved view)}`` of expctl's experiments (all, or ``names``), each marked
        as model training."""
        with self.calling("search experiments"):
            return ui.managed_experiments(self.client, names)

    def experiment_of_run(self, run_id: str) -> str:
        found = self.read_local(lambda local: local.experiment_of_run(run_id))
        if found is not None:
            return found
        with self.calling(f"read run {run_id}"):
            return ui.experiment_of_run(self.client, run_id)

    def registered_models(self) -> list[dict[str, Any]]:
        """Every version expctl registered, with its aliases and its run's metrics (``make demo`` lists them)."""
        return promote.registered_versions(self, session.PAGE)

    def model_version(self, decl: InputDecl) -> ModelVersion | None:
        return inputs.model_version(self, decl)

    def record_output(self, run_id: str, dataset: str, directory: str | None, manifest: str, digest: str) -> None:
        outputs.record_output(self, run_id, dataset, directory, manifest, digest)

    def fetch_output(self, run_id: str, dataset: str, into: str) -> str:
        return outputs.fetch_output(self, run_id, dataset, into)

    def lineage(self, ref: str) -> dict[str, Any]:
        """Everything the registered version ``ref`` (``MODEL@ALIAS`` or ``MODEL/VERSION``) came from
        (``lineage``)."""
        return lineages.lineage(self, ref)

    # -- reads for ``expctl report`` (``results``) ---------------------------------------------------------

    def experiment_runs(self, experiment: str) -> list[TrackedRun]:
        return results.experiment_runs(self, experiment)

    def metric_history(self, run_id: str, metric: str) -> list[tuple[int, float]]:
        return results.history(self, run_id, metric)

    def champion(self, model: str, alias: str, metric: str, mine: Collection[str] = ()) -> Reference | None:
        return results.champion(self, model, alias, metric, mine)

    def promotion(self, model_version: str) -> str:
        return results.promotion(self, model_version)

    def log_report_files(self, run_id: str, files: Sequence[Path], artifact_path: str = "expctl-report") -> None:
        results.log_files(self, run_id, files, artifact_path)
