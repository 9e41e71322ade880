"""Faults injected between expctl and a real ``mlflow server`` (``tests/support/proxy.py``).

Transient faults (a few 5xx, a 429 with Retry-After, a connection reset, a slow answer) are absorbed by the
bounded retries; a persistently failing or unhealthy server fails every command within 15 s in one line; a
server that dies in the middle of an apply leaves nothing that a rerun does not converge: exactly one MLflow
run and one job per (run key, attempt).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from expctl.cli import main
from tests.support import e2e
from tests.support.gitrepo import GitRepo, minimal_repo
from tests.support.proxy import FaultProxy, Rule

pytestmark = pytest.mark.integration

API = r"^/api/"
EXPERIMENT = ("defaults:\n  - config\n  - _self_\nexpctl:\n  kind: local\n  command: [python, -c, pass]\n"
              "hydra:\n  sweeper:\n    params:\n      seed: 1,2,3,4\n")


@pytest.fixture
def proxy(mlflow_server: Any) -> Iterator[FaultProxy]:
    fp = FaultProxy(upstream=mlflow_server.uri.removeprefix("http://")).start()
    yield fp
    fp.close()


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[GitRepo]:
    """A project with one experiment of four quick runs, named uniquely (the MLflow server is shared)."""
    name = f"faulty-{uuid.uuid4().hex[:8]}"
    repo = minimal_repo(tmp_path / "repo", {f"experiments/{name}.yaml": EXPERIMENT, ".gitignore": ".expctl/\n"})
    repo.experiment = name  # type: ignore[attr-defined]
    yield repo
    e2e.stop_jobs(repo.path)


def run(repo: GitRepo, proxy: FaultProxy, *args: str) -> tuple[int, str, str, float]:
    old = os.getcwd()
    os.chdir(repo.path)
    started = time.monotonic()
    try:
        result = CliRunner().invoke(main, list(args), env={"MLFLOW_TRACKING_URI": proxy.url, "EXPCTL_BACKEND": None})
    finally:
        os.chdir(old)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr, time.monotonic() - started


def attempts_bounded(proxy: FaultProxy) -> None:
    """A command failed or got through fast because its attempts are bounded, not because the machine was quick:
    no MLflow endpoint was sent more than the first try and the two retries expctl allows
    (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` 2, ``tracking/mlflow/http_bounds.py``) — a command that waited out
    MLflow's own retries (7, with backoff up to 2 minutes) would show more. The test's timeout (pytest-timeout)
    is the guard against a hang."""
    counts = proxy.take()
    assert max(counts.values(), default=0) <= 3, counts


def one_error(err: str) -> str:
    errors = [ln for ln in err.strip().splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.mark.parametrize("rule", [
    Rule("*", API, "status", times=2, status=503),
    Rule("*", API, "status", times=1, status=429, retry_after=1),
    Rule("*", API, "status", times=1, status=502),
    Rule("*", API, "delay", times=-1, delay=2.0),
], ids=["two 503s", "429 with Retry-After", "a 502", "slow answers"])
def test_transient_faults_are_absorbed(repo: GitRepo, proxy: FaultProxy, rule: Rule) -> None:
    proxy.add(rule)
    code, out, err, _ = run(repo, proxy, "plan")
    assert code == 0, err
    assert "4 to create" in out
    assert rule.hits == rule.times if rule.times > 0 else rule.hits >= 1
    attempts_bounded(proxy)  # slow answers too: waited for, not resent


def test_a_connection_reset_is_one_line_or_retried(repo: GitRepo, proxy: FaultProxy) -> None:
    proxy.add(Rule("*", API, "reset-before", times=1))
    code, _, err, _ = run(repo, proxy, "plan")
    attempts_bounded(proxy)
    assert code == 0 or "MLflow at" in one_error(err), err


@pytest.mark.parametrize(("rule", "expected"), [
    (Rule("*", API, "status", times=-1, status=500), "MLflow at http://127.0.0.1:"),
    (Rule("GET", r"^/health", "status", times=-1, status=503), "is unhealthy: /health answered HTTP 503"),
], ids=["persistent 500", "unhealthy"])
def test_a_failing_server_fails_every_command_fast_in_one_line(repo: GitRepo, proxy: FaultProxy, rule: Rule,
                                                               expected: str) -> None:
    proxy.add(rule)
    for args in (("plan",), ("apply", "-y"), ("status", "--all"), ("history",)):
        code, _, err, _ = run(repo, proxy, *args)
        assert code == 1, (args, err)
        assert expected in one_error(err), (args, err)
        attempts_bounded(proxy)
    assert not (repo.path / ".expctl" / "runs").exists() or not list((repo.path / ".expctl" / "runs").iterdir())


def test_a_dead_server_fails_fast(repo: GitRepo, proxy: FaultProxy) -> None:
    proxy.stop()
    code, _, err, _ = run(repo, proxy, "plan")
    assert code == 1 and "is unreachable" in one_error(err)


@pytest.mark.parametrize("nth", [3])
def test_server_dies_mid_apply_then_rerun_converges(repo: GitRepo, proxy: FaultProxy, mlflow_server: Any,
                                                    nth: int) -> None:
    """The server goes away at the n-th write (run created, tagged, ...); the rerun finds what was created."""
    proxy.add(Rule("POST", r"^/api/2\.0/mlflow/(runs|experiments)/", "die", times=1, nth=nth))
    code, out, err, _ = run(repo, proxy, "apply", "-y")
    assert code != 0, out
    assert "Traceback" not in err
    # one line per failed change (the progress line, then the error), nothing else
    assert all(ln.startswith(("error: ", "warning: ", "  ")) for ln in err.splitlines() if ln.strip()), err
    proxy.start()
    # the rerun is a new process, as after a real crash: in this one MLflow's client keeps its pooled
    # connections to the proxy that died (its HTTP session is per process), which a new process has not
    rerun = e2e.expctl(repo.path, "apply", "-y", "--wait", "--timeout", "120", tracking_uri=proxy.url,
                       EXPCTL_BACKEND="local")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    runs = e2e.mlflow_runs(mlflow_server.uri, [repo.experiment], deleted_too=True)  # type: ignore[attr-defined]
    per_key = e2e.attempts_per_key(runs)
    jobs = e2e.jobs_per_key(repo.path)
    assert len(jobs) == 4 and set(jobs.values()) == {1}
    assert set(per_key.values()) == {1}
    assert set(per_key) == set(jobs)


def test_wait_outlives_a_short_tracking_outage(tmp_path: Path, proxy: FaultProxy) -> None:
    """``apply --wait`` keeps polling through an MLflow outage (one warning when it starts, one line when it
    ends) instead of ending hours of waiting on the first failed observe; the runs finish, tracked once."""
    import threading

    name = f"outage-{uuid.uuid4().hex[:8]}"
    slow = EXPERIMENT.replace("[python, -c, pass]", "[python, -c, 'import time; time.sleep(8)']")
    repo = minimal_repo(tmp_path / "repo", {f"experiments/{name}.yaml": slow, ".gitignore": ".expctl/\n"})
    runs = repo.path / ".expctl" / "runs"

    def waiting() -> bool:
        """The apply is in its wait loop: its audit record was closed (runs/update), then it observed again."""
        paths = [path for method, path, _ in list(proxy.seen) if method == "POST"]
        closed = [i for i, path in enumerate(paths) if path.endswith("/runs/update")]
        return bool(closed) and any(path.endswith("/runs/search") for path in paths[closed[0] + 1:])

    def outage() -> None:
        deadline = time.monotonic() + 120
        while not waiting() and time.monotonic() < deadline:
            time.sleep(0.05)
        proxy.stop()  # the runs sleep 8 s: several of the wait loop's observes fall in the outage
        time.sleep(4)
        proxy.start()

    cut = threading.Thread(target=outage, daemon=True)
    cut.start()
    try:
        code, out, err, _ = run(repo, proxy, "apply", "-y", "--wait", "--timeout", "180")
    finally:
        cut.join(timeout=130)
        e2e.stop_jobs(repo.path)
    assert code == 0, out + err
    assert "Traceback" not in err
    assert len([ln for ln in err.splitlines() if "still waiting" in ln]) == 1, err
    assert "reachable again" in err and "Finished: 4 succeeded." in out, out + err
    assert runs.is_dir() and set(e2e.jobs_per_key(repo.path).values()) == {1}
    per_key = e2e.attempts_per_key(e2e.mlflow_runs(proxy.url, [name], deleted_too=True))
    assert len(per_key) == 4 and set(per_key.values()) == {1}


# -- exactly once, also when an answer is lost: the request reaches the server, its answer never comes back --------

def _history(repo: GitRepo, proxy: FaultProxy) -> list[dict[str, Any]]:
    import json

    code, out, err, _ = run(repo, proxy, "history", "--output", "json", "--limit", "1000")
    assert code == 0, err
    return [e for e in json.loads(out) if e["experiment"] == repo.experiment]  # type: ignore[attr-defined]


def _all_runs(tracking_uri: str, name: str) -> list[Any]:
    """Every run of the experiment, sweep parents and deleted runs too."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    return list(client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL, max_results=1000))


@pytest.mark.parametrize("nth", [1, 2, 3, 6], ids=["audit record", "sweep parent", "first point", "last point"])
def test_a_lost_create_answer_makes_no_duplicate(repo: GitRepo, proxy: FaultProxy, mlflow_server: Any,
                                                 nth: int) -> None:
    """The n-th ``runs/create`` of an apply is applied by the server and its answer lost: one MLflow run per
    (run key, attempt) all the same, none left RUNNING, one sweep parent, each create once in ``history``, also
    after the next apply (which completes the audit records a killed apply left open)."""
    rule = Rule("POST", r"/runs/create$", "reset-after", times=1, nth=nth)
    proxy.add(rule)
    code, out, err, _ = run(repo, proxy, "apply", "-y", "--wait", "--timeout", "120")
    assert rule.hits == 1, proxy.seen
    assert code == 0, out + err
    name = repo.experiment  # type: ignore[attr-defined]
    every = _all_runs(mlflow_server.uri, name)
    per_key = e2e.attempts_per_key([r for r in every if "expctl.run_key" in r.data.tags])
    assert len(per_key) == 4 and set(per_key.values()) == {1}, per_key
    assert len([r for r in every if r.data.tags.get("expctl.parent") == "true"]) == 1
    assert all(r.info.status == "FINISHED" for r in every), [(r.info.run_name, r.info.status) for r in every]
    code, out, err, _ = run(repo, proxy, "apply", "-y")  # would complete a duplicate audit record left open
    assert code == 0, out + err
    creates = [e["run"] for e in _history(repo, proxy) if e["action"] == "create"]
    assert len(creates) == 4 and len(set(creates)) == 4, creates


def test_a_lost_create_answer_twice_in_a_row_is_still_one_run(repo: GitRepo, proxy: FaultProxy,
                                                              mlflow_server: Any) -> None:
    """Every create's answer is lost once (the audit record's, the parent's, each point's): still exactly once."""
    rule = Rule("POST", r"/runs/create$", "reset-after", times=6)
    proxy.add(rule)
    code, out, err, _ = run(repo, proxy, "apply", "-y", "--wait", "--timeout", "120")
    assert code == 0, out + err
    assert rule.hits == 6
    every = _all_runs(mlflow_server.uri, repo.experiment)  # type: ignore[attr-defined]
    assert len(every) == 5 and all(r.info.status == "FINISHED" for r in every)
    assert len([e for e in _history(repo, proxy) if e["action"] == "create"]) == 4


def test_a_duplicate_left_by_an_older_expctl_is_closed(repo: GitRepo, proxy: FaultProxy, mlflow_server: Any) -> None:
    """A run that an older expctl's blind resend left next to the real one (same identity, no params, no job):
    the next apply keeps the one with the job and closes the orphan (KILLED, tagged, deleted), not the other way."""
    from mlflow import MlflowClient

    code, out, err, _ = run(repo, proxy, "apply", "-y", "--wait", "--timeout", "120")
    assert code == 0, out + err
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    real = next(r for r in _all_runs(mlflow_server.uri, repo.experiment)  # type: ignore[attr-defined]
                if "expctl.run_key" in r.data.tags)
    keep = ("expctl.run_key", "expctl.spec_hash", "expctl.attempt", "expctl.managed", "expctl.backend",
            "expctl.experiment", "mlflow.source.name", "mlflow.runName")
    # as the older expctl left it: open (managed 'true'), whether or not the real run has settled since
    orphan = client.create_run(real.info.experiment_id, start_time=(real.info.start_time or 0) - 1000,
                               tags={**{k: real.data.tags[k] for k in keep if k in real.data.tags},
                                     "expctl.managed": "true"})
    code, out, err, _ = run(repo, proxy, "apply", "-y")
    assert code == 0, out + err
    assert "0 to create" in out or "No changes" in out, out
    closed = client.get_run(orphan.info.run_id)
    assert closed.info.status == "KILLED" and closed.info.lifecycle_stage == "deleted"
    assert closed.data.tags.get("expctl.duplicate_of") == real.info.run_id
    assert client.get_run(real.info.run_id).info.lifecycle_stage == "active"


def test_cancel_while_mlflow_fails_is_recorded_once_later(tmp_path: Path, proxy: FaultProxy) -> None:
    """``cancel`` while MLflow answers 500: the job is stopped, the cancel says it is not recorded yet (exit 3),
    and the next apply records it exactly once (run KILLED, one ``cancel`` in history)."""
    name = f"cancel-{uuid.uuid4().hex[:8]}"
    slow = EXPERIMENT.replace("[python, -c, pass]", "[python, -c, 'import time; time.sleep(600)']")
    repo = minimal_repo(tmp_path / "repo", {f"experiments/{name}.yaml": slow, ".gitignore": ".expctl/\n"})
    repo.experiment = name  # type: ignore[attr-defined]
    try:
        code, out, err, _ = run(repo, proxy, "apply", "-y")
        assert code == 0, out + err
        victims = sorted(e2e.run_states(repo.path))[:2]
        proxy.add(Rule("*", r"/runs/(update|set-tag|log-batch|create|get)", "status", status=500, times=-1))
        code, out, err, _ = run(repo, proxy, "cancel", *victims)
        assert code == 3, out + err
        assert "Traceback" not in err
        assert all(f"cancelled {v}" in out for v in victims), out
        assert sum("not yet recorded in MLflow" in ln for ln in err.splitlines()) == 2, err
        assert all(e2e.run_states(repo.path)[v].get("cancelled") for v in victims)
        proxy.clear()
        code, out, err, _ = run(repo, proxy, "apply", "-y")
        assert code == 0, out + err
        code, out, err, _ = run(repo, proxy, "apply", "-y")  # a second replay has nothing left to record
        assert code == 0, out + err
        cancels = [e["run"] for e in _history(repo, proxy) if e["action"] == "cancel"]
        assert sorted(cancels) == victims, cancels
        runs = {r.data.tags["mlflow.runName"]: r for r in e2e.mlflow_runs(proxy.url, [name])}
        assert all(runs[v].info.status == "KILLED" for v in victims)
        assert not list((repo.path / ".expctl" / "pending-audit").glob("*.json"))
    finally:
        e2e.stop_jobs(repo.path)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(repo: GitRepo, proxy: FaultProxy, status: int) -> None:
    """Three answers asking to come back in a second: waited for, the plan goes through."""
    rule = Rule("POST", r"/runs/search$", "status", status=status, retry_after=1, times=3)
    proxy.add(rule)
    code, out, err, _ = run(repo, proxy, "plan")
    assert code == 0, err
    assert rule.hits == 3 and "4 to create" in out


def test_a_retry_after_beyond_the_bound_is_rate_limited_not_unreachable(repo: GitRepo, proxy: FaultProxy) -> None:
    # its experiment exists, so the plan searches runs (on a server with no managed experiment it would not:
    # the test passed or failed by which tests the shared server had seen before)
    assert run(repo, proxy, "apply", "-y")[0] == 0
    proxy.take()
    proxy.add(Rule("POST", r"/runs/search$", "status", status=429, retry_after=3600, times=-1))
    code, _, err, _ = run(repo, proxy, "plan")
    line = one_error(err)
    assert code == 1 and "rate limiting expctl" in line and "Retry-After 3600 s" in line, err
    assert "unreachable" not in line
    assert proxy.take()["runs/search"] == 1  # it did not wait out the hour: one answer was enough to stop
