"""Fixtures for integration tests: real git repositories in tmp_path, real Slurm clusters and an MLflow server
with basic auth and workspaces (the session's plain ``mlflow server`` is in ``tests/conftest.py``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import e2e
from tests.support.gitrepo import GitRepo
from tests.support.mlflow_auth_server import MlflowAuthServer
from tests.support.slurm_cluster import SlurmCluster, running_cluster


@pytest.fixture
def git_repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.write(".gitignore", ".expctl/\n")
    repo.write("README.md", "test project\n")
    repo.commit("initial")
    return repo


@pytest.fixture
def repos() -> Iterator[list[GitRepo]]:
    """Projects a test makes (it appends them): their local jobs are stopped after it (they outlive expctl)."""
    made: list[GitRepo] = []
    yield made
    for repo in made:
        e2e.stop_jobs(repo.path)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A real Slurm cluster for the session: ``SLURM_CONF`` (and this interpreter first on PATH) exported for
    the session, both restored at the end."""
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "PATH")}
    try:
        with running_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
            os.environ.update(cluster.env)
            yield cluster
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def private_slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A cluster for one test alone (it may stop and restart its controller); the session's is untouched."""
    with running_cluster(tmp_path_factory.mktemp("private-slurm")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def slurm_accounting_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A cluster with accounting (slurmdbd on a private MariaDB; associations, limits and QOS enforced) for the
    tests of one module; commands reach it through ``env``. The session's cluster is untouched."""
    with running_cluster(tmp_path_factory.mktemp("slurm-accounting"), accounting=True) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def mlflow_auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowAuthServer]:
    """``mlflow server --app-name basic-auth --enable-workspaces`` for the tests of one module (its admin password
    generated at start), stopped at the end."""
    server = MlflowAuthServer(tmp_path_factory.mktemp("mlflow-auth-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
