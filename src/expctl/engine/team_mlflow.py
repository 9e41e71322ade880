"""The MLflow side of ``expctl teams plan`` / ``teams apply``: each team's workspace, role, members and job
identity (``tracking.mlflow.teams_access``), reconciled beside the backend's platform objects.

The trigger: a team of ``expctl.yaml`` declares ``mlflow:`` (``mlflow: {}`` takes the defaults). Then every team
is reconciled in MLflow (a team without the key gets a workspace of its name), on the tracking server the jobs
use, as the platform's admin (``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``); without it nothing is asked of MLflow.
Each change made is audited like the other team writes (``team-create|update|delete``, journalled first).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from expctl.config.schema import Settings
from expctl.core.naming import sha256_hex
from expctl.engine.workspace import Workspace
from expctl.tracking.mlflow.job_secrets import JobSecretStore, job_environment, store_path
from expctl.tracking.mlflow.teams_access import (
    MlflowTeam,
    MlflowTeamsReport,
    apply_mlflow_teams,
    plan_mlflow_teams,
)
from expctl.tracking.mlflow.teams_access_plan import Change

Journal = Callable[[Change], Callable[[str | None], None]]


@dataclass(frozen=True)
class MlflowSide:
    """The teams as MLflow sees them, the tracking server, and the job identities' secret store."""

    teams: tuple[MlflowTeam, ...]
    tracking_uri: str
    store: JobSecretStore


def mlflow_teams(settings: Settings) -> tuple[MlflowTeam, ...] | None:
    """Every team's MLflow side when one of them declares ``mlflow:``; None when none does."""
    if not any(t.mlflow is not None for t in settings.teams):
        return None
    return tuple(MlflowTeam(t.name, t.mlflow_workspace(), tuple(t.mlflow_users())) for t in settings.teams)


def mlflow_side(ws: Workspace, settings: Settings) -> MlflowSide | None:
    teams = mlflow_teams(settings)
    if teams is None:
        return None
    uri = ws.configured_tracking_uri(settings) or ws.embedded_uri
    return MlflowSide(teams, uri, JobSecretStore(store_path(ws.repo)))


def job_envs(side: MlflowSide) -> dict[str, dict[str, str]]:
    """Each team's job identity whose password the secret store holds (for its Kubernetes Secret)."""
    stored = side.store.read()
    return {t.name: job_environment(t.name, t.workspace, side.store) for t in side.teams if t.job_user in stored}


def plan_mlflow(side: MlflowSide, prune: bool, rotate: bool) -> MlflowTeamsReport:
    return plan_mlflow_teams(side.teams, side.tracking_uri, side.store, prune=prune, rotate=rotate)


def apply_mlflow(side: MlflowSide, prune: bool, rotate: bool, journal: Journal) -> MlflowTeamsReport:
    return apply_mlflow_teams(side.teams, side.tracking_uri, side.store, prune=prune, rotate=rotate,
                              journal=journal)


def audit_action(change: Change) -> str:
    """``team-create`` / ``team-delete``; every other MLflow change (grant, assign, rotate …) ``team-update``."""
    return f"team-{change.action if change.action in ('create', 'delete') else 'update'}"


def mlflow_entry(change: Change, who: str, commit: str, fingerprint: str, backend: str) -> dict[str, Any]:
    """The audit record of one MLflow change (never a password: a change carries none)."""
    return {"action": audit_action(change), "run": f"mlflow {change.kind} {change.name}", "experiment": "",
            "run_key": "", "attempt": 0, "reason": f"teams apply: {change}", "kind": f"mlflow-{change.kind}",
            "namespace": str(change.args.get("workspace", "")), "who": who, "commit": commit,
            "fingerprint": fingerprint, "time": time.time(), "backend": backend,
            "spec_hash": sha256_hex(str(change))[:16], "team": change.team or None}
