"""Crash, interrupt and concurrency faults around settling (``tracking/mlflow_ledger``), end to end."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gitrepo import GitRepo
from tests.integration import e2e
from tests.integration.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration

TRIVIAL = "  command: [python, -c, pass]\n"


def sweep(points: int) -> str:
    return e2e.experiment(sweep={"seed": f"range(0,{points})"}, expctl=TRIVIAL)


@pytest.fixture
def repos() -> Iterator[list[GitRepo]]:
    made: list[GitRepo] = []
    yield made
    for repo in made:
        e2e.stop_jobs(repo.path)


def project(where: Path, name: str, points: int, repos: list[GitRepo]) -> GitRepo:
    repo = e2e.make_project(where, {f"{name}/sweep": sweep(points)}, parallelism=4,
                            settings="  write_concurrency: 1\n")
    repos.append(repo)
    return repo


def history(repo: GitRepo, uri: str) -> list[dict[str, object]]:
    shown = e2e.expctl(repo.path, "history", "--output", "json", "--limit", "200", tracking_uri=uri)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    return list(json.loads(shown.stdout))


def test_another_projects_apply_leaves_a_killed_applys_audit_record_to_its_own_project(
        tmp_path: Path, mlflow_server: MlflowServer, repos: list[GitRepo]) -> None:
    uri = mlflow_server.uri
    b_name, a_name = f"sfb{uuid.uuid4().hex[:6]}", f"sfa{uuid.uuid4().hex[:6]}"
    b = project(tmp_path / "b", b_name, 2, repos)
    a = project(tmp_path / "a", a_name, 1, repos)
    crashed = e2e.expctl(b.path, "apply", "-y", tracking_uri=uri, EXPCTL_TEST_CRASH_AT="before-audit-complete:1")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    other = e2e.expctl(a.path, "apply", "-y", tracking_uri=uri)
    assert other.returncode == 0 and "Traceback" not in other.stderr, other.stderr
    rerun = e2e.expctl(b.path, "apply", "-y", tracking_uri=uri)
    assert rerun.returncode == 0, rerun.stderr
    mine = sorted((e["run"], e["result"]) for e in history(b, uri) if e["experiment"] == f"{b_name}/sweep")
    print(mine)
    assert len(mine) == 2 and {r for _, r in mine} == {"done"}, mine


SLEEPY = "  command: [python, -c, \"import time; time.sleep(120)\"]\n"


def test_a_view_paging_while_another_projects_apply_settles_skips_no_open_run(
        tmp_path: Path, repos: list[GitRepo], monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's page tokens are offsets: an apply of another project (another lock) flipping runs of pages a
    view already read moves the later pages back, and an open run is skipped — the view did not know that
    run at all (a plan would launch it again once its job is gone; a new point would get a second parent).
    The view sees the flipped runs in the ledger it reads again after the pages, and searches once more."""
    from expctl.tracking import mlflow_store
    from expctl.tracking.mlflow_store import MlflowStore

    q_name, p_name = f"sfq{uuid.uuid4().hex[:6]}", f"sfp{uuid.uuid4().hex[:6]}"
    q = project(tmp_path / "q", q_name, 2, repos)
    p = e2e.make_project(tmp_path / "p", {f"{p_name}/sweep": e2e.experiment(
        sweep={"seed": "range(0,3)"}, expctl=SLEEPY)}, parallelism=4)
    repos.append(p)
    uri = e2e.embedded_uri(q.path)  # one store for both projects (as a tracking server would be)
    assert e2e.expctl(q.path, "apply", "-y", tracking_uri=uri).returncode == 0
    finished(q, 2)
    assert e2e.expctl(p.path, "apply", "-y", tracking_uri=uri).returncode == 0  # P's runs: open, after Q's
    assert e2e.expctl(q.path, "apply", "-y", tracking_uri=uri).returncode == 0  # Q's finish: ready to settle
    assert {r.data.tags["expctl.managed"] for r in e2e.mlflow_runs(uri, [f"{q_name}/sweep"])} == {"true"}

    store = MlflowStore(uri, "local", embedded=True)
    monkeypatch.setattr(mlflow_store, "_PAGE", 2)
    search, pages = store.client.search_runs, []

    def paging(*args: object, **kwargs: object) -> object:
        page = search(*args, **kwargs)
        pages.append(page)
        if len(pages) == 1:  # between P's first page (Q's two runs) and the next: Q's apply settles them
            settled = e2e.expctl(q.path, "apply", "-y", tracking_uri=uri)
            assert settled.returncode == 0, settled.stderr
        return page

    monkeypatch.setattr(store.client, "search_runs", paging)
    records = store.view().records
    assert {r.data.tags["expctl.managed"] for r in e2e.mlflow_runs(uri, [f"{q_name}/sweep"])} == {"settled"}
    assert len({(r.run_key, r.attempt) for r in records if r.experiment == f"{p_name}/sweep"}) == 3
    assert len({(r.run_key, r.attempt) for r in records if r.experiment == f"{q_name}/sweep"}) == 2


def finished(repo: GitRepo, points: int) -> None:
    """Wait until the repository's local jobs all succeeded."""
    deadline = time.monotonic() + 120
    while True:
        status = e2e.expctl(repo.path, "status", "-o", "json")
        if status.stdout.count('"state": "Succeeded"') >= points:
            return
        assert time.monotonic() < deadline, status.stdout
        time.sleep(0.5)


def test_an_interrupt_swallowed_before_the_writes_still_stops_the_apply() -> None:
    """Before its writes an apply aborts on SIGINT (KeyboardInterrupt) — unless some code swallows it (a
    finaliser: "Exception ignored in ..."; seen with MLflow's SQLAlchemy store). The apply went on and
    applied everything, exit 0, after the operator's ^C. It is noted, and nothing is written."""
    import os

    from expctl.engine import ApplyOptions, Hooks, run_apply
    from expctl.project import Desired
    from expctl.reconcile import PlanOptions
    from expctl.schema import Settings
    from expctl.source import Snapshot
    from tests.factories import make_spec
    from tests.fakes import FakeBackend, FakeTracker

    class Swallowing(FakeTracker):
        def sync(self, *args: Any, **kwargs: Any) -> None:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)  # (the handler runs at once: never this long)
            except KeyboardInterrupt:
                pass  # as a finaliser's exception is ignored
            super().sync(*args, **kwargs)

    class Held:
        def check(self) -> None:
            return None

        def __enter__(self) -> Held:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    want = Desired(Snapshot(Path("."), "c" * 40, "c" * 40), Settings(),
                   [make_spec("sweep", (f"lr={i}",)) for i in range(3)])
    backend, tracker, notices = FakeBackend(), Swallowing(), []
    result = run_apply(want, backend, tracker, Held(), ApplyOptions(plan=PlanOptions(), who="Ada"),
                       Hooks(notice=notices.append))
    assert not backend.objects and not tracker.records_by_id and not result.applied
    assert result.exit_code == 128 + signal.SIGINT and notices, notices
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_interrupt_while_the_embedded_store_is_created_waits_for_its_migrations(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """^C while MLflow creates the embedded store's tables (migrations, not atomic on sqlite) left a scratch
    table behind: every later expctl command failed ("table _alembic_tmp_… already exists"). The interrupt now
    waits until the store is created, then aborts as before; the store opens."""
    import threading

    import mlflow

    from expctl.tracking.mlflow_store import MlflowStore

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    real, created = mlflow.MlflowClient, []

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        timer = threading.Timer(0.2, lambda: signal.raise_signal(signal.SIGINT))  # during the migrations
        timer.start()
        try:
            client = real(*args, **kwargs)
            client.search_experiments(max_results=1)
            created.append(client)
            return client
        finally:
            timer.cancel()

    monkeypatch.setattr(mlflow, "MlflowClient", interrupted)
    with pytest.raises(KeyboardInterrupt):
        MlflowStore(uri, "local", embedded=True).check()
    assert created, "the store's creation was interrupted"
    monkeypatch.setattr(mlflow, "MlflowClient", real)
    MlflowStore(uri, "local", embedded=True).check()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
