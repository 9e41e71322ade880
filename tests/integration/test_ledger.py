"""Settled runs leave the search (``tracking/mlflow/ledger``), end to end: real git, real ``mlflow server`` (and
the embedded store), the local backend with trivial jobs.

* finished runs settle at the apply after the one that finished them; a no-op plan then searches only the
  open runs (plus the ledger), and still knows every settled run: a new commit creates only the new points;
* a damaged ledger (a hand-edited part) and a deleted one are read around (a warning, every settled run read
  by a second search: the plan stays right) and rebuilt by the next apply;
* a crash between the ledger's batch and the flips: the next plan is still right and the next apply finishes.
Never a duplicate job or MLflow run.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support import e2e, jobs
from tests.support.gitrepo import GitRepo
from tests.support.mlflow_server import MlflowServer
from tests.support.proxy import FaultProxy
from tests.support.settling import apply_between_pages, finished, sweep

pytestmark = pytest.mark.integration

LEDGER_TAG = "expctl.ledger.local"


def project(tmp_path: Path, name: str, points: int, repos: list[GitRepo]) -> GitRepo:
    repo = e2e.make_project(tmp_path / "repo", {f"{name}/sweep": sweep(points)}, parallelism=4)
    repos.append(repo)
    return repo


def client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def settled_after_applies(repo: GitRepo, uri: str | None, experiment: str, points: int) -> list[Any]:
    """Apply (and wait) until every run of ``experiment`` is settled; its runs."""
    where = uri or e2e.embedded_uri(repo.path)
    waited = e2e.expctl(repo.path, "apply", "-y", "--wait", tracking_uri=uri)
    assert waited.returncode == 0, waited.stderr
    for _ in range(3):
        runs = e2e.mlflow_runs(where, [experiment])
        if len(runs) == points and all(r.data.tags["expctl.managed"] == "settled" for r in runs):
            return runs
        again = e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri)
        assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    raise AssertionError(f"not settled: {[r.data.tags['expctl.managed'] for r in runs]}")


def no_duplicates(repo: GitRepo, uri: str, experiment: str, points: int) -> None:
    jobs = e2e.jobs_per_key(repo.path)
    assert len(jobs) == points and set(jobs.values()) == {1}, jobs
    assert e2e.attempts_per_key(e2e.mlflow_runs(uri, [experiment], deleted_too=True)) == jobs


def no_changes(repo: GitRepo, uri: str | None) -> str:
    planned = e2e.expctl(repo.path, "plan", "--detailed-exitcode", tracking_uri=uri)
    assert planned.returncode == 0 and "No changes." in planned.stdout, planned.stdout + planned.stderr
    assert "Traceback" not in planned.stderr
    return planned.stderr


def test_settled_runs_leave_the_search_and_plans_still_know_them(tmp_path: Path, mlflow_server: MlflowServer,
                                                                  repos: list[GitRepo]) -> None:
    name = f"led{uuid.uuid4().hex[:6]}"
    exp = f"{name}/sweep"
    repo = project(tmp_path, name, 6, repos)
    runs = settled_after_applies(repo, mlflow_server.uri, exp, 6)

    # the ledger run, named by the audit experiment's tag, holds them; the search of open runs does not
    mlflow = client(mlflow_server.uri)
    audit = mlflow.get_experiment_by_name("expctl-audit")
    ledger = mlflow.get_run(audit.tags[LEDGER_TAG])
    assert ledger.data.tags["expctl.ledger"] == "true" and ledger.info.status == "FINISHED"
    open_runs = mlflow.search_runs([r.info.experiment_id for r in runs[:1]],
                                   "tags.`expctl.managed` = 'true' and tags.`expctl.backend` = 'local'")
    assert not {r.info.run_id for r in open_runs} & {r.info.run_id for r in runs}

    # a no-op plan: one search of the open runs (the ledger run among them), nothing else
    with FaultProxy(mlflow_server.uri) as proxy:
        assert "damaged" not in no_changes(repo, proxy.uri)
        counts = proxy.take()
    assert counts == {"experiments/search": 1, "runs/search": 1}, counts
    # the jobs themselves gone (as Kubernetes' TTL deletes finished jobs): only the ledger remembers them
    for run_dir in (repo.path / ".expctl" / "runs").iterdir():
        shutil.rmtree(run_dir)
    assert "damaged" not in no_changes(repo, mlflow_server.uri)
    status = e2e.expctl(repo.path, "status", "--all", "-o", "json", tracking_uri=mlflow_server.uri)
    assert status.returncode == 0, status.stderr
    mine = [r for r in json.loads(status.stdout) if r["experiment"] == exp]
    assert len(mine) == 6 and {(r["state"], r["live"]) for r in mine} == {("Succeeded", False)}, mine

    # a new commit with two more points: only those are created (the settled six are known)
    repo.write(f"experiments/{name}/sweep.yaml", sweep(8))
    repo.commit("two more points")
    plan = e2e.plan_json(repo.path, tracking_uri=mlflow_server.uri)
    assert [c["action"] for c in e2e.writes(plan, {exp})] == ["create", "create"], plan
    applied = e2e.expctl(repo.path, "apply", "-y", "--wait", tracking_uri=mlflow_server.uri)
    assert applied.returncode == 0, applied.stderr
    assert len(e2e.jobs_per_key(repo.path)) == 2
    attempts = e2e.attempts_per_key(e2e.mlflow_runs(mlflow_server.uri, [exp], deleted_too=True))
    assert len(attempts) == 8 and set(attempts.values()) == {1}, attempts


def test_a_damaged_or_missing_ledger_is_read_around_then_rebuilt(tmp_path: Path, repos: list[GitRepo]) -> None:
    name = f"led{uuid.uuid4().hex[:6]}"
    exp = f"{name}/sweep"
    repo = project(tmp_path, name, 5, repos)  # the embedded store: MLflow's client, not plain REST
    uri = e2e.embedded_uri(repo.path)
    settled_after_applies(repo, None, exp, 5)
    mlflow = client(uri)
    first = mlflow.get_experiment_by_name("expctl-audit").tags[LEDGER_TAG]

    # a hand-edited part: the plan warns in one line and stays right (every settled run read by a search)
    part = next(key for key in mlflow.get_run(first).data.tags if key.endswith(".0000"))  # of batch 0
    mlflow.set_tag(first, part, "not what expctl wrote")
    warned = no_changes(repo, None)
    assert "ledger of settled local runs in MLflow is damaged" in warned and "checksum" in warned, warned
    assert e2e.expctl(repo.path, "apply", "-y").returncode == 0  # rebuilds it
    second = mlflow.get_experiment_by_name("expctl-audit").tags[LEDGER_TAG]
    replaced = mlflow.get_run(first).data.tags
    assert second != first and replaced["expctl.ledger"] == replaced["expctl.managed"] == "replaced"
    assert "damaged" not in no_changes(repo, None)

    # the ledger run deleted: the same — even when a leftover ledger (a crash between creating one and naming
    # it) is there to be read instead: it does not hold what the deleted one held
    audit = mlflow.get_experiment_by_name("expctl-audit").experiment_id
    mlflow.create_run(audit, tags={"expctl.ledger": "true", "expctl.managed": "true", "expctl.backend": "local"})
    assert "damaged" not in no_changes(repo, None)
    mlflow.delete_run(second)
    assert "its run is missing" in no_changes(repo, None)
    assert e2e.expctl(repo.path, "apply", "-y").returncode == 0
    assert "damaged" not in no_changes(repo, None)
    no_duplicates(repo, uri, exp, 5)


def test_a_crash_between_the_ledger_and_the_flips_converges(tmp_path: Path, repos: list[GitRepo]) -> None:
    name = f"led{uuid.uuid4().hex[:6]}"
    exp = f"{name}/sweep"
    repo = project(tmp_path, name, 4, repos)
    uri = e2e.embedded_uri(repo.path)
    assert e2e.expctl(repo.path, "apply", "-y").returncode == 0
    finished(repo, 4)
    # this apply finishes the runs in MLflow and keeps their logs: they settle at the next one, which crashes
    assert e2e.expctl(repo.path, "apply", "-y").returncode == 0
    crashed = e2e.expctl(repo.path, "apply", "-y", EXPCTL_TEST_CRASH_AT="after-ledger-batch:1")
    assert crashed.returncode == -9, crashed.stderr
    runs = e2e.mlflow_runs(uri, [exp])
    assert {r.data.tags["expctl.managed"] for r in runs} == {"true"}  # in the ledger, not flipped yet
    no_changes(repo, None)
    assert e2e.expctl(repo.path, "apply", "-y").returncode == 0
    assert {r.data.tags["expctl.managed"] for r in e2e.mlflow_runs(uri, [exp])} == {"settled"}
    assert "damaged" not in no_changes(repo, None)
    no_duplicates(repo, uri, exp, 4)


FAIL_FIRST = ("  command: [python, -c, \"import os, sys; sys.exit(os.environ['EXPCTL_ATTEMPT'] == '1')\"]\n"
              "  retries: {max_attempts: 2, failures: [code], backoff_seconds: 60}\n")


def test_a_sweeps_parent_settles_and_a_retry_takes_it_back(tmp_path: Path, mlflow_server: MlflowServer,
                                                          repos: list[GitRepo]) -> None:
    """The parent run settles with its points; a retry at the same commit writes to it again, which takes it
    back into the search first (the ledger's copy is older), and it settles again with the new summary."""
    name = f"led{uuid.uuid4().hex[:6]}"
    exp, uri = f"{name}/sweep", mlflow_server.uri
    repo = e2e.make_project(tmp_path / "repo", {f"{name}/sweep": e2e.experiment(
        sweep={"seed": "range(0,2)"}, expctl=FAIL_FIRST)}, parallelism=4)
    repos.append(repo)
    mlflow = client(uri)

    def parent() -> Any:
        experiment = mlflow.get_experiment_by_name(exp).experiment_id
        parents = [r for r in mlflow.search_runs([experiment], max_results=100)
                   if r.data.tags.get("expctl.parent") == "true"]
        assert len(parents) == 1, parents  # one per (experiment, commit), never a second
        return parents[0]

    started = time.monotonic()
    assert e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri).returncode == 0
    finished(repo, 2, "Failed")  # (not --wait: that would wait for the retries too)
    for _ in range(3):
        if parent().data.tags["expctl.managed"] == "settled":
            break
        assert e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri).returncode == 0
    first = parent()
    assert first.data.tags["expctl.managed"] == "settled" and first.info.status == "FAILED"
    assert {r.data.tags["expctl.managed"] for r in e2e.mlflow_runs(uri, [exp])} == {"settled"}
    # a precondition: the runs settled before their retries were due (no second attempt yet)
    assert sorted(e2e.attempts_per_key(e2e.mlflow_runs(uri, [exp], deleted_too=True)).values()) == [1, 1], \
        "the retries came before the runs settled"

    time.sleep(max(0.0, 61 - (time.monotonic() - started)))
    assert e2e.expctl(repo.path, "apply", "-y", "--wait", tracking_uri=uri).returncode == 0  # the retries
    for _ in range(3):
        runs = e2e.mlflow_runs(uri, [exp])
        if parent().data.tags["expctl.managed"] == "settled" and \
                {r.data.tags["expctl.managed"] for r in runs} == {"settled"}:
            break
        assert e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri).returncode == 0
    again = parent()
    assert again.info.run_id == first.info.run_id and again.info.status == "FINISHED"
    assert again.data.tags["expctl.managed"] == "settled"
    assert again.data.tags["expctl.sweep.summary"] != first.data.tags["expctl.sweep.summary"]
    assert sorted(e2e.attempts_per_key(e2e.mlflow_runs(uri, [exp], deleted_too=True)).values()) == [1, 1, 1, 1]

    # settled from an up-to-date copy: another apply writes nothing to any run, a plan reads two pages
    with FaultProxy(uri) as proxy:
        assert e2e.expctl(repo.path, "apply", "-y", tracking_uri=proxy.uri).returncode == 0
        assert "damaged" not in no_changes(repo, proxy.uri)
        counts = proxy.take()
    writes = {path: n for path, n in counts.items() if not path.endswith(("/search", "/get", "get-by-name"))}
    assert not writes, counts


def test_runs_settled_while_a_plan_pages_through_the_search_are_still_seen(tmp_path: Path, repos: list[GitRepo],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A plan reads the open runs page by page; an apply that settles runs between two pages takes them out of
    the later pages. The ledger's copy on the first page predates them: a search of several pages reads the
    ledger again after them, so every run is still seen (else the plan would create them again)."""
    from expctl.tracking.mlflow.store import MlflowStore

    name = f"led{uuid.uuid4().hex[:6]}"
    exp = f"{name}/sweep"
    repo = project(tmp_path, name, 2, repos)
    uri = e2e.embedded_uri(repo.path)
    settled_after_applies(repo, None, exp, 2)  # the ledger exists: the oldest open run from now on
    repo.write(f"experiments/{name}/sweep.yaml", sweep(8))
    repo.commit("six more points")
    assert e2e.expctl(repo.path, "apply", "-y").returncode == 0
    finished(repo, 8)
    assert e2e.expctl(repo.path, "apply", "-y").returncode == 0  # finishes them: the next apply settles them
    assert {r.data.tags["expctl.managed"] for r in e2e.mlflow_runs(uri, [exp])} == {"settled", "true"}

    store = MlflowStore(uri, "local", embedded=True)
    pages = apply_between_pages(store, monkeypatch, repo, None)  # another expctl settles the six
    records = store.view().records
    assert any(run.data.tags.get("expctl.ledger") == "true" for run in pages[0]), "the ledger was not first"
    assert {r.data.tags["expctl.managed"] for r in e2e.mlflow_runs(uri, [exp])} == {"settled"}
    mine = {(r.run_key, r.attempt) for r in records if r.experiment == exp}
    assert len(mine) == 8, sorted(mine)


def test_two_applies_settling_into_one_ledger_at_once_lose_nothing(tmp_path: Path, repos: list[GitRepo]) -> None:
    """Two projects (or namespaces) on one tracking server settle under locks of their own: both read the
    same ledger, so both append the same batch number. Neither batch may overwrite the other's tags."""
    from expctl.tracking.mlflow import ledger as mlflow_ledger
    from expctl.tracking.mlflow.store import MlflowStore

    name = f"led{uuid.uuid4().hex[:6]}"
    exp = f"{name}/sweep"
    repo = project(tmp_path, name, 2, repos)
    uri = e2e.embedded_uri(repo.path)
    settled_after_applies(repo, None, exp, 2)  # a ledger with one batch
    repo.write(f"experiments/{name}/sweep.yaml", sweep(6))
    repo.commit("four more points")
    assert e2e.expctl(repo.path, "apply", "-y").returncode == 0
    finished(repo, 6)
    assert e2e.expctl(repo.path, "apply", "-y").returncode == 0  # finishes them: ready to settle

    stores = [MlflowStore(uri, "local", embedded=True) for _ in range(2)]
    views = [store.view() for store in stores]  # both read the ledger before either writes
    assert stores[0].last_ledger is not None and stores[1].last_ledger is not None
    assert stores[0].last_ledger.next_seq == stores[1].last_ledger.next_seq > 0
    ready = sorted((run for run in mlflow_ledger.candidates(views[0].index.raw, [], [], set(), stores[0].from_ledger)
                    if run.data.tags.get("expctl.parent") != "true"), key=lambda run: run.info.run_id)
    assert len(ready) == 4
    for store, half in zip(stores, (ready[:2], ready[2:]), strict=True):
        assert mlflow_ledger.settle(store, store.last_ledger, half, lambda: False) == 2

    records = MlflowStore(uri, "local", embedded=True).view().records
    mine = {(r.run_key, r.attempt) for r in records if r.experiment == exp}
    assert len(mine) == 6, sorted(mine)
    assert "damaged" not in no_changes(repo, None)


ENDS_ITS_RUN = f"  command: [python, {jobs.path('end_own_run')}]\n"


def test_a_run_another_project_settled_is_taken_back_by_its_own_writes(tmp_path: Path, mlflow_server: MlflowServer,
                                                                      repos: list[GitRepo]) -> None:
    """An apply settles the settleable runs of its repository — those of another checkout of it too (here two
    directories named alike, with no remote: the same repository label), whose jobs it cannot see. A training
    script that ends its MLflow run itself makes the run look done before its own checkout kept its logs: that
    checkout's write of the logs takes it back into the search, and it settles again — instead of its logs
    being stored again at every apply (the ledger's copy lacks them)."""
    uri = mlflow_server.uri
    other = project(tmp_path / "other", f"led{uuid.uuid4().hex[:6]}", 1, repos)
    name = f"led{uuid.uuid4().hex[:6]}"
    exp = f"{name}/sweep"
    repo = e2e.make_project(tmp_path / "repo", {f"{name}/sweep": e2e.experiment(
        sweep={"seed": "range(0,2)"}, expctl=ENDS_ITS_RUN)}, parallelism=4)
    repos.append(repo)
    assert e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri).returncode == 0
    finished(repo, 2)
    runs = e2e.mlflow_runs(uri, [exp])
    assert {r.info.status for r in runs} == {"FINISHED"} and not any("expctl.logs" in r.data.tags for r in runs)
    assert e2e.expctl(other.path, "apply", "-y", tracking_uri=uri).returncode == 0  # settles them
    assert {r.data.tags["expctl.managed"] for r in e2e.mlflow_runs(uri, [exp])} == {"settled"}

    assert e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri).returncode == 0  # keeps their logs
    runs = e2e.mlflow_runs(uri, [exp])
    assert {(r.data.tags["expctl.managed"], r.data.tags.get("expctl.logs")) for r in runs} == {("true", "kept")}
    assert e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri).returncode == 0  # settles them again
    assert {r.data.tags["expctl.managed"] for r in e2e.mlflow_runs(uri, [exp])} == {"settled"}
    with FaultProxy(uri) as proxy:
        assert e2e.expctl(repo.path, "apply", "-y", tracking_uri=proxy.uri).returncode == 0
        counts = proxy.take()
    writes = {path: n for path, n in counts.items() if not path.endswith(("/search", "/get", "get-by-name"))}
    assert not writes, counts
