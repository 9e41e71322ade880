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
    code, out, err, took = run(repo, proxy, "plan")
    assert code == 0, err
    assert "4 to create" in out
    assert rule.hits == rule.times if rule.times > 0 else rule.hits >= 1
    assert took < 15


def test_a_connection_reset_is_one_line_or_retried(repo: GitRepo, proxy: FaultProxy) -> None:
    proxy.add(Rule("*", API, "reset-before", times=1))
    code, _, err, took = run(repo, proxy, "plan")
    assert took < 15
    assert code == 0 or "MLflow at" in one_error(err), err


@pytest.mark.parametrize(("rule", "expected"), [
    (Rule("*", API, "status", times=-1, status=500), "MLflow at http://127.0.0.1:"),
    (Rule("GET", r"^/health", "status", times=-1, status=503), "is unhealthy: /health answered HTTP 503"),
], ids=["persistent 500", "unhealthy"])
def test_a_failing_server_fails_every_command_fast_in_one_line(repo: GitRepo, proxy: FaultProxy, rule: Rule,
                                                               expected: str) -> None:
    proxy.add(rule)
    for args in (("plan",), ("apply", "-y"), ("status", "--all"), ("history",)):
        code, _, err, took = run(repo, proxy, *args)
        assert code == 1, (args, err)
        assert expected in one_error(err), (args, err)
        assert took < 15, (args, took)
    assert not (repo.path / ".expctl" / "runs").exists() or not list((repo.path / ".expctl" / "runs").iterdir())


def test_a_dead_server_fails_fast(repo: GitRepo, proxy: FaultProxy) -> None:
    proxy.stop()
    code, _, err, took = run(repo, proxy, "plan")
    assert code == 1 and "is unreachable" in one_error(err)
    assert took < 15


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
    code, out, err, _ = run(repo, proxy, "apply", "-y", "--wait", "--timeout", "120")
    assert code == 0, out + err
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
