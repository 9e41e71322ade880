"""The embedded store read from its file (``tracking/mlflow/sqlite_search``), against a store written by real
MLflow: the same view, audit trail and searches as MLflow's client, one snapshot while MLflow writes, MLflow's
client again for a schema or a filter it does not know, and read commands that never import ``mlflow``."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from expctl.core import audit
from expctl.core.model import Action, Change, ObservedRun, Phase, Plan, Reason
from expctl.tracking.mlflow import session as mlflow_session
from expctl.tracking.mlflow import sqlite_search
from expctl.tracking.mlflow.sqlite_search import SqliteSearch, Unsupported
from expctl.tracking.mlflow.store import MlflowStore
from tests.support import e2e
from tests.support.factories import make_spec
from tests.support.gitrepo import minimal_repo


@pytest.fixture(autouse=True)
def _a_reading_process() -> Iterator[None]:
    """As in ``expctl plan/status/...``: the process only reads the store, so its searches read the file."""
    from expctl.tracking.mlflow import sqlite_search

    sqlite_search.reads_only(True)
    yield
    sqlite_search.reads_only(False)


pytestmark = pytest.mark.integration

AUTHOR = "Test User <test@example.com>"
RUNS = 5


class ClientlessStore(MlflowStore):
    """A store whose reads must not make an MLflow client (nor import ``mlflow``)."""

    @property
    def client(self) -> Any:
        raise AssertionError("this read needs no MLflow client")


def by_client(uri: str, backend: str) -> MlflowStore:
    """The reference: the same store read through MLflow's own client and entities."""
    store = MlflowStore(uri, backend, embedded=True)
    store.local = None
    return store


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """An embedded store written by MLflow: a sweep of RUNS runs (and its parent), metrics (a NaN too), a
    finished and a failed run, a deleted run, a completed and an open audit record."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('sqlite-search') / 'mlflow.db'}"
    backend = f"sq-{uuid.uuid4().hex[:8]}"
    store = MlflowStore(uri, backend, embedded=True)
    specs = [make_spec(f"{backend}-sweep", overrides=(f"lr={i}",), config={"lr": i}) for i in range(RUNS + 1)]
    view = store.view()
    refs = [store.ensure_run(spec, 1, AUTHOR, view) for spec in specs]
    client = store.client
    client.log_metric(refs[0].run_id, "loss", 0.5)
    client.log_metric(refs[0].run_id, "loss", 0.25)
    client.log_metric(refs[2].run_id, "loss", math.nan)
    client.delete_run(refs[RUNS].run_id)
    done = ObservedRun(specs[0].run_key, specs[0].name, specs[0].experiment, 1, specs[0].spec_hash,
                       Phase.SUCCEEDED, backend, mlflow_run_id=refs[0].run_id, finished_at=time.time())
    failed = ObservedRun(specs[1].run_key, specs[1].name, specs[1].experiment, 1, specs[1].spec_hash, Phase.FAILED,
                         backend, mlflow_run_id=refs[1].run_id, finished_at=time.time(), message="boom")
    store.sync([done, failed], specs, store.view())
    changes = [Change(Action.CREATE, Reason.MISSING, s.experiment, s.run_key, s.name, s.overrides, s.spec_hash, 1,
                      s) for s in specs[:2]]
    plan = Plan("c" * 40, backend, tuple(changes), "fp")
    record = store.begin_audit(audit.new_record(plan, changes, AUTHOR, ""))
    store.complete_audit(audit.with_results(record, {s.name: audit.DONE for s in specs[:2]}))
    store.begin_audit(audit.new_record(plan, changes[:1], AUTHOR, ""))  # left open, as by a killed apply
    return uri, backend


def _runs(runs: Any) -> list[tuple[Any, ...]]:
    """What expctl reads of runs (NaN compared by its text)."""
    return [(r.info.run_id, str(r.info.experiment_id), r.info.status, r.info.start_time, r.info.end_time,
             r.info.lifecycle_stage, dict(r.data.tags), dict(r.data.params),
             {k: repr(v) for k, v in r.data.metrics.items()}) for r in runs]


def test_the_view_and_the_audit_trail_equal_the_clients(seeded: tuple[str, str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    uri, backend = seeded
    monkeypatch.setattr(mlflow_session, "PAGE", 2)  # several pages of runs
    local, reference = ClientlessStore(uri, backend, embedded=True), by_client(uri, backend)
    assert local.local is not None
    got, want = local.view(), reference.view()
    assert got.records == want.records and len(got.records) == RUNS
    assert got.open_audits == want.open_audits and len(got.open_audits) == 1
    assert got.index.runs == want.index.runs and got.index.parents == want.index.parents
    assert _runs(got.index.raw) == _runs(want.index.raw)
    assert {r.phase for r in got.records} >= {Phase.SUCCEEDED, Phase.FAILED}
    assert local.seen_tags == reference.seen_tags and local.experiment_tags == reference.experiment_tags
    assert local.audit_entries() == reference.audit_entries() and len(local.audit_entries()) == 2
    assert local.audit_entries(limit=1) == reference.audit_entries(limit=1)
    some = got.records[0].mlflow_run_id
    assert some is not None and local.experiment_of_run(some) == reference.experiment_of_run(some)
    assert local.local is not None and local.local.reads >= 4


FILTERS = [
    "",
    "tags.`expctl.managed` = 'true'",
    "tags.`expctl.managed` != 'true'",
    "tags.`expctl.parent` = \"true\" AND tags.`expctl.backend` = '{backend}'",
    "attributes.status = 'FAILED'",
    "attributes.status != 'RUNNING' and tags.expctl.attempt = '1'",
    "attributes.run_id IN ('{a}', '{b}')",
    "attributes.run_id NOT IN ('{a}')",
    "attributes.run_id = '{a}'",
]


@pytest.mark.parametrize("order", ["ASC", "DESC"])
def test_each_filter_expctl_sends_answers_as_mlflow(seeded: tuple[str, str], order: str) -> None:
    uri, backend = seeded
    reference = by_client(uri, backend)
    ids = [str(e.experiment_id) for e in reference.client.search_experiments()]
    search = SqliteSearch(Path(uri.removeprefix("sqlite:///")))
    some = reference.search(ids, "")
    a, b = some[0].info.run_id, some[-1].info.run_id
    for text in FILTERS:
        filter_string = text.format(backend=backend, a=a, b=b)
        want = reference.search(ids, filter_string, order)
        got = search.search_runs(ids, filter_string, [f"attributes.start_time {order}"], page=3)
        assert _runs(got) == _runs(want), filter_string
    assert search.search_experiments("tags.`expctl.managed` = 'true'") == \
        [e for e in ClientlessStore(uri, backend, embedded=True)._managed_experiments()]


@pytest.mark.parametrize("filter_string", ["metrics.loss < 1", "params.lr = '1'", "tags.a LIKE 'x%'",
                                           "tags.`expctl.attempt` ILIKE '1'", "attributes.start_time > 0"])
def test_a_filter_it_does_not_read_goes_to_mlflows_client(seeded: tuple[str, str], filter_string: str) -> None:
    uri, backend = seeded
    store, reference = MlflowStore(uri, backend, embedded=True), by_client(uri, backend)
    ids = [str(e.experiment_id) for e in reference.client.search_experiments()]
    with pytest.raises(Unsupported):
        SqliteSearch(Path(uri.removeprefix("sqlite:///"))).search_runs(ids, filter_string, [])
    assert _runs(store.search(ids, filter_string)) == _runs(reference.search(ids, filter_string))
    assert store.local is not None, "one search it does not read does not stop the others"


def test_a_schema_revision_it_does_not_know_goes_to_mlflows_client(seeded: tuple[str, str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A store migrated by an MLflow release it was not checked against (here: none is known)."""
    uri, backend = seeded
    monkeypatch.setattr(sqlite_search, "KNOWN_REVISIONS", {"0" * 12: "a release of the future"})
    store = MlflowStore(uri, backend, embedded=True)
    got, want = store.view(), by_client(uri, backend).view()
    assert store.local is None, "the schema stays unknown for the session"
    assert got.records == want.records and len(got.records) == RUNS
    assert store.audit_entries() == by_client(uri, backend).audit_entries()


def test_a_store_not_created_yet_holds_nothing_and_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / ".expctl" / "mlflow.db"
    store = ClientlessStore(f"sqlite:///{db}", "local", embedded=True)
    view = store.view()
    assert view.records == [] and view.open_audits == []
    assert store.audit_entries() == []
    assert not db.exists()


def test_reads_are_one_snapshot_while_mlflow_writes(tmp_path: Path) -> None:
    """Runs are created one by one (newest first in the search, so that MLflow's offset pages would see one
    twice) while searches of small pages run: each search sees exactly the runs committed before it, once."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    writer = MlflowStore(uri, "w", embedded=True)
    experiment_id = writer.experiment_id("written-meanwhile")
    search = SqliteSearch(tmp_path / "mlflow.db")
    total, done = 60, threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(total):
                writer.client.create_run(experiment_id, start_time=1_000 + i, tags={"seq": str(i), "k": "v"})
        except BaseException as exc:  # reported by the test
            failures.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=write)
    thread.start()
    seen: list[int] = []
    while not done.is_set() or not seen or seen[-1] < total:
        finished = done.is_set()  # before the search: a search that began earlier may miss the last run
        runs = search.search_runs([experiment_id], "tags.k = 'v'", ["attributes.start_time DESC"], page=3)
        numbers = [int(r.data.tags["seq"]) for r in runs]
        assert numbers == list(range(len(numbers)))[::-1], numbers  # the first n, newest first, each once
        seen.append(len(numbers))
        if finished and len(numbers) < total:
            break
    thread.join()
    assert not failures, failures
    assert seen[-1] == total and seen == sorted(seen)


def _imported(proc: subprocess.CompletedProcess[str]) -> set[str]:
    """The top-level packages a ``python -X importtime`` process imported."""
    names = (line.rsplit("|", 1)[-1] for line in proc.stderr.splitlines() if line.startswith("import time:"))
    return {name.strip().split(".")[0] for name in names}


def test_read_commands_and_a_no_op_plan_never_import_mlflow(tmp_path: Path) -> None:
    experiment = "defaults:\n  - config\n  - _self_\nexpctl:\n  command: [python, -c, pass]\n"
    repo = minimal_repo(tmp_path / "repo", {"experiments/quick.yaml": experiment})
    repo.write(".gitignore", ".expctl/\n")
    repo.commit("ignore the state")
    try:
        for _ in range(2):  # the second apply finds the run finished and syncs it
            applied = e2e.expctl(repo.path, "apply", "-y", "--wait", "--timeout", "120")
            assert applied.returncode == 0, applied.stdout + applied.stderr
        run = json.loads(e2e.expctl(repo.path, "status", "--output", "json").stdout)[0]["run"]
        for args in (["plan"], ["status"], ["history"], ["describe", run], ["logs", run]):
            proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "expctl", *args], cwd=repo.path,
                                  capture_output=True, text=True, env=e2e.clean_env(), timeout=120, check=False)
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr[-2000:])
            assert not _imported(proc) & {"mlflow", "sqlalchemy", "alembic"}, args
        assert "No changes." in e2e.expctl(repo.path, "plan").stdout
    finally:
        e2e.stop_jobs(repo.path)
