"""What ``expctl report`` reads from MLflow: an experiment's runs with their metrics, a metric's history, the
champion of a model, and the report's plots logged as artifacts of a sweep's parent run.

A feature on the session (imports no other feature). Reads are bounded: one paginated search per experiment,
one request per history or registry read (and one search of the newest versions when the commit's own version
holds the alias: the report compares with the version it replaced). A champion whose version or run cannot be
read (another team's workspace, deleted, no permission) is a ``Reference`` that says so, never an error.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from expctl.core import safe_json
from expctl.core.errors import TrackingError
from expctl.core.report import Reference, TrackedRun, finite
from expctl.tracking.mlflow import tags as g
from expctl.tracking.mlflow.session import MlflowSession

CHALLENGERS = 200  # the newest versions of a model searched for the one this commit's version replaced


def _tracked(run: Any) -> TrackedRun:
    tags = dict(run.data.tags or {})
    info = run.info
    metrics = {str(k): float(v) for k, v in (run.data.metrics or {}).items() if isinstance(v, int | float)}
    return TrackedRun(
        run_id=str(info.run_id), experiment_id=str(info.experiment_id), run_key=tags.get("expctl.run_key", ""),
        spec_hash=tags.get("expctl.spec_hash", ""), attempt=safe_json.integer(tags.get("expctl.attempt"), 0),
        commit=tags.get("expctl.commit", ""), status=str(info.status or ""),
        start=info.start_time / 1000 if info.start_time else None,
        end=info.end_time / 1000 if info.end_time else None, metrics=metrics,
        gpus=safe_json.integer(tags.get("expctl.gpus"), 0), replicas=safe_json.integer(tags.get("expctl.replicas"), 1),
        parent=tags.get("expctl.parent") == "true", gate=tags.get("expctl.gate", ""),
        gate_reason=tags.get("expctl.gate_reason", ""), model_version=tags.get("expctl.model_version", ""),
        validates_run_id=tags.get("expctl.validates_run_id", ""), parent_run_id=tags.get("mlflow.parentRunId", ""))


def experiment_runs(session: MlflowSession, experiment: str) -> list[TrackedRun]:
    """Every run expctl recorded for this project in the MLflow experiment of ``experiment`` (none when it has
    none yet): another repository's experiment of the same name shares the MLflow experiment, not its runs."""
    with session.calling(f"read experiment {experiment}"):
        found = session.client.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs = session.search_runs([str(found.experiment_id)], "")  # settled runs too (managed = 'settled')
    return [_tracked(r) for r in runs if session.owns(r.data.tags)]


def history(session: MlflowSession, run_id: str, metric: str) -> list[tuple[int, float]]:
    """``(step, value)`` of a metric, finite values only, in step order."""
    with session.calling(f"read the history of {metric} of run {run_id}"):
        points = session.client.get_metric_history(run_id, metric)
    out = [(int(p.step), value) for p in points if (value := finite(p.value)) is not None]
    return sorted(out)


def champion(session: MlflowSession, model: str, alias: str, metric: str,
             mine: Collection[str] = ()) -> Reference | None:
    """The holder of ``model@alias`` and its gate metric; None when the alias has no holder. When the holder's
    run is one of ``mine`` (the commit's own runs: it was just promoted), the version it took the alias from
    (its ``expctl.challenge.v<holder>`` tag says so): the champion the change challenged, not itself."""
    label = f"{model}@{alias}"
    try:
        with session.calling(f"read {label}"):
            version = session.client.get_model_version_by_alias(model, alias)
    except TrackingError as exc:
        text = str(exc)
        if "RESOURCE_DOES_NOT_EXIST" in text or "not found" in text.lower() or "INVALID_PARAMETER" in text:
            return None
        return Reference(label, None, readable=False, why_not="not readable from here (permission or workspace)")
    if version.run_id and str(version.run_id) in set(mine):
        return _replaced(session, label, str(version.version), metric)
    return _value(session, f"{label} (v{version.version})", version, metric)


def _replaced(session: MlflowSession, label: str, holder: str, metric: str) -> Reference:
    """The version that held the alias before this commit's ``holder`` took it (newest versions read first)."""
    key = f"expctl.challenge.v{holder}"
    try:
        with session.calling(f"read the versions of {label}"):
            found = session.client.search_model_versions(
                f"name = {g.quoted(label.rpartition('@')[0])}", max_results=CHALLENGERS,
                order_by=["version_number DESC"])
    except TrackingError:
        return Reference(f"{label} (v{holder})", None, why_not=f"this commit's v{holder} holds it; the versions "
                         "before it are not readable from here")
    for version in found:
        if (version.tags or {}).get(key, "").startswith("lost "):
            return _value(session, f"{label} (v{version.version}, replaced by this commit's v{holder})", version,
                          metric)
    return Reference(f"{label} (v{holder})", None,
                     why_not=f"this commit's v{holder} holds it and replaced no version that held it")


def _value(session: MlflowSession, label: str, version: Any, metric: str) -> Reference:
    """A version's gate metric as recorded when it was registered, else its run's."""
    recorded = (version.tags or {}).get(f"expctl.metric.{metric}")
    if recorded is not None:
        try:
            return Reference(label, finite(float(recorded)))
        except ValueError:
            pass
    if not version.run_id:
        return Reference(label, None)
    try:
        with session.calling(f"read the run of {label}"):
            run = session.client.get_run(version.run_id)
    except TrackingError:
        return Reference(label, None, readable=False, why_not="its run is not readable from here")
    return Reference(label, finite(run.data.metrics.get(metric)))


def promotion(session: MlflowSession, model_version: str) -> str:
    """What promotion did with a registered version (``name/version``): ``name v3: promoted (…)``."""
    name, _, version = model_version.rpartition("/")
    if not name:
        return ""
    try:
        with session.calling(f"read model version {model_version}"):
            found = session.client.get_model_version(name, version)
    except TrackingError:
        return f"{name} v{version} registered"
    tags = found.tags or {}
    outcome, reason = tags.get("expctl.promotion.outcome", ""), tags.get("expctl.promotion", "")
    return f"{name} v{version}: {outcome or 'registered'}" + (f" ({reason})" if reason else "")


def log_files(session: MlflowSession, run_id: str, files: Sequence[Path], artifact_path: str) -> None:
    """Log ``files`` as artifacts of ``run_id`` under ``artifact_path`` (a rerun overwrites them)."""
    for path in files:
        with session.calling(f"log {path.name} to run {run_id}"):
            session.client.log_artifact(run_id, str(path), artifact_path)
