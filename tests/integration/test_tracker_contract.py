"""The MLflow store passes the tracker contract, embedded (sqlite) and against a real ``mlflow server``.

Each test gets a tracker of its own backend name on a store shared by the module (one sqlite file) or the
session (the ``mlflow_server`` fixture): MLflow's view is per backend, so the tests do not see each other's runs,
and the store is set up once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from expctl.tracking.base import Tracker
from expctl.tracking.mlflow.store import MlflowStore
from tests.contract.tracker_suite import TrackerContract
from tests.support.mlflow_server import MlflowServer


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    db: Path = tmp_path_factory.mktemp("tracker-contract") / "mlflow.db"
    return f"sqlite:///{db}"


@pytest.fixture
def backend_name() -> str:
    return f"contract-{uuid.uuid4().hex[:8]}"


class TestEmbeddedStoreContract(TrackerContract):
    @pytest.fixture
    def tracker(self, sqlite_uri: str, backend_name: str) -> Tracker:
        return MlflowStore(sqlite_uri, backend_name, embedded=True)

    @pytest.fixture
    def reopen(self, sqlite_uri: str, backend_name: str) -> Callable[[], Tracker]:
        return lambda: MlflowStore(sqlite_uri, backend_name, embedded=True)


class TestServerStoreContract(TrackerContract):
    @pytest.fixture
    def tracker(self, mlflow_server: MlflowServer, backend_name: str) -> Tracker:
        return MlflowStore(mlflow_server.uri, backend_name)

    @pytest.fixture
    def reopen(self, mlflow_server: MlflowServer, backend_name: str) -> Callable[[], Tracker]:
        return lambda: MlflowStore(mlflow_server.uri, backend_name)
