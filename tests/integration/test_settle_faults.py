"""Crash, interrupt and concurrency faults around settling (``tracking/mlflow_ledger``), end to end."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

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
