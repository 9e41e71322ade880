"""Hostile data sources, table-driven like ``test_bad_input.py`` (one line naming the path, the right exit code,
no traceback, nothing written): a dataset's source or a file in its directory that is not a regular file (a
FIFO, a device) or a symbolic link loop."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.bad_input import BASE, Case, check
from tests.support.gitrepo import GitRepo

pytestmark = pytest.mark.integration


def data_files(*links: tuple[str, str], fifo: str = "") -> Callable[[GitRepo], None]:
    """Data under the repository (the default data root), not committed: two images, links, maybe a FIFO."""

    def setup(repo: GitRepo) -> None:
        for rel in ("shapes/cat/1.png", "shapes/dog/2.png"):
            (repo.path / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo.path / rel).write_bytes(rel.encode())
        for rel, target in links:
            (repo.path / rel).symlink_to(target)
        if fifo:
            os.mkfifo(repo.path / fifo)

    return setup


def dataset(source: str) -> str:
    return BASE + f"data:\n  name: d\n  format: folders\n  batches: [{{name: b, source: {source}}}]\n"


CASES = [
    # --- data sources that are not files -----------------------------------------------------------------------
    Case("a FIFO as a dataset source", {"experiments/e.yaml": dataset("pipe")}, setup=data_files(fifo="pipe"),
         expected="pipe: not a regular file (a FIFO, socket or device): a dataset is made of files"),
    Case("a FIFO in a dataset's directory", {"experiments/e.yaml": dataset("shapes")},
         setup=data_files(fifo="shapes/cat/pipe"), expected="shapes/cat/pipe: not a regular file"),
    Case("a device as a dataset source", {"experiments/e.yaml": dataset("/dev/zero")},
         expected="/dev/zero: not a regular file"),
    Case("a symbolic link loop in a dataset's directory", {"experiments/e.yaml": dataset("shapes")},
         setup=data_files(("shapes/cat/up", "..")),
         expected="shapes/cat/up: a symbolic link loop (a link to a directory it is in)"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_data_source(tmp_path: Path, case: Case, request: pytest.FixtureRequest) -> None:
    check(tmp_path, case, request)
