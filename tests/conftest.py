"""Shared fixtures: real git repositories in temporary directories."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.gitrepo import GitRepo, minimal_repo


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[[dict[str, str]], GitRepo]:
    def make(experiments: dict[str, str]) -> GitRepo:
        return minimal_repo(tmp_path / "repo", experiments)

    return make
