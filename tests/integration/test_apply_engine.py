"""The apply engine end to end on the local backend, a real ``mlflow server`` and real git:

* request counts (through a counting proxy): an apply of N new runs costs 2 MLflow requests per run plus a
  few per apply, with no per-run search; a no-op plan costs ⌈runs/1000⌉ + 1 searches and nothing else;
* SIGINT at several points of a 50-run apply (and a second SIGINT that aborts at once): exit 130, what was
  not applied is listed, the rerun converges with no duplicate job or MLflow run, and ``history`` lists
  every created run exactly once;
* the MLflow server stopped in the middle of an apply: exit 3, one line per failed change, no traceback;
  restarted, the rerun converges and the audit trail is complete.

Jobs are trivial (``python -c pass``) and the sweeps small, to keep these fast.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import e2e
from tests.support.gitrepo import GitRepo
from tests.support.mlflow_server import MlflowServer
from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.integration

TRIVIAL = "  command: [python, -c, pass]\n"
# a dead server fails a request at once instead of after MLflow's minutes of retries
FAIL_FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


def sweep(points: int) -> str:
    return e2e.experiment(sweep={"seed": f"range(0,{points})"}, expctl=TRIVIAL)


@pytest.fixture
def prefix() -> str:
    return f"eng{uuid.uuid4().hex[:6]}"


def project(tmp_path: Path, prefix: str, points: int, concurrency: int = 4) -> GitRepo:
    return e2e.make_project(tmp_path / "repo", {f"{prefix}/sweep": sweep(points)}, parallelism=4,
                            settings=f"  write_concurrency: {concurrency}\n")


@pytest.fixture
def stopper() -> Iterator[list[GitRepo]]:
    repos: list[GitRepo] = []
    yield repos
    for repo in repos:
        e2e.stop_jobs(repo.path)


def converged(repo: GitRepo, uri: str, experiment: str, points: int) -> None:
    """Reapplied until nothing is left to do (a job whose start a kill interrupted is retried as attempt 2):
    one job and one MLflow run per (run key, attempt); every created job in history exactly once."""
    for _ in range(3):
        again = e2e.expctl(repo.path, "plan", "--detailed-exitcode", tracking_uri=uri)
        if again.returncode == 0:
            break
        assert again.returncode == 2 and "to retry" in again.stdout, again.stdout
        e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri)
    else:
        raise AssertionError(f"not converged:\n{again.stdout}")
    jobs = e2e.jobs_per_key(repo.path)
    assert len({key for key, _ in jobs}) == points and set(jobs.values()) == {1}, jobs
    runs = e2e.mlflow_runs(uri, [experiment], deleted_too=True)
    assert e2e.attempts_per_key(runs) == jobs
    history = e2e.expctl(repo.path, "history", "--experiment", experiment, "--limit", "1000", "-o", "json",
                         tracking_uri=uri)
    created = Counter(e["run"] for e in json.loads(history.stdout))
    twice = [e for e in json.loads(history.stdout) if created[e["run"]] > 1]
    assert created == Counter(list(e2e.run_states(repo.path))), f"history lists every created run once: {twice}"


def settle_what_is_settled(where: Path, prefix: str, uri: str, stopper: list[GitRepo]) -> None:
    """The session's server holds the finished runs of earlier tests: an apply settles them (one request each,
    ``tracking/mlflow/ledger``) — done first, by another project's applies, so that the counts below are the
    counted apply's own."""
    other = project(where, f"{prefix}x", 1)
    stopper.append(other)
    assert e2e.expctl(other.path, "apply", "-y", "--wait", tracking_uri=uri).returncode == 0
    assert e2e.expctl(other.path, "apply", "-y", tracking_uri=uri).returncode == 0


def test_request_counts_of_an_apply_and_a_noop_plan(tmp_path: Path, prefix: str, mlflow_server: MlflowServer,
                                                    stopper: list[GitRepo]) -> None:
    n = 20
    settle_what_is_settled(tmp_path / "other", prefix, mlflow_server.uri, stopper)
    repo = project(tmp_path, prefix, n)
    stopper.append(repo)
    with FaultProxy(mlflow_server.uri) as proxy:
        applied = e2e.expctl(repo.path, "apply", "-y", tracking_uri=proxy.uri)
        assert applied.returncode == 0, applied.stderr
        assert f"Applied {n} changes." in applied.stdout
        counts = proxy.take()
        total = sum(counts.values())
        # per new run: runs/create + runs/log-batch, no search, no get. Per apply: 1 search of experiments (no
        # runs search: none exists yet), 1 create per new experiment (the sweep's, the audit trail's), the
        # sweep's parent run, the audit intent (create) and completion (log-batch + update)
        # (the session's server may know the audit experiment already: then 1 runs/search, 1 create fewer)
        assert counts["runs/create"] == n + 2 and counts["runs/log-batch"] == n + 1, counts
        assert counts["experiments/search"] == 1 and counts["runs/update"] == 1, counts
        assert counts["experiments/create"] + counts["runs/search"] == 2, counts
        assert total == 2 * n + 7, counts

        # a second commit with n more points: the existing runs are known from the one search
        repo.write(f"experiments/{prefix}/sweep.yaml", sweep(2 * n))
        repo.commit("twice the points")
        applied = e2e.expctl(repo.path, "apply", "-y", tracking_uri=proxy.uri)
        assert f"Applied {n} changes." in applied.stdout, applied.stderr
        counts = proxy.take()
        # the first runs' jobs finished meanwhile: sync ends their runs, their logs are kept (an artifact and a
        # tag each, once per finished run) and the sweep's summary is written on its parent: not part of launching
        finished = counts["runs/update"]
        assert finished <= n + 2  # at most once per finished run, its sweep's parent, and the audit record
        assert counts["runs/create"] == n + 2 and counts["runs/search"] == 1, counts
        assert counts["experiments/search"] == 1 and "experiments/create" not in counts, counts
        assert n + 1 <= counts["runs/log-batch"] <= n + 2 + finished, counts

        planned = e2e.expctl(repo.path, "plan", tracking_uri=proxy.uri)
        assert planned.returncode == 0 and "No changes." in planned.stdout, planned.stdout
        counts = proxy.take()
        assert counts == Counter({"experiments/search": 1, "runs/search": 1}), counts
        assert sum(counts.values()) <= math.ceil(2 * n / 1000) + 3


def _interrupt(repo: GitRepo, uri: str, after_done: int, signals: int = 1) -> subprocess.CompletedProcess[str]:
    """Start an apply, SIGINT it once ``after_done`` changes were reported done (``signals`` times)."""
    proc = e2e.start_expctl(repo.path, "apply", "-y", tracking_uri=uri)
    assert proc.stderr is not None
    seen: list[str] = []
    done = 0
    for line in proc.stderr:
        seen.append(line)
        done += line.rstrip().endswith(": done")
        if done >= after_done:
            for n in range(signals):
                time.sleep(0.05 * n)  # the second one after the first was handled: two are never merged
                proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "".join(seen) + err)


def test_sigint_at_several_points_then_rerun_converges(tmp_path: Path, prefix: str, mlflow_server: MlflowServer,
                                                       stopper: list[GitRepo]) -> None:
    points = 50
    repo = project(tmp_path, prefix, points, concurrency=2)
    stopper.append(repo)
    uri = mlflow_server.uri
    created = 0
    for after in (3, 10):  # graceful: in-flight changes finish, the audit record is completed
        stopped = _interrupt(repo, uri, after)
        assert stopped.returncode == 128 + signal.SIGINT, stopped.stderr
        assert "SIGINT: finishing the changes in flight" in stopped.stderr
        assert "not applied: " in stopped.stderr and "interrupted by SIGINT" in stopped.stderr
        assert "Traceback" not in stopped.stderr
        now = len(e2e.run_states(repo.path))
        assert created + after <= now < points
        created = now
    # a second signal: out at once (130 from expctl's handler; killed by SIGINT if the apply had already reached
    # the interpreter's exit) — when it came before the audit completion, the next apply completes the record
    aborted = _interrupt(repo, uri, 5, signals=2)
    assert aborted.returncode in (128 + signal.SIGINT, -signal.SIGINT) and "Traceback" not in aborted.stderr

    rerun = e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri)
    assert rerun.returncode == 0, rerun.stderr
    converged(repo, uri, f"{prefix}/sweep", points)


def test_mlflow_stopped_mid_apply_fails_cleanly_then_converges(tmp_path: Path, prefix: str,
                                                              stopper: list[GitRepo]) -> None:
    points = 30
    repo = project(tmp_path, prefix, points, concurrency=2)
    stopper.append(repo)
    server = MlflowServer(tmp_path / "private-mlflow")
    server.start()
    try:
        proc = e2e.start_expctl(repo.path, "apply", "-y", tracking_uri=server.uri, **FAIL_FAST)
        assert proc.stderr is not None
        seen: list[str] = []
        for line in proc.stderr:
            seen.append(line)
            if line.rstrip().endswith(": done") and sum(s.rstrip().endswith(": done") for s in seen) >= 4:
                server.stop()
                break
        out, err = proc.communicate(timeout=300)
        stderr = "".join(seen) + err
        assert proc.returncode == 3, f"{out}\n{stderr}"
        assert "Traceback" not in stderr
        failed = [ln for ln in stderr.splitlines() if ln.startswith("error: ") and "-" in ln.split(":")[1]]
        assert failed, stderr
        assert all(len(ln) < 400 and "unreachable" in ln for ln in failed), failed
        assert "apply stopped: the tracking store is unreachable" in stderr
        summary = [ln for ln in out.splitlines() if ln.startswith("Applied ")]
        assert summary and "failed" in summary[0], out

        server.start()
        rerun = e2e.expctl(repo.path, "apply", "-y", tracking_uri=server.uri)
        assert rerun.returncode == 0, rerun.stderr
        converged(repo, server.uri, f"{prefix}/sweep", points)
    finally:
        server.stop()


def test_two_concurrent_applies_of_200_runs_create_each_once(tmp_path: Path, prefix: str,
                                                            stopper: list[GitRepo]) -> None:
    points = 200
    experiment = f"{prefix}/sweep"
    # parallelism 1: the jobs queue (this is about the applies, not about running 200 processes)
    repo = e2e.make_project(tmp_path / "repo", {experiment: sweep(points)}, parallelism=1)
    stopper.append(repo)
    procs = [e2e.start_expctl(repo.path, "apply", "-y") for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, f"{out}\n{err}"
    assert sorted(f"Applied {points} changes." in out for out, _ in outputs) == [False, True], outputs
    uri = e2e.embedded_uri(repo.path)
    jobs = e2e.jobs_per_key(repo.path)
    assert len(jobs) == points and set(jobs.values()) == {1}
    assert e2e.attempts_per_key(e2e.mlflow_runs(uri, [experiment], deleted_too=True)) == jobs
    history = e2e.expctl(repo.path, "history", "--limit", "1000", "-o", "json")
    assert Counter(e["run"] for e in json.loads(history.stdout)) == Counter(list(e2e.run_states(repo.path)))
