"""Issue 3, end to end: ``expctl apply`` SIGKILLed at exact points, then rerun, converges without duplicates.

The kill points are reached deterministically through the test hook ``EXPCTL_TEST_CRASH_AT=<point>:<n>``
(``expctl.apply.crash_point``; ``after-replica:<n>`` in the local backend): the n-th time the real ``expctl``
process reaches the point, it SIGKILLs itself. After a plain rerun (``apply -y --wait``) every run has
completed, and each (run key, attempt) has exactly one local job and exactly one MLflow run — counting deleted
MLflow runs too, so a duplicate created and then cleaned up would still fail the test.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import e2e
from tests.support.gitrepo import GitRepo

pytestmark = pytest.mark.integration

SWEEP = "crash-sweep"
DIST = "crash-dist"
RETRY_INFRA = "  retries: {failures: [infrastructure], max_attempts: 2, backoff_seconds: 0}\n"


@pytest.fixture
def project(tmp_path: Path) -> Iterator[GitRepo]:
    repo = e2e.make_project(tmp_path / "repo", {
        SWEEP: e2e.experiment(quick=True, sweep={"optimizer.lr": "0.1,0.2,0.3"}),
        DIST: e2e.experiment(quick=True, expctl="  replicas: 2\n" + RETRY_INFRA),
    }, parallelism=4, settings="  write_concurrency: 1\n")  # one change at a time: the n-th point is exact
    yield repo
    e2e.stop_jobs(repo.path)


def _converged(repo: GitRepo) -> tuple[dict[str, dict[str, Any]], list[Any]]:
    """Rerun apply until the end; assert one job and one MLflow run per (run key, attempt), all complete."""
    rerun = e2e.expctl(repo.path, "apply", "-y", "--wait", "--timeout", "300")
    assert rerun.returncode == 0, f"{rerun.stdout}\n{rerun.stderr}"
    assert "Finished: 4 succeeded." in rerun.stdout, rerun.stdout
    jobs = e2e.jobs_per_key(repo.path)
    runs = e2e.mlflow_runs(e2e.embedded_uri(repo.path), [SWEEP, DIST], deleted_too=True)
    assert e2e.attempts_per_key(runs) == jobs
    assert set(jobs.values()) == {1}
    assert len({key for key, _ in jobs}) == 4
    states = e2e.run_states(repo.path)
    ids = {(s["run_key"], str(s["attempt"])): s["mlflow_run_id"] for s in states.values()}
    assert ids == {(r.data.tags["expctl.run_key"], r.data.tags["expctl.attempt"]): r.info.run_id for r in runs}
    again = e2e.expctl(repo.path, "plan", "--detailed-exitcode")
    assert again.returncode == 0 and "No changes. (4 unchanged)" in again.stdout, again.stdout
    return states, runs


def _crash(repo: GitRepo, point: str) -> None:
    crashed = e2e.expctl(repo.path, "apply", "-y", EXPCTL_TEST_CRASH_AT=point)
    assert crashed.returncode == -signal.SIGKILL, f"did not crash at {point}:\n{crashed.stdout}\n{crashed.stderr}"


# The plan creates in file order: crash-dist (2 replicas), then crash-sweep's three points.
@pytest.mark.parametrize(("point", "jobs_before", "mlflow_runs_before"), [
    ("before-ensure-run:1", 0, 0),  # nothing exists yet
    ("before-ensure-run:3", 2, 2),  # between runs, before the third run's MLflow run exists
    ("after-ensure-run:1", 0, 1),  # the MLflow run exists, its job does not
    ("after-ensure-run:3", 2, 3),
    ("after-create:2", 2, 2),  # between runs, right after a job was created
    ("after-create:4", 4, 4),  # every job created, before the apply ended (and audited)
    ("after-audit-intent:1", 0, 0),  # the audit intent is stored, nothing else
    ("before-audit-complete:1", 4, 4),  # everything applied, the audit record still open
])
def test_crash_between_tracking_and_jobs_then_rerun_converges(project: GitRepo, point: str, jobs_before: int,
                                                              mlflow_runs_before: int) -> None:
    _crash(project, point)
    assert len(e2e.run_states(project.path)) == jobs_before
    assert len(e2e.mlflow_runs(e2e.embedded_uri(project.path), [SWEEP, DIST])) == mlflow_runs_before

    states, _ = _converged(project)
    assert {s["attempt"] for s in states.values()} == {1}  # nothing needed a retry
    # The killed apply's audit record (an intent) is completed by the rerun from what it observes, and the
    # rerun audits what it applied itself: history lists every created run exactly once.
    history = e2e.expctl(project.path, "history", "--output", "json", "--limit", "100")
    audited = [e["run"] for e in json.loads(history.stdout)]
    assert sorted(audited) == sorted(states), history.stdout


def test_crash_between_replicas_retries_the_half_started_run(project: GitRepo) -> None:
    _crash(project, "after-replica:1")  # crash-dist's master-0 runs, its worker-0 was never started
    states = e2e.run_states(project.path)
    assert len(states) == 1
    (half,) = states.values()
    assert [p["replica"] for p in half["processes"]] == ["master-0"]

    states, runs = _converged(project)
    dist = sorted((s for s in states.values() if s["experiment"] == DIST), key=lambda s: s["attempt"])
    # attempt 1 reads as an interrupted start (an infrastructure failure), never as running forever
    assert [(s["attempt"], s["phase"]) for s in dist] == [(1, "Failed"), (2, "Succeeded")]
    assert dist[0]["failure"] == "infrastructure", dist[0]["message"]
    assert "start was interrupted" in dist[0]["message"] or "worker-0" in dist[0]["message"]
    assert dist[1]["name"] == dist[0]["name"] + "-r2"
    assert len(dist[1]["processes"]) == 2
    status = {(r.data.tags["expctl.attempt"], r.info.status) for r in runs
              if r.data.tags["expctl.experiment"] == DIST}
    assert status == {("1", "FAILED"), ("2", "FINISHED")}
