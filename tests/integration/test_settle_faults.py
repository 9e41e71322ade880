"""Crash, interrupt and concurrency faults around settling (``tracking/mlflow/ledger``), end to end."""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support import e2e
from tests.support.gitrepo import GitRepo
from tests.support.mlflow_server import MlflowServer
from tests.support.settling import apply_between_pages, finished, sweep

pytestmark = pytest.mark.integration


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
    from expctl.tracking.mlflow.store import MlflowStore

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
    apply_between_pages(store, monkeypatch, q, uri)  # between P's first page (Q's two runs) and the next
    records = store.view().records
    assert {r.data.tags["expctl.managed"] for r in e2e.mlflow_runs(uri, [f"{q_name}/sweep"])} == {"settled"}
    assert len({(r.run_key, r.attempt) for r in records if r.experiment == f"{p_name}/sweep"}) == 3
    assert len({(r.run_key, r.attempt) for r in records if r.experiment == f"{q_name}/sweep"}) == 2


def test_an_interrupt_swallowed_before_the_writes_still_stops_the_apply() -> None:
    """Before its writes an apply aborts on SIGINT (KeyboardInterrupt) — unless some code swallows it (a
    finaliser: "Exception ignored in ..."; seen with MLflow's SQLAlchemy store). The apply went on and
    applied everything, exit 0, after the operator's ^C. It is noted, and nothing is written."""
    import os

    from expctl.config.desired_state import Desired
    from expctl.config.schema import Settings
    from expctl.config.source import Snapshot
    from expctl.engine.apply import ApplyOptions, Hooks, run_apply
    from expctl.engine.plan import PlanOptions
    from tests.support.factories import make_spec
    from tests.support.fakes import FakeBackend, FakeTracker

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

    from expctl.tracking.mlflow.store import MlflowStore

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


def test_a_batch_appended_to_a_ledger_another_apply_just_replaced_flips_nothing(tmp_path: Path,
                                                                               repos: list[GitRepo]) -> None:
    """Apply A read the ledger; apply B (another project, its own lock) found it damaged and rebuilt it, marking
    it ``replaced``; A then appends its batch to the old one. Flipping A's runs then would leave them in no
    ledger any view reads (plans would launch them again): they stay open, and settle at a later apply."""
    from expctl.tracking.mlflow import ledger as mlflow_ledger
    from expctl.tracking.mlflow.store import MlflowStore

    name = f"sfr{uuid.uuid4().hex[:6]}"
    exp = f"{name}/sweep"
    repo = project(tmp_path / "repo", name, 2, repos)
    uri = e2e.embedded_uri(repo.path)
    assert e2e.expctl(repo.path, "apply", "-y").returncode == 0
    finished(repo, 2)
    for _ in range(3):  # finish, settle (the runs, then their parent): a ledger exists
        assert e2e.expctl(repo.path, "apply", "-y").returncode == 0
    repo.write(f"experiments/{name}/sweep.yaml", sweep(4))
    repo.commit("two more points")
    assert e2e.expctl(repo.path, "apply", "-y").returncode == 0
    finished(repo, 4)
    assert e2e.expctl(repo.path, "apply", "-y").returncode == 0  # finishes the two new runs

    first = MlflowStore(uri, "local", embedded=True)
    view = first.view()  # A's view: the ledger is fine
    assert first.last_ledger is not None and not first.last_ledger.damaged and first.last_ledger.ledger_ids
    ready = [run for run in mlflow_ledger.candidates(view.index.raw, [], [], set(), first.from_ledger)
             if run.data.tags.get("expctl.parent") != "true"]
    assert len(ready) == 2
    old = first.last_ledger.ledger_ids[0]
    part = next(key for key in first.client.get_run(old).data.tags if key.endswith(".0000"))
    first.client.set_tag(old, part, "edited by hand")
    second = MlflowStore(uri, "local", embedded=True)
    second.view()
    assert second.last_ledger is not None and second.last_ledger.damaged
    assert mlflow_ledger.settle(second, second.last_ledger, [], lambda: False) == 0  # B rebuilds it
    assert first.client.get_run(old).data.tags["expctl.ledger"] == "replaced"

    assert mlflow_ledger.settle(first, first.last_ledger, ready, lambda: False) == 0  # A's batch: no flip
    assert {r.data.tags["expctl.managed"] for r in e2e.mlflow_runs(uri, [exp])} == {"settled", "true"}
    seen = {(r.run_key, r.attempt) for r in MlflowStore(uri, "local", embedded=True).view().records
            if r.experiment == exp}
    assert len(seen) == 4, sorted(seen)
    assert e2e.expctl(repo.path, "apply", "-y").returncode == 0
    assert {r.data.tags["expctl.managed"] for r in e2e.mlflow_runs(uri, [exp])} == {"settled"}
    planned = e2e.expctl(repo.path, "plan", "--detailed-exitcode")
    assert planned.returncode == 0 and "damaged" not in planned.stderr, planned.stdout + planned.stderr
