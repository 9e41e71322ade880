"""Where expctl works: the repository, its state directory, and the backend and tracker it opens.

The composition root: the only place that builds a backend (``open_backend``) or the MLflow store
(``open_tracker`` for a backend's runs, ``open_store`` for the reads that need no backend), and that decides
the tracking URI (``resolve_tracking_uri``: ``--tracking-uri`` > ``MLFLOW_TRACKING_URI`` > ``expctl.yaml`` >
the embedded store). Backends and trackers are imported only when opened, so commands that do not need them
stay fast. Tests inject fakes by subclassing Workspace and overriding ``open_backend`` / ``open_tracker``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from expctl.backends.base import Backend
from expctl.config.schema import Settings
from expctl.core import backend_registry
from expctl.core.errors import ConfigError, ConfigErrors, ExpctlError
from expctl.core.jobenv import TeamEnv
from expctl.core.model import RunSpec
from expctl.core.sanitize import uri_credentials
from expctl.tracking.base import Tracker

if TYPE_CHECKING:
    from expctl.tracking.mlflow.store import MlflowStore
    from expctl.tracking.mlflow.team_stores import TeamStores


def check_runnable(backend: str, runs: Iterable[RunSpec]) -> None:
    """Refuse, before any write, runs whose job kind ``backend`` cannot run, or whose ``outputs:`` it cannot
    record (``BackendInfo.outputs``): one error per experiment file and key."""
    info = backend_registry.BACKENDS.get(backend)
    if info is None:  # a backend injected by a test: it declares nothing
        return
    runs = list(runs)
    refused = set(backend_registry.unsupported(backend, {run.job.kind for run in runs}))
    can = ", ".join(sorted(k.value for k in info.kinds))
    errors: dict[tuple[str, str], ConfigError] = {}
    for run in runs:
        if run.job.kind in refused:
            errors.setdefault((run.source_file, "expctl.kind"), ConfigError(
                f"kind {run.job.kind.value!r} does not run on the {backend} backend (it runs {can})",
                file=run.source_file, key="expctl.kind"))
        if run.job.outputs and not run.validates and not info.outputs:
            errors.setdefault((run.source_file, "expctl.outputs"), ConfigError(
                f"the {backend} backend cannot produce a dataset (its jobs have no output directory the apply "
                f"reads); outputs: works on {', '.join(backend_registry.producing())}",
                file=run.source_file, key="expctl.outputs"))
    if errors:
        found = list(errors.values())
        raise found[0] if len(found) == 1 else ConfigErrors(found)


def _check_uri(uri: str, where: str) -> None:
    """A tracking URI that Python cannot even parse (``http://[::1``) is one line, not a traceback later."""
    import urllib.parse

    from expctl.core.sanitize import one_line, shown_uri

    if any(ch.isspace() or not ch.isprintable() for ch in uri):  # as expctl.yaml's tracking_uri (a Word)
        raise ExpctlError(f"{where}: must be a URI without whitespace or control characters "
                          f"(got '{one_line(shown_uri(uri))}')")
    try:
        parts = urllib.parse.urlsplit(uri)
        parts.port  # noqa: B018 (parsing the port is what raises on a bad one)
    except ValueError as exc:
        raise ExpctlError(f"{where}: not a valid URI ({exc}): {shown_uri(uri)}") from None
    if parts.scheme.split("+")[0] == "sqlite" and parts.path.strip("/") in ("", ":memory:"):
        raise ExpctlError(f"{where}: an in-memory SQLite store ({shown_uri(uri)}) forgets every run when expctl "
                          "exits, so the next apply would launch them again: name a file (sqlite:///path/to/mlflow.db)")


def _absolute(uri: str, base: Path) -> str:
    """A ``sqlite:///relative/path`` store resolved against ``base`` (the repository root): MLflow would read it
    against the current directory, so a command run from a subdirectory (or a job, in its worktree) would open
    another store. Any other URI unchanged."""
    scheme, sep, rest = uri.partition(":///")
    path, query, params = rest.partition("?")
    if sep and scheme.split("+")[0].lower() == "sqlite" and path and not path.startswith("/") \
            and path != ":memory:":
        return f"{scheme}:///{(base / path).resolve()}{query}{params}"
    return uri


@dataclass
class Workspace:
    repo: Path
    tracking_uri: str | None = None

    @property
    def state_dir(self) -> Path:
        return self.repo / ".expctl"

    def backend_name(self, settings: Settings, requested: str | None) -> str:
        name = requested or os.environ.get("EXPCTL_BACKEND") or settings.backend
        if name not in backend_registry.BACKENDS:
            known = ", ".join(backend_registry.names())
            where = f"--backend {name}" if requested else f"EXPCTL_BACKEND={name}"  # expctl.yaml's is validated
            raise ExpctlError(f"{where}: unknown backend (choose from {known})")
        return name

    def _configured_uri(self, settings: Settings) -> tuple[str | None, str]:
        """The tracking URI set for this command (None: the embedded store) and where it was set."""
        if self.tracking_uri:  # typed on the command line: relative to where it was typed
            return _absolute(self.tracking_uri, Path.cwd()), "--tracking-uri"
        uri = os.environ.get("MLFLOW_TRACKING_URI") or settings.tracking_uri
        where = "MLFLOW_TRACKING_URI" if uri == os.environ.get("MLFLOW_TRACKING_URI") else "expctl.yaml: tracking_uri"
        return (_absolute(uri, self.repo) if uri else uri), where

    def configured_tracking_uri(self, settings: Settings) -> str | None:
        """The tracking URI the jobs would get (checked), or None for the embedded store; creates nothing."""
        uri, where = self._configured_uri(settings)
        if uri:
            _check_uri(uri, where)
        return uri

    def resolve_tracking_uri(self, settings: Settings) -> str:
        uri, where = self._configured_uri(settings)
        if uri:
            _check_uri(uri, where)
            return uri
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return self.embedded_uri

    @property
    def embedded_uri(self) -> str:
        """The tracking URI of the embedded store, when no other is configured."""
        return f"sqlite:///{self.state_dir / 'mlflow.db'}"

    def open_backend(self, name: str, settings: Settings) -> Backend:
        """The backend registered as ``name`` (``expctl.backend_registry``), imported only now."""
        info = backend_registry.lookup(name)
        if info.inherits_env:
            self.hand_credentials(settings, name)
        elif info.credentials_key and not getattr(settings.block(name), info.credentials_key, None):
            uri, where = self._configured_uri(settings)
            if uri and uri_credentials(uri) != {}:
                warnings.warn(f"{where}: {name.capitalize()} jobs are handed the tracking URI without its password: "
                              f"give them the credentials with {name}.{info.credentials_key}", UserWarning,
                              stacklevel=1)
        backend: Backend = info.open(settings, repo=self.repo, state_dir=self.state_dir)
        if hasattr(backend, "team_env"):
            backend.team_env = self.team_env(settings)
        return backend

    def team_env(self, settings: Settings) -> TeamEnv | None:
        """Each team's job identity for the local and Slurm backends (``core.jobenv.TeamEnv``), read from the
        platform's secret store when a job starts; None when no team declares ``mlflow:``."""
        if not any(t.mlflow is not None for t in settings.teams):
            return None
        from expctl.config.schema_teams import team_of_experiment
        from expctl.tracking.mlflow.job_secrets import JobSecretStore, job_environment, store_path

        teams = list(settings.teams)
        store = JobSecretStore(store_path(self.repo))

        def identity(experiment: str) -> dict[str, str]:
            team = next((t for t in teams if t.name == team_of_experiment(teams, experiment)), None)
            return job_environment(team.name, team.mlflow_workspace(), store) if team else {}
        return identity

    def hand_credentials(self, settings: Settings, backend: str) -> None:
        """Jobs are handed the tracking URI without its password (``sanitize.job_uri``): their environment is
        written into state files and batch scripts. On a backend whose jobs inherit expctl's environment, the
        password goes to them through this process's environment instead (``MLFLOW_TRACKING_USERNAME`` and
        ``_PASSWORD``, or ``PGPASSWORD``), never to a file; a credential the user set already wins. A secret
        no variable can carry is refused in one line that says how to give it."""
        uri, where = self._configured_uri(settings)
        found = uri_credentials(uri) if uri else {}
        if found is None:
            raise ExpctlError(
                f"{where}: the tracking URI holds a secret that {backend} jobs could only be handed inside their "
                "state files: remove it from the URI and give it in the environment instead "
                "(MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN, for a tracking "
                "server; PGPASSWORD or ~/.pgpass for PostgreSQL; the driver's option file for another database)")
        taken = (*found, "MLFLOW_TRACKING_TOKEN") if "MLFLOW_TRACKING_PASSWORD" in found else tuple(found)
        if found and not any(os.environ.get(name) for name in taken):
            os.environ.update(found)

    def open_tracker(self, settings: Settings, backend_name: str) -> Tracker:
        from expctl.config import source
        from expctl.config.source import public_repo_url, repository_label
        from expctl.tracking.mlflow.store import MlflowStore

        remote = source.remote_url(self.repo)  # runs name their source: the public remote, else the directory
        uri = self.resolve_tracking_uri(settings)

        def store(workspace: str | None) -> MlflowStore:  # whose runs: expctl.yaml's project, else the source's
            made = MlflowStore(uri, backend_name, artifact_root=self.state_dir / "mlartifacts",
                               repository=repository_label(remote, self.repo.resolve().name),
                               repo_url=public_repo_url(remote), embedded=uri == self.embedded_uri,
                               project=settings.project, workspace=workspace)
            made.log_tail_bytes = settings.logs.tail_bytes
            return made
        return self._in_team_workspaces(settings, uri, store) or store(None)

    def _in_team_workspaces(self, settings: Settings, uri: str,
                            store: Callable[[str | None], MlflowStore]) -> TeamStores | None:
        """Each team's runs in its own MLflow workspace (``tracking.mlflow.team_stores``): when a team declares
        ``mlflow:`` and the tracking server has workspaces (one request); else None (one store, as before)."""
        if not any(t.mlflow is not None for t in settings.teams) or not uri.startswith(("http://", "https://")):
            return None
        from expctl.config.schema_teams import team_of_experiment
        from expctl.tracking.mlflow.team_stores import TeamStores, has_workspaces

        if not has_workspaces(uri):
            return None
        teams = list(settings.teams)
        workspace = {t.name: t.mlflow_workspace() for t in teams}

        def workspace_of(experiment: str) -> str | None:
            team = team_of_experiment(teams, experiment)
            return workspace[team] if team else None
        stores = TeamStores(store, workspace.values(), workspace_of)
        for team, ws in workspace.items():  # a team's aliases are moved by its own job identity
            stores.stores[ws].alias_identity = self._job_identity(team, ws)
        return stores

    def _job_identity(self, team: str, workspace: str) -> Callable[[], tuple[str, str]]:
        """Team ``team``'s job identity (user, password), read from the platform's secret store when used."""
        def identity() -> tuple[str, str]:
            from expctl.tracking.mlflow.job_secrets import JobSecretStore, job_environment, store_path

            env = job_environment(team, workspace, JobSecretStore(store_path(self.repo)))
            return env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]
        return identity

    def open_store(self, settings: Settings, backend_name: str = "") -> MlflowStore | TeamStores:
        """The MLflow store on the resolved tracking URI, for reads that need no backend's runs: the UI's
        addresses, a registered model's lineage (every team's workspace, when runs are kept in them)."""
        from expctl.tracking.mlflow.store import MlflowStore

        uri = self.resolve_tracking_uri(settings)

        def store(workspace: str | None) -> MlflowStore:
            return MlflowStore(uri, backend_name, embedded=uri == self.embedded_uri, workspace=workspace)
        return self._in_team_workspaces(settings, uri, store) or store(None)
