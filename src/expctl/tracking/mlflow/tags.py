"""The pure translations between expctl's values and MLflow's: params, tags, statuses (the codec of a run).

Pure: no MLflow import, no I/O. ``flatten_params`` / ``run_params`` turn a resolved config and a sweep point's
overrides into MLflow params; ``run_tags`` (with ``provenance``'s source tags and description), ``parent_tags``
and ``observed_from_run`` write and read a run's identity; ``checkpoint_in``, ``resume_tags`` and
``resumed_from`` write and read its checkpoint tags; the status maps translate between backend phases and
MLflow run statuses; ``quoted`` writes a search filter's literal. The gate's decision is policy: it lives in
``core/gate``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from expctl.core import safe_json
from expctl.core.inputs import DATASET, MODEL
from expctl.core.model import Checkpoint, FailureClass, ObservedRun, Phase, ResumeFrom, RunSpec
from expctl.core.naming import slug
from expctl.core.project import TAG as PROJECT
from expctl.tracking.mlflow import provenance

# MLflow's limits (mlflow.utils.validation): parameter values, keys and entries per log_batch call.
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_KEY = 250
MAX_PER_BATCH = 100

STATUS_OF_PHASE = {
    Phase.RUNNING: "RUNNING",
    Phase.SUCCEEDED: "FINISHED",
    Phase.FAILED: "FAILED",
    Phase.CANCELLED: "KILLED",
}
PHASE_OF_STATUS = {
    "SCHEDULED": Phase.PENDING,
    "RUNNING": Phase.RUNNING,
    "FINISHED": Phase.SUCCEEDED,
    "FAILED": Phase.FAILED,
    "KILLED": Phase.CANCELLED,
}
TERMINAL_STATUSES = frozenset({"FINISHED", "FAILED", "KILLED"})

# The experiment of the audit trail (and the ledger runs), an audit record's state, a run's kept logs.
AUDIT_EXPERIMENT = "expctl-audit"
AUDIT_STATE = "expctl.audit.state"
LOGS = "expctl.logs"

# A run's checkpoint (a convention of the training code, docs/tracking.md) and what a resumed attempt started from.
CHECKPOINT = "expctl.checkpoint"
CHECKPOINT_EPOCH = "expctl.checkpoint_epoch"
RESUMED_FROM = "expctl.resumed_from"  # prefix: .uri .attempt .run_id .epoch


def quoted(value: str) -> str:
    """``value`` as a string literal of an MLflow search filter (quotes dropped: they cannot be escaped)."""
    return "'" + value.replace("'", "") + "'"


def parent_status(points: list[str]) -> str:
    """A sweep parent's status from its points' (latest attempts') statuses."""
    if not points or any(status not in TERMINAL_STATUSES for status in points):
        return "RUNNING"
    if "FAILED" in points:
        return "FAILED"
    return "FINISHED" if "FINISHED" in points else "KILLED"


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` → ``{"a.b": "1"}``; lists become JSON; values truncated to MLflow's limit."""
    params: dict[str, str] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            params.update(flatten_params(value, f"{path}."))
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        params[path[:MAX_KEY]] = text[:MAX_PARAM_VALUE]
    return params


def run_params(spec: RunSpec) -> dict[str, str]:
    """A run's params: its resolved config, flattened, and its sweep overrides (``override.<key>``)."""
    return {**flatten_params(spec.config), **provenance.override_params(spec)}


def run_tags(
    spec: RunSpec, attempt: int, applied_by: str, backend: str, parent_id: str | None, *,
    repository: str | None = None, repo_url: str | None = None, sweep: tuple[str, str] | None = None,
    project: str | None = None,
) -> dict[str, str]:
    """The tags that identify a run (what ``ensure_run`` searches by) and link it to its commit and job;
    MLflow's source tags and a one-line description (linking the sweep's parent run ``sweep``: name, route)
    for the UI."""
    name = spec.name_for(attempt)
    tags = {
        "expctl.managed": "true",
        "expctl.run_key": spec.run_key,
        "expctl.spec_hash": spec.spec_hash,
        "expctl.attempt": str(attempt),
        "expctl.experiment": spec.experiment,
        "expctl.overrides": json.dumps(list(spec.overrides)),
        "expctl.backend": backend,
        "expctl.job": name,
        "expctl.kind": spec.job.kind.value,
        "expctl.replicas": str(spec.job.replicas),
        "expctl.gpus": str(spec.job.resources.gpus),
        "expctl.commit": spec.commit,
        "expctl.source_file": spec.source_file,
        "expctl.author": applied_by,
        "mlflow.user": applied_by,
        "mlflow.runName": name,
        **provenance.source_tags(spec, repository, repo_url),
        provenance.NOTE_TAG: provenance.launch_note(spec, attempt, backend, sweep if parent_id else None),
    }
    if spec.job.team:
        tags["expctl.team"] = spec.job.team
    if project is not None:  # whose run it is (``core.project``)
        tags[PROJECT] = project
    if parent_id:
        tags["mlflow.parentRunId"] = parent_id
    if spec.validates:  # a validation job: which training run's model it evaluates
        tags["expctl.validates"] = spec.validates
        tags["expctl.validates_run_id"] = spec.target_run_id
    tags.update(input_tags(spec))  # what it consumed (the plan says "upstream-changed" when it moves)
    if spec.data_digest:  # which data it trains on (the plan says "data-changed" when this moves)
        tags["expctl.data_digest"] = spec.data_digest
        tags["expctl.datasets"] = json.dumps({d.name: d.digest for d in spec.datasets}, sort_keys=True)
    return {key: value[:MAX_TAG_VALUE] for key, value in tags.items()}


def parent_name(spec: RunSpec) -> str:
    """A sweep's parent run's name: one per (experiment, commit)."""
    return f"{slug(spec.experiment)}-sweep-{spec.commit[:8]}"


def parent_tags(spec: RunSpec, backend: str, *, repository: str | None = None,
                repo_url: str | None = None, project: str | None = None) -> dict[str, str]:
    """The tags of a sweep's parent run (what finds it: ``expctl.parent``, commit, backend, project) and its
    source."""
    return {
        **({PROJECT: project} if project is not None else {}),
        "expctl.parent": "true",
        "expctl.managed": "true",
        "expctl.backend": backend,
        "expctl.experiment": spec.experiment,
        "expctl.commit": spec.commit,
        "expctl.source_file": spec.source_file,
        "mlflow.runName": parent_name(spec),
        **provenance.source_tags(spec, repository, repo_url),
        provenance.NOTE_TAG: provenance.sweep_note(spec.experiment, spec.commit, spec.source_file),
    }


def observed_from_run(info: Any, tags: Mapping[str, str], backend: str,
                      metrics: Mapping[str, float] | None = None) -> ObservedRun | None:
    """What an MLflow run (its ``info``, tags and latest metrics but ``system/*`` and NaNs) says about a job; None for
    runs expctl did not tag."""
    try:
        attempt = int(tags["expctl.attempt"])
        key, spec_hash, name = tags["expctl.run_key"], tags["expctl.spec_hash"], tags["expctl.job"]
    except (KeyError, ValueError):
        return None
    failure = tags.get("expctl.failure")
    return ObservedRun(
        run_key=key, name=name, experiment=tags.get("expctl.experiment", ""), attempt=attempt,
        spec_hash=spec_hash, phase=PHASE_OF_STATUS.get(info.status, Phase.PENDING),
        backend=tags.get("expctl.backend", backend), kind=tags.get("expctl.kind", ""),
        failure=FailureClass(failure) if failure in set(FailureClass) else None,
        message=tags.get("expctl.failure_message", ""),
        created_at=info.start_time / 1000 if info.start_time else None,
        finished_at=info.end_time / 1000 if info.end_time else None,
        cancelled=tags.get("expctl.cancelled") == "true", mlflow_run_id=info.run_id,
        overrides=safe_json.string_list(tags.get("expctl.overrides")), commit=tags.get("expctl.commit"),
        replicas=safe_json.integer(tags.get("expctl.replicas"), 1), gpus=safe_json.integer(tags.get("expctl.gpus"), 0),
        user=tags.get("expctl.author") or None, live=False, resumed_from=resumed_from(tags),
        data_digest=tags.get("expctl.data_digest"), inputs=inputs_of(tags), output_digest=tags.get(OUTPUT_DIGEST),
        metrics=tuple(sorted((k, float(v)) for k, v in (metrics or {}).items()
                             if not k.startswith("system/") and float(v) == float(v))),  # a NaN measures nothing
    )


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def checkpoint_in(tags: Mapping[str, str]) -> Checkpoint | None:
    """The latest checkpoint a run's tags name: its own, else the one it resumed from."""
    if tags.get(CHECKPOINT):
        return Checkpoint(tags[CHECKPOINT], _int(tags.get(CHECKPOINT_EPOCH)))
    if tags.get(f"{RESUMED_FROM}.uri"):
        return Checkpoint(tags[f"{RESUMED_FROM}.uri"], _int(tags.get(f"{RESUMED_FROM}.epoch")))
    return None


def resume_tags(resume: ResumeFrom) -> dict[str, str]:
    """The tags of an attempt's run that say what it resumed from."""
    tags = {f"{RESUMED_FROM}.uri": resume.uri, f"{RESUMED_FROM}.attempt": str(resume.attempt),
            f"{RESUMED_FROM}.run_id": resume.run_id}
    if resume.epoch is not None:
        tags[f"{RESUMED_FROM}.epoch"] = str(resume.epoch)
    return tags


def resumed_from(tags: Mapping[str, str]) -> ResumeFrom | None:
    """What a run's tags say it resumed from."""
    uri, attempt = tags.get(f"{RESUMED_FROM}.uri"), _int(tags.get(f"{RESUMED_FROM}.attempt"))
    if not uri or attempt is None:
        return None
    return ResumeFrom(uri, attempt, tags.get(f"{RESUMED_FROM}.run_id", ""), _int(tags.get(f"{RESUMED_FROM}.epoch")))


OUTPUT_DATASET = "expctl.output.dataset"  # a producer run: the dataset its outputs were recorded as
OUTPUT_DIGEST = "expctl.output.digest"  # ... and its manifest's digest (written last: the record is complete)
INPUTS_TAG = "expctl.inputs"  # {input name: label} of the inputs it was launched with
INPUT_PREFIX = "expctl.input."


def input_tags(spec: RunSpec) -> dict[str, str]:
    """The tags of a run that say what it consumed: per input its URI, source, version, run and spec hash."""
    if not spec.inputs:
        return {}
    tags = {INPUTS_TAG: json.dumps({r.name: r.label for r in spec.inputs}, sort_keys=True)}
    for r in spec.inputs:
        at = f"{INPUT_PREFIX}{r.name}."
        tags.update({at + "uri": r.uri, at + r.kind: r.source, at + "run_id": r.run_id, at + "spec_hash": r.spec_hash})
        if r.kind == MODEL:
            tags[at + "version"] = r.version
        if r.kind == DATASET:
            tags.update({at + "digest": r.digest, at + "producer": r.producer})
    return tags


def inputs_of(tags: Mapping[str, str]) -> tuple[tuple[str, str], ...] | None:
    """(input name, label) a run's tags record (None: the run records none: it was launched without inputs)."""
    text = tags.get(INPUTS_TAG)
    if not text:
        return None
    return tuple(sorted(safe_json.string_map(text).items()))
