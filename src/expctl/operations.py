"""What the operator commands do: list, cancel, describe runs, read the audit trail, serve the MLflow UI.

These work from the repository's settings at HEAD (backend, namespaces, tracking URI) and do not need the
experiments to be valid, except ``describe``, which shows the composed config.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from expctl import source
from expctl.backends.base import Backend
from expctl.diff import join_observed
from expctl.errors import ExpctlError
from expctl.model import Change, ObservedRun, Plan
from expctl.project import load_settings
from expctl.schema import Settings
from expctl.tracking.base import Tracker
from expctl.workspace import Workspace


def settings_at_head(ws: Workspace) -> Settings:
    snap = source.snapshot(ws.repo, "HEAD")
    return load_settings(source.read_files(snap, ["expctl.yaml"]))


def open_for_operations(ws: Workspace, backend_name: str | None,
                        tracker: bool = True) -> tuple[Backend, Tracker | None, Settings]:
    settings = settings_at_head(ws)
    name = ws.backend_name(settings, backend_name)
    backend = ws.open_backend(name, settings)
    return backend, (ws.open_tracker(settings, name) if tracker else None), settings


def observe_all(ws: Workspace, backend_name: str | None, include_gone: bool = False) -> list[ObservedRun]:
    backend, tracker, _ = open_for_operations(ws, backend_name)
    live = backend.observe()
    if not include_gone or tracker is None:
        return sorted(live, key=lambda r: (r.experiment, r.name))
    return sorted(join_observed(live, tracker.records()), key=lambda r: (r.experiment, r.name))


def cancel_runs(ws: Workspace, backend_name: str | None, names: Sequence[str],
                experiment: str | None) -> list[str]:
    """Cancel the named runs (or every unfinished run of an experiment): durable, tracked and audited."""
    backend, tracker, _ = open_for_operations(ws, backend_name)
    assert tracker is not None
    live = {r.name: r for r in backend.observe()}
    unknown = [n for n in names if n not in live]
    if unknown:
        raise ExpctlError(f"no run named {', '.join(unknown)} (see `expctl status`)")
    targets = [live[n] for n in names]
    if experiment:
        matching = [r for r in live.values() if r.experiment == experiment]
        if not matching:
            raise ExpctlError(f"--experiment {experiment}: no runs of this experiment")
        targets += [r for r in matching if not r.phase.finished and not r.cancelled]
    who = _operator(ws)
    done: list[str] = []
    for run in targets:
        if run.cancelled:
            continue
        backend.cancel(run.name, by=who)
        if run.mlflow_run_id:
            tracker.mark_killed(run.mlflow_run_id, by=who)
        tracker.record_audit(_entry("cancel", run, who, commit=run.commit or "", fingerprint=""))
        done.append(run.name)
    return done


def describe_run(ws: Workspace, backend_name: str | None, name: str) -> dict[str, Any]:
    from expctl.project import load_desired

    backend, tracker, _ = open_for_operations(ws, backend_name)
    assert tracker is not None
    observed = join_observed(backend.observe(), tracker.records())
    match = next((r for r in observed if r.name == name), None)
    if match is None:
        raise ExpctlError(f"no run named {name} (see `expctl status --all`)")
    attempts = sorted((r for r in observed if r.run_key == match.run_key),
                      key=lambda r: (r.created_at or 0.0, r.attempt))
    desired = load_desired(source.snapshot(ws.repo, "HEAD"), only=match.experiment)
    spec = next((s for s in desired.runs if s.run_key == match.run_key), None)
    return {
        "run": match.name,
        "experiment": match.experiment,
        "run_key": match.run_key,
        "overrides": list(match.overrides),
        "kind": match.kind,
        "namespace": match.namespace,
        "commit": match.commit,
        "spec_hash": match.spec_hash,
        "desired_spec_hash": spec.spec_hash if spec else None,
        "in_sync": bool(spec and spec.spec_hash == match.spec_hash),
        "attempts": [
            {"name": r.name, "attempt": r.attempt, "phase": "Cancelled" if r.cancelled else r.phase.value,
             "failure": r.failure.value if r.failure else None, "message": r.message,
             "created": _when(r.created_at), "finished": _when(r.finished_at), "mlflow_run": r.mlflow_run_id,
             "object": "live" if r.live else "gone (tracked in MLflow)", "applied_by": r.user}
            for r in attempts
        ],
        "mlflow_run": match.mlflow_run_id,
        "tracking_uri": ws.resolve_tracking_uri(settings_at_head(ws)),
        "config": dict(spec.config) if spec else None,
    }


def audit_history(ws: Workspace, experiment: str | None, limit: int) -> list[dict[str, Any]]:
    settings = settings_at_head(ws)
    tracker = ws.open_tracker(settings, ws.backend_name(settings, None))
    return tracker.audit_entries(experiment=experiment, limit=limit)


def record_applied(tracker: Tracker, plan: Plan, done: Sequence[Change], who: str) -> None:
    """The audit trail of one apply: one entry per applied change, in MLflow (durable, shared)."""
    for change in done:
        run = change.observed
        entry = {
            "action": change.action.value, "run": change.name, "experiment": change.experiment,
            "run_key": change.run_key, "attempt": change.attempt, "reason": change.reason,
            "kind": change.desired.job.kind.value if change.desired else (run.kind if run else ""),
            "namespace": (change.desired.job.namespace if change.desired else (run.namespace if run else None))
            or "", "who": who, "commit": plan.commit, "fingerprint": plan.fingerprint, "time": time.time(),
            "backend": plan.backend, "spec_hash": change.spec_hash or "",
        }
        tracker.record_audit(entry)


def _entry(action: str, run: ObservedRun, who: str, commit: str, fingerprint: str) -> dict[str, Any]:
    return {"action": action, "run": run.name, "experiment": run.experiment, "run_key": run.run_key,
            "attempt": run.attempt, "reason": "operator", "kind": run.kind, "namespace": run.namespace or "",
            "who": who, "commit": commit, "fingerprint": fingerprint, "time": time.time(),
            "backend": run.backend, "spec_hash": run.spec_hash}


def _operator(ws: Workspace) -> str:
    import getpass
    import os

    actor = os.environ.get("GITHUB_ACTOR")
    user = os.environ.get("USER") or getpass.getuser()
    return f"github:{actor}" if actor else user


def _when(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else None


def ui_command(ws: Workspace, port: int) -> tuple[list[str] | None, dict[str, str], str]:
    from expctl.tracking.mlflow_store import ui_server_command

    uri = ws.resolve_tracking_uri(settings_at_head(ws))
    return ui_server_command(uri, port)

