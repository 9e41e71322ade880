"""What the operator commands do: list, cancel, describe runs, read the audit trail, serve the MLflow UI.

These work from the repository's settings at HEAD (backend, namespaces, tracking URI) and do not need the
experiments to be valid, except ``describe``, which shows the composed config.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from expctl.backends.base import Backend
from expctl.config import source, spec_cache
from expctl.config.desired_state import load_settings
from expctl.config.schema import Settings
from expctl.config.schema_teams import team_of_experiment
from expctl.core.diff import join_observed
from expctl.core.errors import ExpctlError, TrackingError
from expctl.core.model import JSON, ObservedRun, Phase, Reason, ResumeFrom
from expctl.core.sanitize import shown_uri
from expctl.engine import cancel_journal
from expctl.engine.identity import operator
from expctl.engine.pipeline_view import declares_inputs, dependents_of, describe_inputs, held_runs
from expctl.engine.workspace import Workspace
from expctl.tracking.base import Tracker


def settings_at_head(ws: Workspace) -> Settings:
    snap = source.snapshot(ws.repo, "HEAD")
    return load_settings(source.read_files(snap, ["expctl.yaml"]))


def open_for_operations(ws: Workspace, backend_name: str | None,
                        tracker: bool = True) -> tuple[Backend, Tracker | None, Settings]:
    settings = settings_at_head(ws)
    name = ws.backend_name(settings, backend_name)
    backend = ws.open_backend(name, settings)
    return backend, (ws.open_tracker(settings, name) if tracker else None), settings


def observe_all(ws: Workspace, backend_name: str | None, include_gone: bool = False,
                team: str | None = None) -> list[ObservedRun]:
    """Every run the backend sees (and, with ``include_gone``, those only MLflow remembers); of one team's
    experiments with ``team`` (the team owning each experiment's file at HEAD)."""
    backend, tracker, settings = open_for_operations(ws, backend_name, tracker=include_gone)
    in_team(settings, team, "")  # an undeclared team is an error, with no run to filter too
    live = [r for r in backend.observe() if in_team(settings, team, r.experiment)]
    if not include_gone or tracker is None:
        return sorted(live, key=lambda r: (r.experiment, r.name))
    gone = [r for r in tracker.records() if in_team(settings, team, r.experiment)]
    return sorted(join_observed(live, gone), key=lambda r: (r.experiment, r.name))


def team_owner(ws: Workspace) -> Callable[[str], str | None]:
    """``owner(experiment)``: the team owning an experiment at HEAD (None: no team)."""
    teams = settings_at_head(ws).teams
    return lambda experiment: team_of_experiment(teams, experiment)


def in_team(settings: Settings, team: str | None, experiment: str) -> bool:
    """Whether ``experiment`` is ``team``'s (any experiment when ``team`` is None); an undeclared team is an
    error naming the declared ones."""
    if team is None:
        return True
    if team not in (t.name for t in settings.teams):
        declared = ", ".join(t.name for t in settings.teams) or "none"
        raise ExpctlError(f"--team {team}: no such team in expctl.yaml (teams: {declared})")
    return team_of_experiment(settings.teams, experiment) == team


def held_rows(ws: Workspace, backend_name: str | None, team: str | None = None) -> list[dict[str, Any]]:
    """``status`` rows of the runs a pipeline holds (no object yet): state ``Waiting`` with what it waits for,
    or ``Blocked`` naming the failed upstream (``pipeline_view.held_runs``; none without pipelines)."""
    if not declares_inputs(ws):
        return []
    backend, tracker, settings = open_for_operations(ws, backend_name)
    rows = []
    for c in held_runs(ws, backend, tracker):
        if (c.observed is not None and c.observed.live) or not in_team(settings, team, c.experiment):
            continue  # a submitted run shows as its object does
        rows.append({"run": c.name, "experiment": c.experiment, "run_key": c.run_key, "kind": "-", "replicas": 0,
                     "gpus": 0, "state": "Waiting" if c.reason is Reason.WAITING else "Blocked",
                     "attempt": c.attempt, "age": "-", "user": "-", "applied_by": None, "mlflow_run": "-",
                     "live": False, "reason": c.detail, "spec_hash": c.spec_hash, "namespace": None,
                     "created": None, "finished": None})
    return rows


@dataclass(frozen=True)
class CancelResult:
    """What ``cancel`` did: the runs it stopped, and the named runs it left alone (with why)."""

    cancelled: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unrecorded: list[tuple[str, str]] = field(default_factory=list)  # cancelled, not yet in MLflow (with why)
    warnings: list[str] = field(default_factory=list)


def cancel_targets(ws: Workspace, backend_name: str | None, names: Sequence[str], experiment: str | None,
                   team: str | None = None,
                   also: Sequence[str] = ()) -> tuple[Backend, Tracker, list[ObservedRun], CancelResult]:
    """Which runs a cancel would stop: the named ones and every unfinished run of ``experiment`` (of
    ``team``'s experiments, of the experiments ``also`` names)."""
    backend, tracker, settings = open_for_operations(ws, backend_name)
    assert tracker is not None
    live = {r.name: r for r in backend.observe()}
    unknown = [n for n in names if n not in live]
    if unknown:
        raise ExpctlError(f"no run named {', '.join(unknown)} (see `expctl status`)")
    skipped: list[tuple[str, str]] = []
    targets: list[ObservedRun] = []
    for name in dict.fromkeys(names):
        run = live[name]
        if run.cancelled or run.phase is Phase.CANCELLED:
            skipped.append((name, "already cancelled"))
        elif run.phase.finished:
            skipped.append((name, f"already {run.phase.value.lower()}: nothing to stop"))
        else:
            targets.append(run)
    if experiment:
        matching = [r for r in live.values() if r.experiment == experiment]
        if not matching:
            raise ExpctlError(f"--experiment {experiment}: no runs of this experiment (see `expctl status`)")
        chosen = {r.name for r in targets}
        targets += [r for r in sorted(matching, key=lambda r: r.name)
                    if not r.phase.finished and not r.cancelled and r.name not in chosen]
    for downstream in also:  # --cascade: the experiments that consume it, down the chain
        chosen = {r.name for r in targets}
        targets += [r for r in sorted(live.values(), key=lambda r: r.name) if r.experiment == downstream
                    and not r.phase.finished and not r.cancelled and r.name not in chosen]
    if team:
        in_team(settings, team, "")  # an undeclared team is an error, with no run to cancel too
        chosen = {r.name for r in targets}
        targets += [r for r in sorted(live.values(), key=lambda r: r.name) if in_team(settings, team, r.experiment)
                    and not r.phase.finished and not r.cancelled and r.name not in chosen]
    return backend, tracker, targets, CancelResult(skipped=skipped)


def unfinished_dependents(ws: Workspace, backend_name: str | None, experiment: str) -> dict[str, int]:
    """``{experiment downstream of experiment: its unfinished runs}`` — what cancelling ``experiment`` leaves
    without its upstream (``cancel`` asks, or takes ``--cascade``); empty without pipelines."""
    if not declares_inputs(ws):
        return {}
    from expctl.config.desired_state import load_desired

    downstream = dependents_of(load_desired(source.snapshot(ws.repo, "HEAD")), [experiment])
    backend, _, _ = open_for_operations(ws, backend_name, tracker=False)
    live = [r for r in backend.observe() if not r.phase.finished and not r.cancelled]
    found = {name: sum(1 for r in live if r.experiment == name) for name in downstream}
    return {name: n for name, n in found.items() if n}


def cancel_runs(ws: Workspace, backend_name: str | None, names: Sequence[str], experiment: str | None,
                progress: Callable[[ObservedRun], None] | None = None, team: str | None = None,
                also: Sequence[str] = ()) -> CancelResult:
    """Cancel the named runs (or every unfinished run of an experiment): durable, tracked and audited.

    Each run is stopped by its backend (which remembers the cancel on the run's object, so that apply does
    not relaunch it until its spec changes), its MLflow run is marked KILLED, and the cancel is appended to
    the audit trail. MLflow failing does not stop the others: the cancel stays in ``cancel_journal`` until
    the next cancel or apply records it (``unrecorded`` says which).
    """
    backend, tracker, targets, result = cancel_targets(ws, backend_name, names, experiment, team, also)
    teams = settings_at_head(ws).teams
    who = operator()
    result.warnings.extend(cancel_journal.replay(ws.state_dir, tracker))
    for run in targets:
        # journalled first: a cancel whose MLflow writes fail (the job is stopped all the same) is recorded by
        # the next cancel or apply, exactly once
        entry = cancel_journal.write(ws.state_dir, _entry("cancel", run, who, commit=run.commit or "",
                                                          fingerprint="",
                                                          team=team_of_experiment(teams, run.experiment)),
                                     run.mlflow_run_id, who)
        backend.cancel(run.name, by=who)
        result.cancelled.append(run.name)
        try:
            cancel_journal.record(tracker, entry)
        except TrackingError as exc:
            result.unrecorded.append((run.name, str(exc)))
        if progress is not None:
            progress(run)
    return result


def describe_run(ws: Workspace, backend_name: str | None, name: str) -> dict[str, Any]:
    """One run: identity, commit, hashes, every attempt (across spec changes), phase history, config."""
    backend, tracker, settings = open_for_operations(ws, backend_name)
    assert tracker is not None
    live = backend.observe()
    remembered = tracker.records()
    match = next((r for r in [*live, *remembered] if r.name == name), None)
    if match is None:
        raise ExpctlError(f"no run named {name} (see `expctl status --all`)")
    attempts = _attempts(match.run_key, live, remembered)
    resumed = {r.mlflow_run_id: r.resumed_from for r in remembered if r.resumed_from and r.mlflow_run_id}
    current = attempts[-1]
    wanted = _wanted(ws, match)
    return {
        "run": current.name,
        "experiment": current.experiment,
        "run_key": current.run_key,
        "state": current.state,
        "overrides": list(current.overrides),
        "kind": current.kind,
        "replicas": current.replicas,
        "gpus": current.gpus,
        "backend": current.backend,
        "namespace": current.namespace,
        "commit": current.commit,
        "spec_hash": current.spec_hash,
        "desired_spec_hash": wanted[0] if wanted else None,
        "in_sync": bool(wanted and wanted[0] == current.spec_hash),
        "applied_by": current.user,
        "mlflow_run": current.mlflow_run_id,
        "tracking_uri": shown_uri(ws.resolve_tracking_uri(settings)),  # a database URI may hold a password
        **(run_links(ws, settings, current.mlflow_run_id) if current.mlflow_run_id else {}),
        "attempts": [
            {"name": r.name, "attempt": r.attempt, "spec_hash": r.spec_hash, "state": r.state,
             "failure": r.failure.value if r.failure else None, "message": r.message,
             "created": _when(r.created_at), "finished": _when(r.finished_at), "mlflow_run": r.mlflow_run_id,
             "object": "live" if r.live else "gone (remembered by MLflow)", "applied_by": r.user,
             "resumed_from": _resumed(resumed.get(r.mlflow_run_id or "") or r.resumed_from)}
            for r in attempts
        ],
        "phases": _phase_history(attempts),
        "config": dict(wanted[1]) if wanted else None,
        **describe_inputs(ws, current.experiment, current.run_key, backend.name, tracker,
                          join_observed(live, remembered)),
    }


def _wanted(ws: Workspace, run: ObservedRun) -> tuple[str, Mapping[str, JSON]] | None:
    """The spec hash and config HEAD wants for the run (None: HEAD does not want it): from the specs a plan or
    an earlier ``describe`` kept for this commit, else composed (and kept)."""
    from expctl.config.desired_state import load_desired

    snap = source.snapshot(ws.repo, "HEAD")
    found = spec_cache.lookup(ws.repo, snap.commit, run.experiment, run.run_key)
    if found is not None:
        return found
    desired = load_desired(snap, only=run.experiment, point=run.overrides)
    spec_cache.keep(desired)
    spec = next((s for s in desired.runs if s.run_key == run.run_key), None)
    return (spec.spec_hash, spec.config) if spec else None


def _attempts(run_key: str, live: Sequence[ObservedRun], remembered: Sequence[ObservedRun]) -> list[ObservedRun]:
    """Every attempt of a run key, oldest first: live objects, plus what MLflow remembers of the others."""
    mine = [r for r in live if r.run_key == run_key]
    seen = {(r.attempt, r.spec_hash) for r in mine}
    mine += [r for r in remembered if r.run_key == run_key and (r.attempt, r.spec_hash) not in seen]
    return sorted(mine, key=lambda r: (r.created_at or 0.0, r.attempt))


def _resumed(resume: ResumeFrom | None) -> dict[str, Any] | None:
    """The link of the chain of attempts: which attempt (run, epoch, checkpoint) this one resumed from."""
    if resume is None:
        return None
    return {"attempt": resume.attempt, "mlflow_run": resume.run_id, "epoch": resume.epoch, "checkpoint": resume.uri}


def _phase_history(attempts: Sequence[ObservedRun]) -> list[dict[str, Any]]:
    """When each attempt was created and how it ended (or where it is now)."""
    events: list[dict[str, Any]] = []
    for r in attempts:
        events.append({"time": _when(r.created_at), "attempt": r.attempt, "name": r.name,
                       "spec_hash": r.spec_hash, "phase": "Created"})
        state = r.state
        if state != Phase.PENDING.value:
            detail = r.message or (f"{r.failure.value} failure" if r.failure else "")
            events.append({"time": _when(r.finished_at) if r.phase.finished else None, "attempt": r.attempt,
                           "name": r.name, "spec_hash": r.spec_hash, "phase": state,
                           **({"detail": detail} if detail else {})})
    return events



def audit_history(ws: Workspace, experiment: str | None, limit: int,
                  team: str | None = None) -> list[dict[str, Any]]:
    """The audit trail, newest first: of one experiment, or of the runs recorded as one team's."""
    settings = settings_at_head(ws)
    in_team(settings, team, "")  # an undeclared team is an error
    tracker = ws.open_tracker(settings, ws.backend_name(settings, None))
    return tracker.audit_entries(experiment=experiment, limit=limit, team=team)


def _entry(action: str, run: ObservedRun, who: str, commit: str, fingerprint: str,
           team: str | None = None) -> dict[str, Any]:
    return {"action": action, "run": run.name, "experiment": run.experiment, "run_key": run.run_key,
            "attempt": run.attempt, "reason": "operator", "kind": run.kind, "namespace": run.namespace or "",
            "who": who, "commit": commit, "fingerprint": fingerprint, "time": time.time(),
            "backend": run.backend, "spec_hash": run.spec_hash, "team": team}



def _when(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else None


@dataclass(frozen=True)
class UiLinks:
    """Where to look in the MLflow UI: the server to start (None: the store is a server), the training-runs
    view of the project's experiments, each experiment's runs, the Model Registry."""

    command: list[str] | None
    env: dict[str, str]
    base: str
    runs: str
    experiments: dict[str, str]
    models: str
    warning: str = ""


def ui_links(ws: Workspace, port: int, experiment: str | None = None) -> UiLinks:
    """The addresses ``expctl ui`` prints (the training-runs view, not MLflow's GenAI overview)."""
    from expctl.core.errors import TrackingError
    from expctl.tracking.mlflow import links
    from expctl.tracking.mlflow.locations import ui_server_command
    from expctl.tracking.mlflow.team_stores import TeamStores

    settings = settings_at_head(ws)
    store = ws.open_store(settings)
    command, env, base = ui_server_command(store.tracking_uri, port)
    base = shown_uri(base)  # links to show: a server's URI may hold credentials (a browser asks for them)
    warning = ""
    try:
        store.check()
        found = store.ui_experiments([experiment] if experiment else _experiments_at_head(ws))
    except TrackingError as exc:
        if experiment:
            raise
        found, warning = {}, f"{exc} (showing the start page)"
    if experiment and experiment not in found:
        raise ExpctlError(f"--experiment {experiment}: MLflow at {shown_uri(store.tracking_uri)} has no such "
                          "experiment of expctl's (see `expctl status --all`)")
    # An experiment whose runs predate expctl's saved view opens without it (MLflow refuses an unknown view). A
    # team's experiment opens in its team's workspace; one table compares the experiments of one workspace only.
    where = store.ui_workspaces(list(found)) if isinstance(store, TeamStores) else {}
    urls = {name: links.experiment_url(base, eid, view=has_view, workspace=where.get(name))
            for name, (eid, has_view) in found.items()}
    ids = [eid for eid, _ in found.values()]
    spaces = {where.get(name) for name in found}
    one = next(iter(spaces)) if len(spaces) == 1 else None
    runs = next(iter(urls.values())) if len(urls) == 1 else links.experiments_url(base, ids if len(spaces) < 2 else [],
                                                                                   one)
    return UiLinks(command, env, base, runs, urls, links.models_url(base, one), warning)


def _experiments_at_head(ws: Workspace) -> list[str]:
    """The names of the experiments committed at HEAD (a shared tracking server holds other projects' too)."""
    from expctl.config.desired_state import experiment_files
    from expctl.core.errors import ConfigErrors

    paths = source.list_files(source.snapshot(ws.repo, "HEAD"), ["experiments"])
    try:
        return sorted(experiment_files(dict.fromkeys(paths, b"")))
    except ConfigErrors:  # a misnamed file: `expctl validate` says which; show every experiment meanwhile
        return []


def run_links(ws: Workspace, settings: Settings, run_id: str, port: int = 5000) -> dict[str, str]:
    """Deep links to a run and its experiment in the MLflow UI (the store's server, or ``expctl ui``)."""
    from expctl.tracking.mlflow import links
    from expctl.tracking.mlflow.team_stores import TeamStores

    store = ws.open_store(settings)
    base = shown_uri(links.ui_address(store.tracking_uri, f"http://127.0.0.1:{port}"))
    experiment_id = store.experiment_of_run(run_id)
    workspace = store.workspace_of_run(run_id) if isinstance(store, TeamStores) else None  # a team's run: its own
    return {"mlflow_ui_run": links.run_url(base, experiment_id, run_id, workspace),
            "mlflow_ui_experiment": links.experiment_url(base, experiment_id, view=False, workspace=workspace)}


def model_lineage(ws: Workspace, ref: str) -> dict[str, Any]:
    """Where the registered model version ``ref`` (``MODEL@ALIAS`` or ``MODEL/VERSION``) came from, read from
    MLflow only: run, commit, config, datasets, batches, manifest digests."""
    settings = settings_at_head(ws)
    return ws.open_store(settings, ws.backend_name(settings, None)).lineage(ref)
