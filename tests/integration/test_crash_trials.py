"""Crash trials on the local backend: ``expctl apply`` SIGKILLed at a seeded random crash point, 30 times.

Each trial commits a new sweep (two quick runs of two replicas each), runs ``apply -y`` with
``EXPCTL_TEST_CRASH_SEED=<seed>:<p>`` (every crash point — MLflow run ensured or not, job state written or not,
replicas half started — kills the process with probability p, reproducibly), then a plain rerun. After every
trial: exactly one job and one MLflow run per (run key, attempt), every run finished successfully, and the audit
trail is complete: the record a killed apply wrote as an intent is completed by the rerun, so every job that
exists was audited.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import e2e
from tests.support.forked_cli import forked_cli
from tests.support.gitrepo import GitRepo

pytestmark = pytest.mark.integration

TRIALS = 30


@pytest.fixture
def project(tmp_path: Path) -> Iterator[GitRepo]:
    repo = e2e.make_project(tmp_path / "repo", {}, parallelism=4)
    yield repo
    e2e.stop_jobs(repo.path)


def experiment(trial: int) -> str:
    return e2e.experiment(quick=True, sweep={"optimizer.lr": f"{trial}.1,{trial}.2"},
                          expctl="  replicas: 2\n"
                                 "  retries: {failures: [infrastructure], max_attempts: 3, backoff_seconds: 0}\n")


def test_thirty_seeded_crashes_each_converge_on_rerun(project: GitRepo, mlflow_server: Any) -> None:
    name = f"trial-{uuid.uuid4().hex[:8]}"
    env = {"MLFLOW_TRACKING_URI": mlflow_server.uri, "EXPCTL_BACKEND": None, "EXPCTL_TEST_CRASH_AT": None,
           "CI": "1"}
    crashes = 0
    for trial in range(TRIALS):
        project.write(f"experiments/{name}.yaml", experiment(trial))
        project.commit(f"trial {trial}")
        crashed = forked_cli(project.path, ["apply", "-y"], {**env, "EXPCTL_TEST_CRASH_SEED": f"{trial}:0.3"})
        assert crashed.crashed or crashed.returncode == 0, (trial, crashed)
        crashes += crashed.crashed
        rerun = forked_cli(project.path, ["apply", "-y", "--wait", "--timeout", "120"], env)
        assert rerun.returncode == 0, (trial, rerun)
        assert "Traceback" not in rerun.stderr

        jobs = e2e.jobs_per_key(project.path)
        runs = e2e.mlflow_runs(mlflow_server.uri, [name], deleted_too=True)
        assert set(jobs.values()) == {1}, (trial, jobs)  # one job per (run key, attempt)
        assert e2e.attempts_per_key(runs) == jobs, trial  # and one MLflow run each, never a duplicate
        states = e2e.run_states(project.path)
        latest: dict[str, dict[str, Any]] = {}
        for state in states.values():
            if state["run_key"] not in latest or state["attempt"] > latest[state["run_key"]]["attempt"]:
                latest[state["run_key"]] = state
        assert len(latest) == 2 * (trial + 1)
        assert {s["phase"] for s in latest.values()} == {"Succeeded"}, trial  # every run finished
    assert crashes >= TRIALS // 2  # the seeds do crash (reproducibly)
    history = forked_cli(project.path, ["history", "--experiment", name, "--output", "json", "--limit", "100000"],
                         env)
    audited = {e["run"] for e in json.loads(history.stdout)}
    states = e2e.run_states(project.path)
    assert audited == set(states), sorted(set(states) ^ audited)  # complete: no job unaudited, no phantom entry
