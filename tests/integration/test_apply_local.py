"""Issue 3, end to end: real git, real ``expctl`` processes, the local backend and real MLflow stores.

One scenario runs against the embedded sqlite store (the default) and against a real ``mlflow server``:

1. ``apply -y`` launches the sweep; a second ``apply -y`` right after says "No changes" and starts no process
   and no MLflow run (runs counted by their expctl tags);
2. editing one sweep value and committing plans exactly one create; the other run keeps its spec hash, its
   object and its MLflow run;
3. ``apply -y --wait`` follows every run to its end: a run whose code fails its first attempt
   (``trainer.fail_first_attempts: 1``, code failures retried) succeeds as ``-r2``; a run that always fails
   ends as gave-up, in the ``--wait`` summary and in the plan, never dropped.

And an unusable tracking store (nothing listening, a wrong URI scheme) is one clear line, exit 1, no job.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import e2e
from tests.support.gitrepo import GitRepo
from tests.support.mlflow_server import MlflowServer, free_port

pytestmark = pytest.mark.integration

RETRY_CODE = "  retries: {failures: [code], max_attempts: 2, backoff_seconds: 0}\n"


@pytest.fixture(params=["embedded", "server"])
def store(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None: the embedded default under .expctl/; else the URI of a real ``mlflow server``."""
    if request.param == "embedded":
        yield None
    else:
        server: MlflowServer = request.getfixturevalue("mlflow_server")
        yield server.uri


def _states(repo: Path, experiment: str) -> list[dict[str, Any]]:
    return sorted((s for s in e2e.run_states(repo).values() if s["experiment"] == experiment),
                  key=lambda s: (s["attempt"], s["name"]))


def test_apply_converges_and_follows_runs_to_the_end(tmp_path: Path, store: str | None) -> None:
    prefix = "emb" if store is None else "srv"  # the server is shared by the session: names of our own
    sweep, flaky, broken = f"{prefix}-sweep", f"{prefix}-flaky", f"{prefix}-broken"
    repo = e2e.make_project(tmp_path / "repo", {sweep: e2e.experiment(sweep={"optimizer.lr": "0.01,0.02"})})
    uri = store or e2e.embedded_uri(repo.path)
    try:
        _scenario(repo, uri, store, sweep, flaky, broken)
    finally:
        e2e.stop_jobs(repo.path)


def _scenario(repo: GitRepo, uri: str, store: str | None, sweep: str, flaky: str, broken: str) -> None:
    path = repo.path

    # 1. apply, then apply again at once: nothing new anywhere
    first = e2e.expctl(path, "apply", "-y", tracking_uri=store)
    assert first.returncode == 0, first.stderr
    assert "Applied 2 changes." in first.stdout
    launched = e2e.run_states(path)
    runs = e2e.mlflow_runs(uri, [sweep])
    assert len(launched) == 2 and len(runs) == 2

    second = e2e.expctl(path, "apply", "-y", tracking_uri=store)
    assert second.returncode == 0, second.stderr
    assert "No changes. (2 unchanged)" in second.stdout and "Applied" not in second.stdout
    after = e2e.run_states(path)
    assert after.keys() == launched.keys()
    for name, state in after.items():  # the same processes: nothing was started again
        assert state["processes"] == launched[name]["processes"]
        assert state["created_at"] == launched[name]["created_at"]
    assert sorted(r.info.run_id for r in e2e.mlflow_runs(uri, [sweep])) == sorted(r.info.run_id for r in runs)

    # 2. one sweep value edited: exactly one create; the other run keeps hash, object and MLflow run
    repo.write(f"experiments/{sweep}.yaml", e2e.experiment(sweep={"optimizer.lr": "0.01,0.03"}))
    repo.commit("lr 0.02 -> 0.03")
    plan = e2e.plan_json(path, tracking_uri=store)
    creates = e2e.writes(plan)
    assert [(c["action"], c["overrides"]) for c in creates] == [("create", ["optimizer.lr=0.03"])]
    kept = next(c for c in plan["changes"] if c["overrides"] == ["optimizer.lr=0.01"])
    kept_state = next(s for s in launched.values() if s["overrides"] == ["optimizer.lr=0.01"])
    assert (kept["action"], kept["reason"]) == ("noop", "unchanged")
    assert (kept["name"], kept["spec_hash"]) == (kept_state["name"], kept_state["spec_hash"])
    human = e2e.expctl(path, "plan", tracking_uri=store)
    assert len([ln for ln in human.stdout.splitlines() if ln.strip().startswith("+ create")]) == 1

    # 3. a run that fails once, a run that always fails; apply --wait follows everything to the end
    repo.write(f"experiments/{flaky}.yaml", e2e.experiment(fail_first_attempts=1, expctl=RETRY_CODE))
    repo.write(f"experiments/{broken}.yaml", e2e.experiment(fail_first_attempts=9, expctl=RETRY_CODE))
    repo.commit("a flaky and a broken experiment")
    waited = e2e.expctl(path, "apply", "-y", "--wait", "--timeout", "900", tracking_uri=store)
    assert waited.returncode == 0, f"{waited.stdout}\n{waited.stderr}"
    assert "Applied 3 changes." in waited.stdout
    summary = waited.stdout.strip().splitlines()[-1]
    assert summary == "Finished: 1 failed, 1 gave-up, 3 succeeded.", waited.stdout

    assert [(s["attempt"], s["phase"]) for s in _states(path, sweep)] == [(1, "Succeeded")] * 3
    assert e2e.run_states(path)[kept_state["name"]]["created_at"] == kept_state["created_at"]
    flaky_runs = _states(path, flaky)
    assert [(s["attempt"], s["phase"], s["failure"]) for s in flaky_runs] == [
        (1, "Failed", "code"), (2, "Succeeded", None)]
    assert flaky_runs[1]["name"] == flaky_runs[0]["name"] + "-r2"
    assert [(s["attempt"], s["phase"]) for s in _states(path, broken)] == [(1, "Failed"), (2, "Failed")]

    # MLflow: one run per (run key, attempt), with the status of its attempt; the retry trained and logged
    all_runs = e2e.mlflow_runs(uri, [sweep, flaky, broken], deleted_too=True)
    assert set(e2e.attempts_per_key(all_runs).values()) == {1}
    assert e2e.attempts_per_key(all_runs) == e2e.jobs_per_key(path)
    status = {(r.data.tags["expctl.experiment"], r.data.tags["expctl.attempt"]): r for r in all_runs
              if r.data.tags["expctl.experiment"] != sweep}
    assert {k: r.info.status for k, r in status.items()} == {
        (flaky, "1"): "FAILED", (flaky, "2"): "FINISHED", (broken, "1"): "FAILED", (broken, "2"): "FAILED"}
    assert "val_accuracy" in status[(flaky, "2")].data.metrics
    assert status[(broken, "2")].data.tags["expctl.failure"] == "code"

    # the plan still shows the run that gave up; nothing is left to do
    final = e2e.expctl(path, "plan", "--detailed-exitcode", tracking_uri=store)
    assert final.returncode == 0, final.stdout + final.stderr
    gave_up = [ln for ln in final.stdout.splitlines() if "gave-up" in ln]
    assert len(gave_up) == 1 and broken in gave_up[0] and "failed 2 of 2 attempts" in gave_up[0]
    # (lr=0.02 is no longer desired: shown, deleted only with --prune)
    assert final.stdout.strip().splitlines()[-1] == "No changes. (3 unchanged, 1 gave up, 1 would prune)"

    # the retries that --wait launched are audited like any applied change
    history = e2e.expctl(path, "history", "--output", "json", tracking_uri=store)
    entries = [e for e in json.loads(history.stdout) if e["experiment"] in (flaky, broken)]
    assert sorted((e["action"], e["attempt"]) for e in entries) == [
        ("create", 1), ("create", 1), ("retry", 2), ("retry", 2)]
    assert {e["who"] for e in entries} == {e2e.ADA}


@pytest.mark.parametrize("uri", ["http://127.0.0.1:{port}", "htp://127.0.0.1:{port}"],
                         ids=["server-down", "wrong-scheme"])
def test_unusable_tracking_store_is_one_line_and_starts_nothing(tmp_path: Path, uri: str) -> None:
    repo = e2e.make_project(tmp_path / "repo", {"mlflow-down": e2e.experiment(quick=True)})
    uri = uri.format(port=free_port())  # nothing listens there
    result = e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: MLflow at {uri} is ")
    assert "Traceback" not in result.stderr and "Applied" not in result.stdout
    runs = repo.path / ".expctl" / "runs"
    assert not runs.exists() or not any(runs.iterdir())
