"""Where expctl works: the repository, its state directory, and the backend and tracker it opens.

Backends and trackers are imported only when opened, so commands that do not need them stay fast.
Tests inject fakes by subclassing Workspace and overriding ``open_backend`` / ``open_tracker``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from expctl.backends.base import Backend
from expctl.errors import ExpctlError
from expctl.schema import Settings
from expctl.tracking.base import Tracker

BACKENDS = ("local", "kubernetes")


@dataclass
class Workspace:
    repo: Path
    tracking_uri: str | None = None

    @property
    def state_dir(self) -> Path:
        return self.repo / ".expctl"

    def backend_name(self, settings: Settings, requested: str | None) -> str:
        name = requested or os.environ.get("EXPCTL_BACKEND") or settings.backend
        if name not in BACKENDS:
            raise ExpctlError(f"--backend {name}: unknown backend (choose from {', '.join(BACKENDS)})")
        return name

    def resolve_tracking_uri(self, settings: Settings) -> str:
        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or settings.tracking_uri
        if uri:
            return uri
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.state_dir / 'mlflow.db'}"

    def open_backend(self, name: str, settings: Settings) -> Backend:
        if name == "local":
            from expctl.backends.local import LocalBackend

            return LocalBackend(self.state_dir, self.repo, parallelism=settings.local.parallelism)
        from expctl.backends.kubernetes import open_kubernetes

        return open_kubernetes(settings, self.repo)

    def open_tracker(self, settings: Settings, backend_name: str) -> Tracker:
        from expctl import source
        from expctl.tracking.mlflow_store import MlflowStore
        from expctl.tracking.provenance import public_repo_url, repository_label

        remote = source.remote_url(self.repo)  # runs name their source: the public remote, else the directory
        return MlflowStore(self.resolve_tracking_uri(settings), backend_name,
                           artifact_root=self.state_dir / "mlartifacts",
                           repository=repository_label(remote, self.repo.resolve().name),
                           repo_url=public_repo_url(remote))
