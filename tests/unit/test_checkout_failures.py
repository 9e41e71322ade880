"""A checkout that fails says why: the machine (a full disk: infrastructure, retried) or the run (a commit that
is not there: code). Real git, with a ``git`` first on PATH that fails ``worktree add`` as a full disk does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from expctl.backends.worktrees import CheckoutError, Worktrees
from expctl.engine.workspace import _absolute
from tests.support.gitrepo import GitRepo

FULL_DISK_GIT = Path(__file__).resolve().parents[1] / "support" / "bin"


def test_a_full_disk_is_an_infrastructure_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.txt", "a")
    commit = repo.commit("a")
    monkeypatch.setenv("PATH", f"{FULL_DISK_GIT}:{os.environ['PATH']}")
    with pytest.raises(CheckoutError) as caught:
        Worktrees(repo.path, tmp_path / "wt").ensure(commit)
    assert caught.value.infrastructure and "No space left on device" in caught.value.message


def test_a_missing_commit_is_the_runs_own_failure(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.txt", "a")
    repo.commit("a")
    with pytest.raises(CheckoutError) as caught:
        Worktrees(repo.path, tmp_path / "wt").ensure("1" * 40)
    assert not caught.value.infrastructure and "is not in" in caught.value.message


@pytest.mark.parametrize(("uri", "resolved"), [
    ("sqlite:///store/mlflow.db", "sqlite:////repo/store/mlflow.db"),
    ("sqlite:///sub/../m.db?mode=ro", "sqlite:////repo/m.db?mode=ro"),
    ("sqlite:////abs/m.db", "sqlite:////abs/m.db"),
    ("sqlite:///:memory:", "sqlite:///:memory:"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
])
def test_a_relative_sqlite_store_is_the_repositorys(uri: str, resolved: str) -> None:
    assert _absolute(uri, Path("/repo")) == resolved
