"""The MLflow store passes the tracker contract against the tracking server people deploy: ``mlflow server`` on
PostgreSQL (Debian's ``postgresql``, started here) with several workers.

One PostgreSQL cluster and one server for the module; each test gets a tracker of its own backend name, as in
``test_tracker_contract.py``. Two uvicorn workers, so that consecutive requests of one apply can land on
different workers (each with its own SQLAlchemy pool): what expctl reads back must not depend on which one
answered.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from expctl.tracking.base import Tracker
from expctl.tracking.mlflow.store import MlflowStore
from tests.contract.tracker_suite import TrackerContract
from tests.support.mlflow_server import MlflowServer
from tests.support.postgres import Postgres


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with Postgres() as pg:
        server = MlflowServer(tmp_path_factory.mktemp("mlflow-postgres"), backend_store_uri=pg.uri, workers=2)
        server.start(timeout=180)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def backend_name() -> str:
    return f"contract-{uuid.uuid4().hex[:8]}"


class TestPostgresServerStoreContract(TrackerContract):
    @pytest.fixture
    def tracker(self, postgres_server: MlflowServer, backend_name: str) -> Tracker:
        return MlflowStore(postgres_server.uri, backend_name)

    @pytest.fixture
    def reopen(self, postgres_server: MlflowServer, backend_name: str) -> Callable[[], Tracker]:
        return lambda: MlflowStore(postgres_server.uri, backend_name)


def test_the_server_really_stores_in_postgresql(postgres_server: MlflowServer) -> None:
    """The fixture is what it says: what the server is asked to store lands in the PostgreSQL database."""
    import psycopg

    tracker = MlflowStore(postgres_server.uri, f"contract-{uuid.uuid4().hex[:8]}")
    name = f"pg-{uuid.uuid4().hex[:8]}"
    experiment_id = tracker.experiment_id(name)
    with psycopg.connect(postgres_server.backend_store_uri) as conn:
        rows = conn.execute("SELECT experiment_id FROM experiments WHERE name = %s", (name,)).fetchall()
    assert [str(r[0]) for r in rows] == [experiment_id]
