"""``expctl lineage`` on the embedded store without MLflow: the reads it makes of MLflow's client, from the file.

``lineage`` asks a client for a registered version (by alias or number), the model's aliases, runs (tags,
params, status) and two kinds of artifacts. ``RegistryReader`` answers exactly those from MLflow's tables
(``model_versions``, ``registered_model_aliases``, ``model_version_tags``, ``runs``, ``tags``, ``params``) and the
run's local artifact directory, with MLflow's meaning: a version MLflow deleted (stage ``Deleted_Internal``) is
not found; ``get_run`` finds deleted runs too. Each call is one read-only snapshot (``sqlite_search``).

Only the schema revision whose registry tables were checked (MLflow 3.18.0's, with the ``workspace`` column:
``REGISTRY_REVISIONS``) is read here; any other raises ``Unsupported`` and the caller uses MLflow's client.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expctl.tracking.mlflow.rest_search import Run
from expctl.tracking.mlflow.sqlite_search import SqliteSearch

REGISTRY_REVISIONS = {"f4a9b2c7d1e6"}  # 3.18.0 (the lock): registry tables with ``workspace``
_WORKSPACE = "default"  # outside MLflow workspaces (``sqlite_search.usable``) every row is the default's
_DELETED = "Deleted_Internal"  # MLflow's stage of a deleted version


class NotFound(LookupError):
    """No such registered version, model or run (MLflow's client raises its own exception there)."""


@dataclass(frozen=True)
class Version:
    name: str
    version: str
    run_id: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Model:
    name: str
    aliases: dict[str, str] = field(default_factory=dict)


class RegistryReader:
    """The client calls of ``lineage``, read from one MLflow sqlite file (see the module's docstring)."""

    def __init__(self, search: SqliteSearch, client: Callable[[], Any]) -> None:
        self.search = search
        self.client = client  # MLflow's client, for artifacts that are not on this machine

    def check(self) -> None:
        """``Unsupported`` unless the store's registry tables are the ones read here (call before reading)."""
        with self._snapshot():
            pass

    def _snapshot(self) -> Any:
        return self.search.snapshot(REGISTRY_REVISIONS)

    def get_model_version(self, name: str, version: str) -> Version:
        with self._snapshot() as conn:
            if conn is None:
                raise NotFound(f"{name}/{version}")
            row = conn.execute("SELECT name, version, run_id FROM model_versions WHERE workspace = ? AND name = ? "
                               "AND version = ? AND current_stage IS NOT ?",
                               (_WORKSPACE, name, int(version), _DELETED)).fetchone()
            if row is None:
                raise NotFound(f"{name}/{version}")
            tags = dict(conn.execute("SELECT key, value FROM model_version_tags WHERE workspace = ? AND name = ? "
                                     "AND version = ?", (_WORKSPACE, name, int(version))).fetchall())
        return Version(str(row[0]), str(row[1]), str(row[2] or ""),
                       {str(k): str(v or "") for k, v in tags.items()})

    def get_model_version_by_alias(self, name: str, alias: str) -> Version:
        with self._snapshot() as conn:
            row = None if conn is None else conn.execute(
                "SELECT version FROM registered_model_aliases WHERE workspace = ? AND name = ? AND alias = ?",
                (_WORKSPACE, name, alias)).fetchone()
        if row is None:
            raise NotFound(f"{name}@{alias}")
        return self.get_model_version(name, str(row[0]))

    def get_registered_model(self, name: str) -> Model:
        with self._snapshot() as conn:
            if conn is None or conn.execute("SELECT 1 FROM registered_models WHERE workspace = ? AND name = ?",
                                            (_WORKSPACE, name)).fetchone() is None:
                raise NotFound(name)
            rows = conn.execute("SELECT alias, version FROM registered_model_aliases WHERE workspace = ? "
                                "AND name = ?", (_WORKSPACE, name)).fetchall()
        return Model(name, {str(a): str(v) for a, v in rows})

    def get_run(self, run_id: str) -> Run:
        run = self.search.run_by_id(run_id)
        if run is None:
            raise NotFound(run_id)
        return run

    def download_artifacts(self, run_id: str, path: str, dst_path: str) -> str:
        """The artifact's file, in place (nothing is copied); NotFound when it is not in the run's local
        artifact directory. Artifacts that are not on this machine are downloaded by MLflow's client."""
        root = self.search.artifact_dir(run_id)
        if root is None:
            return str(self.client().download_artifacts(run_id, path, dst_path))
        target = Path(os.path.normpath(root / path))
        if target == root or root not in target.parents or not target.is_file():
            raise NotFound(f"{run_id}/{path}")
        return str(target)


__all__ = ["REGISTRY_REVISIONS", "Model", "NotFound", "RegistryReader", "Version"]
