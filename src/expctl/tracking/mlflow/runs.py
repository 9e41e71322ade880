"""Find-or-create the MLflow run of a (run key, spec hash, attempt) before its job starts.

With the apply's ``TrackerView`` (read under the apply lock) a run that exists is known without a request; a
new run costs two: ``create_run`` with every tag (identity, lineage, parent) and one ``log_batch`` of its
params (100 per batch) that also tags ``expctl.ready=true``. A run found without that tag (a crash between the
two) gets its params on the next apply. MLflow has no way to create a run in another status than RUNNING, and
a third request per run to set SCHEDULED would cost half again: a launched run reads RUNNING until its job's
phase is synced. The composed config reaches the job through its environment (``EXPCTL_CONFIG_FILE`` locally,
``EXPCTL_CONFIG`` on Kubernetes), not through an artifact upload per run. A run whose job cannot be launched
(its datasets or params cannot be recorded, or the backend refuses the job) is marked failed (``fail_launch``),
never left RUNNING with no job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from expctl.core.errors import TrackingError, truncate
from expctl.core.inputs import DATASET
from expctl.core.model import FailureClass, RunSpec, TrackingRef
from expctl.tracking.base import TrackerUnavailable, TrackerView
from expctl.tracking.mlflow import tags as g
from expctl.tracking.mlflow import ui
from expctl.tracking.mlflow.datasets import log_datasets, log_produced
from expctl.tracking.mlflow.links import run_route
from expctl.tracking.mlflow.run_index import KnownRun, RunIndex
from expctl.tracking.mlflow.session import MlflowSession


def ensure_run(session: MlflowSession, spec: RunSpec, attempt: int, applied_by: str,
               view: TrackerView | None = None) -> TrackingRef:
    """The run tagged (run key, spec hash, attempt): found in ``view`` (no request), else created with all
    its tags (one request); its params then go in one ``log_batch`` (per 100) that also sets
    ``expctl.ready`` — a run found without it (a crash in between) gets its params now.

    Without a view (no apply lock held) it searches before and after creating, and keeps the oldest run
    if a concurrent expctl created one too."""
    experiment_id = experiment_for(session, spec)
    parent_id = _parent_run(session, experiment_id, spec, view) if spec.overrides else None
    sweep = (g.parent_name(spec), run_route(experiment_id, parent_id)) if parent_id else None
    tags = g.run_tags(spec, attempt, applied_by, session.backend_name, parent_id, repository=session.repository,
                      repo_url=session.repo_url, sweep=sweep, project=session.project)

    def create() -> Any:
        return session.create_run(experiment_id, tags, "create run", run_name=tags["mlflow.runName"])

    if view is None:
        identity = ("expctl.run_key", "expctl.spec_hash", "expctl.attempt")
        found = _find_or_create(session, experiment_id, " and ".join(
            f"tags.`{key}` = {g.quoted(tags[key])}" for key in identity), create)
        run_id, ready = found.info.run_id, found.data.tags.get("expctl.ready") == "true"
    else:
        index: RunIndex = view.index
        key = (spec.run_key, spec.spec_hash, str(attempt))
        with index.lock:
            known = index.runs.get(key)
        if known is None:  # an apply's changes have distinct identities: no two threads create the same run
            run_id, ready = create().info.run_id, False
            with index.lock:
                index.runs[key] = KnownRun(run_id, False)
        else:
            run_id, ready = known.run_id, known.ready
    if not ready:
        try:
            _record(session, run_id, spec)
        except TrackerUnavailable:
            raise  # nothing can be written now; the next apply records it (the run is found, not ready)
        except Exception as exc:
            try:
                fail_launch(session, run_id, truncate(str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
            except Exception as marking:
                exc.add_note(f"its MLflow run {run_id} is left RUNNING: {str(marking).splitlines()[0]}")
            raise
        if view is not None:
            with view.index.lock:
                view.index.runs[(spec.run_key, spec.spec_hash, str(attempt))] = KnownRun(run_id, True)
    return TrackingRef(session.tracking_uri, run_id, spec.experiment)

def fail_launch(session: MlflowSession, run_id: str, reason: str) -> None:
    """A run whose job could not be launched: tagged first (``expctl.launch_failed``, and as an infrastructure
    failure with ``reason``, one ``log_batch``), then FAILED (one ``runs/update``): the next plan sees a failed
    attempt (retried by the retry policy), not a RUNNING run with no job. Each request is sent once; a failure
    is raised to the caller, which reports it next to the launch's own error."""
    session.set_run_tags(run_id, {"expctl.launch_failed": "true", "expctl.failure": FailureClass.INFRASTRUCTURE.value,
                                  "expctl.failure_message": truncate(f"launch failed: {reason}", 1000)})
    with session.calling(f"mark run {run_id} failed"):
        session.client.set_terminated(run_id, status="FAILED")


def experiment_for(session: MlflowSession, spec: RunSpec) -> str:
    """The experiment of a spec's runs: created with MLflow's model-training kind and expctl's saved view
    (no extra request); an existing one gets them when missing or changed, checked once per session against
    the tags already read."""
    experiment_id = session.experiment_id(spec.experiment, extra_tags=ui.experiment_tags(spec))
    tags = session.first_look(spec.experiment)
    if tags is None:
        return experiment_id
    with session.calling(f"experiment {spec.experiment}"):
        ui.ensure_experiment_tags(session.client, experiment_id, tags, spec)
    return experiment_id


def _find_or_create(session: MlflowSession, experiment_id: str, filter_string: str, create: Callable[[], Any]) -> Any:
    """The oldest run of the session's project matching ``filter_string``; create one if none — and if a
    concurrent expctl created one too, keep the oldest and delete ours, so a race converges to exactly one run.
    Another project's run of the same identity (same experiment name, same run key) is not ours."""
    found = [run for run in session.search([experiment_id], filter_string) if session.owns(run.data.tags)]
    if found:
        return found[0]
    mine = create()
    found = [run for run in session.search([experiment_id], filter_string) if session.owns(run.data.tags)]
    keep = min(found, key=lambda r: (r.info.start_time, r.info.run_id)) if found else mine
    if keep.info.run_id != mine.info.run_id:
        with session.calling("delete duplicate run"):
            session.client.delete_run(mine.info.run_id)
    return keep

def _parent_run(session: MlflowSession, experiment_id: str, spec: RunSpec, view: TrackerView | None) -> str:
    """The sweep's parent run for (experiment, commit): from the view, else found or created."""
    tags = g.parent_tags(spec, session.backend_name, repository=session.repository, repo_url=session.repo_url,
                         project=session.project)

    def create() -> Any:
        return session.create_run(experiment_id, tags, "create sweep run", run_name=tags["mlflow.runName"])

    if view is None:
        filter_string = (f"tags.`expctl.parent` = 'true' and tags.`expctl.commit` = {g.quoted(spec.commit)}"
                         f" and tags.`expctl.backend` = {g.quoted(session.backend_name)}")
        return str(_find_or_create(session, experiment_id, filter_string, create).info.run_id)
    index: RunIndex = view.index
    with index.lock:
        key = (spec.experiment, spec.commit)
        if key not in index.parents:
            index.parents[key] = str(create().info.run_id)
        return index.parents[key]

def _record(session: MlflowSession, run_id: str, spec: RunSpec) -> None:
    """Params (batches of 100), the last batch also tagging ``expctl.ready``; idempotent. A run that uses datasets
    first gets their manifests (an artifact and an MLflow dataset input each: two requests per dataset)."""
    from mlflow.entities import Param, RunTag

    if spec.datasets:
        with session.calling(f"record the datasets of run {run_id}"):
            log_datasets(session.client, run_id, spec)
    if any(r.kind == DATASET for r in spec.inputs):
        with session.calling(f"record the produced datasets run {run_id} consumes"):
            log_produced(session.client, run_id, spec)

    params = sorted(g.run_params(spec).items())
    starts = list(range(0, len(params), g.MAX_PER_BATCH)) or [0]
    for start in starts:
        batch = [Param(k, v) for k, v in params[start : start + g.MAX_PER_BATCH]]
        ready = [RunTag("expctl.ready", "true")] if start == starts[-1] else []
        try:
            with session.calling(f"record run {run_id}"):
                session.client.log_batch(run_id, params=batch, tags=ready)
        except TrackerUnavailable:
            raise
        except TrackingError:
            # a concurrent expctl recording the same run may have logged them first (params are immutable)
            with session.calling(f"record run {run_id}"):
                logged = session.client.get_run(run_id).data.params
                if any(logged.get(p.key) != p.value for p in batch):
                    raise
                if ready:
                    session.client.log_batch(run_id, tags=ready)
