"""Fixtures for integration tests: real git repositories in tmp_path and a real ``mlflow server``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gitrepo import GitRepo
from tests.integration.mlflow_server import MlflowServer
from tests.integration.slurm_cluster import private_slurm_cluster, slurm_cluster  # noqa: F401  (real Slurm clusters)


@pytest.fixture
def git_repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.write(".gitignore", ".expctl/\n")
    repo.write("README.md", "test project\n")
    repo.commit("initial")
    return repo


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real ``mlflow server`` on 127.0.0.1 for the whole session, stopped at the end."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def repos() -> Iterator[list[GitRepo]]:
    """Projects a test makes (it appends them): their local jobs are stopped after it (they outlive expctl)."""
    from tests.integration import e2e

    made: list[GitRepo] = []
    yield made
    for repo in made:
        e2e.stop_jobs(repo.path)
