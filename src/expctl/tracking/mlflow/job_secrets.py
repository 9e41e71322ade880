"""The platform's secret store of the teams' MLflow job identities, and what a job gets from it.

The store is one JSON file, ``{user: password}``, mode 0600 in a 0700 directory: ``$EXPCTL_SECRET_STORE`` when
set, else ``.expctl/secrets/mlflow-jobs.json`` in the repository (``.expctl/`` is never committed). Only
``expctl teams apply`` writes it (a job identity's password is generated there, and replaced by ``--rotate``);
nothing prints a password. A team's job gets its identity and workspace only:

- ``job_environment``: for local and Slurm jobs, put into the job's process environment;
- ``job_secret_manifest``: for Kubernetes, the team's Secret in its namespace (created by the Kubernetes teams
  reconciler; the pod reads it with ``envFrom``).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from expctl.core.errors import TrackingError
from expctl.core.team_platform import JOB_SECRET

STORE_ENV = "EXPCTL_SECRET_STORE"
SECRET_NAME = JOB_SECRET  # the team's Kubernetes Secret, in the team's namespace


def store_path(repo: Path | None, env: Mapping[str, str] | None = None) -> Path:
    """Where the store is: ``$EXPCTL_SECRET_STORE``, else ``<repo>/.expctl/secrets/mlflow-jobs.json``."""
    value = (os.environ if env is None else env).get(STORE_ENV)
    if value:
        return Path(value)
    if repo is None:
        raise TrackingError(f"no secret store for the teams' job identities: set {STORE_ENV} or run in the "
                            "repository")
    return repo / ".expctl" / "secrets" / "mlflow-jobs.json"


def new_password() -> str:
    return secrets.token_urlsafe(24)


class JobSecretStore:
    """The job identities' passwords, read and written whole (a few teams: one small file)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, str]:
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise TrackingError(f"{self.path}: cannot read the secret store ({exc.strerror})") from None
        try:
            data: Any = json.loads(raw)
        except ValueError:
            raise TrackingError(f"{self.path}: the secret store is not JSON (edited by hand?)") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise TrackingError(f"{self.path}: the secret store is not a map of user to password")
        return {str(k): v for k, v in data.items()}

    def get(self, user: str) -> str | None:
        return self.read().get(user)

    def put(self, user: str, password: str) -> None:
        self._write({**self.read(), user: password})

    def remove(self, user: str) -> None:
        data = self.read()
        if data.pop(user, None) is not None:
            self._write(data)

    def _write(self, data: dict[str, str]) -> None:
        """Atomically, never readable by others (created 0600, then renamed over the old file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)


def job_environment(team: str, workspace: str, store: JobSecretStore) -> dict[str, str]:
    """The environment a team's local or Slurm job gets: its identity and workspace (never the admin's)."""
    from expctl.tracking.mlflow.teams_access_plan import job_user

    user = job_user(team)
    password = store.get(user)
    if password is None:
        raise TrackingError(f"team {team}'s job identity {user} has no password in {store.path}: run "
                            "`expctl teams apply` first")
    return {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password, "MLFLOW_WORKSPACE": workspace}


def job_secret_manifest(team: str, namespace: str, workspace: str, store: JobSecretStore) -> dict[str, Any]:
    """The team's Kubernetes Secret (``stringData``: the job identity and workspace), labelled as expctl's.
    Hand it to the API only: it holds a password, so it is never printed or written to a file."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": SECRET_NAME, "namespace": namespace,
                     "labels": {"app.kubernetes.io/managed-by": "expctl", "expctl.io/team": team}},
        "stringData": job_environment(team, workspace, store),
    }
