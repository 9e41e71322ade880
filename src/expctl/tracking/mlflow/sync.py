"""Sync: MLflow runs follow their jobs' phases, and succeeded runs meet their validation gate.

Reads only the apply's view (no search of its own): a run's status follows its job's phase (never back from
finished), failures and cancellations are tagged, a succeeded run is judged by its gate (registering passing
models), and a sweep's parent run follows the latest attempts of its points. Every run written is remembered by
the session (``MlflowSession.touch``: a run written by this apply settles at the next one, ``ledger``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from expctl.core import safe_json
from expctl.core.errors import truncate
from expctl.core.model import ObservedRun, Phase, RunSpec, ValidationGate
from expctl.tracking.base import TrackerView
from expctl.tracking.mlflow import tags as g
from expctl.tracking.mlflow import ui
from expctl.tracking.mlflow.promote import apply_gate, apply_validated_gate
from expctl.tracking.mlflow.session import MlflowSession


def sync(session: MlflowSession, observed: Sequence[ObservedRun], desired: Sequence[RunSpec],
         view: TrackerView) -> None:
    _close_duplicates(session, view)
    live = [o for o in observed if o.live and o.mlflow_run_id]
    if not live:
        return
    current = {run.info.run_id: run for run in view.index.raw if "expctl.audit.state" not in run.data.tags}
    statuses = {run_id: run.info.status for run_id, run in current.items()}
    specs = {(s.run_key, s.spec_hash): s for s in desired}
    pairs = [(obs, current[obs.mlflow_run_id]) for obs in live if obs.mlflow_run_id in current]
    # statuses and tags: one run's writes at a time, a few runs at once (a sweep finishing: thousands)
    with ThreadPoolExecutor(max_workers=session.writers) as pool:
        for run_id, status in pool.map(lambda pair: (pair[1].info.run_id, _sync_status(session, pair[1], pair[0])),
                                       pairs):
            statuses[run_id] = status
    points_of: dict[str, set[tuple[str, str]]] = {}  # each experiment's current points: its alias goes to the best
    for s in desired:
        if not s.validates:
            points_of.setdefault(s.experiment, set()).add((s.run_key, s.spec_hash))
    for obs, run in pairs:  # gates one after another: promotions compare with the version holding an alias
        spec = specs.get((obs.run_key, obs.spec_hash))
        gate = spec.job.validation if spec is not None else None
        if obs.phase is Phase.SUCCEEDED and gate is not None and "expctl.gate" not in run.data.tags:
            assert spec is not None
            points = points_of.get(spec.experiment, set())
            if spec.validates:  # the platform's validation job decides the training run's gate
                apply_validated_gate(session, run, gate, points)
            elif not gate.by_platform:
                apply_gate(session, run.info.run_id, gate, points=points)
    gates = {s.experiment: s.job.validation for s in desired if s.job.validation is not None}
    _sync_parents(session, current, statuses, gates)


def _close_duplicates(session: MlflowSession, view: TrackerView) -> None:
    """Runs that duplicate another of the same identity (``RunIndex``: a create whose answer was lost, sent again
    by an older expctl or by MLflow's retries) never get a job: killed, tagged with the run that won, deleted."""
    for run_id, winner in sorted(getattr(view.index, "duplicates", {}).items()):
        with session.calling(f"close duplicate run {run_id}"):
            session.client.set_terminated(run_id, status="KILLED")
            session.client.set_tag(run_id, "expctl.duplicate_of", winner)
            session.client.delete_run(run_id)


def _sync_status(session: MlflowSession, run: Any, obs: ObservedRun) -> str:
    """Set the run's status from the job's phase when it changed (never back from finished)."""
    run_id, status = run.info.run_id, run.info.status
    target = g.STATUS_OF_PHASE.get(obs.phase)
    tags: dict[str, str] = {}
    if obs.phase is Phase.FAILED and "expctl.failure" not in run.data.tags:
        tags["expctl.failure"] = obs.failure.value if obs.failure else ""
        tags["expctl.failure_message"] = truncate(obs.message, 1000)
    if obs.cancelled and run.data.tags.get("expctl.cancelled") != "true":
        tags["expctl.cancelled"] = "true"
    if (target == "RUNNING" and status == "SCHEDULED") or (target in g.TERMINAL_STATUSES and status != target):
        session.set_run_tags(run_id, {})  # a settled run back into the search first (no request if it is open)
    with session.calling(f"sync run {run_id}"):
        if target == "RUNNING" and status == "SCHEDULED":  # runs made by an older expctl
            session.touch(run_id)
            session.client.update_run(run_id, status=target)
            status = target
        elif target in g.TERMINAL_STATUSES and status != target:
            session.touch(run_id)
            end = int((obs.finished_at or time.time()) * 1000)
            session.client.set_terminated(run_id, status=target, end_time=end)
            status = target
    if tags:
        session.set_run_tags(run_id, tags)
    return str(status)


def _sync_parents(session: MlflowSession, current: dict[str, Any], statuses: dict[str, str],
                  gates: dict[str, ValidationGate]) -> None:
    """A sweep's parent run follows the latest attempts of its points: RUNNING until all finished; its
    counts per state and best gate value are written on it (metric, tags, description) when changed."""
    latest: dict[str, dict[str, tuple[int, str, str]]] = {}
    for run_id, run in current.items():
        parent, key = run.data.tags.get("mlflow.parentRunId"), run.data.tags.get("expctl.run_key")
        if parent in current and key:
            attempt = safe_json.integer(run.data.tags.get("expctl.attempt"), 1)
            points = latest.setdefault(parent, {})
            if attempt >= points.get(key, (0, "", ""))[0]:
                points[key] = (attempt, statuses[run_id], run_id)
    for parent_id, points in latest.items():
        with session.calling(f"summarise sweep run {parent_id}"):
            if ui.summarise_sweep(session.client, current[parent_id], [current[run_id] for _, _, run_id in
                                  points.values()], statuses, gates, session.reopening(parent_id)):
                session.reopened(parent_id)
        target = g.parent_status([status for _, status, _ in points.values()])
        if statuses[parent_id] == target:
            continue
        session.set_run_tags(parent_id, {})  # a settled parent back into the search first (no request if open)
        with session.calling(f"sync sweep run {parent_id}"):
            if target in g.TERMINAL_STATUSES:
                session.client.set_terminated(parent_id, status=target)
            else:
                session.client.update_run(parent_id, status=target)
