"""Shared fixtures: real git repositories in temporary directories, and the session's real ``mlflow server``.

Fixtures live in conftest files; what they are built from (and every helper a test shares) lives in
``tests/support/``, which test modules import from — never from one another or from a conftest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.gitrepo import GitRepo, minimal_repo
from tests.support.mlflow_server import MlflowServer


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[[dict[str, str]], GitRepo]:
    def make(experiments: dict[str, str]) -> GitRepo:
        return minimal_repo(tmp_path / "repo", experiments)

    return make


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real ``mlflow server`` on 127.0.0.1 for the whole session, stopped at the end."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _process_writes_again() -> Iterator[None]:
    """A read command run in this process (``CliRunner``) marks it as one that only reads the embedded store
    (``sqlite_search.reads_only``) until the next command starts: no test inherits that mark from another."""
    yield
    import sys

    plain_reads = sys.modules.get("expctl.tracking.mlflow.sqlite_search")
    if plain_reads is not None:
        plain_reads.reads_only(False)
