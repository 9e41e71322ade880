"""Helpers of the settling tests (``tracking/mlflow/ledger``), end to end: a sweep of trivial local jobs, a
wait until a project's jobs all exited, and another ``expctl apply`` run between two pages of a search."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support import e2e
from tests.support.gitrepo import GitRepo

TRIVIAL = "  command: [python, -c, pass]\n"


def sweep(points: int) -> str:
    return e2e.experiment(sweep={"seed": f"range(0,{points})"}, expctl=TRIVIAL)


def finished(repo: GitRepo, points: int, state: str = "Succeeded") -> None:
    """Wait until the repository's local jobs all exited (in ``state``)."""
    deadline = time.monotonic() + 120
    while True:
        status = e2e.expctl(repo.path, "status", "-o", "json")
        if status.stdout.count(f'"state": "{state}"') >= points:
            return
        assert time.monotonic() < deadline, status.stdout
        time.sleep(0.5)


def apply_between_pages(store: Any, monkeypatch: pytest.MonkeyPatch, repo: GitRepo, uri: str | None) -> list[Any]:
    """Make ``store``'s searches 2 runs a page, and run ``expctl apply`` of ``repo`` between the first page and
    the next (another expctl settling runs while this view pages); the pages, as they are read."""
    from expctl.tracking.mlflow import session as mlflow_session

    monkeypatch.setattr(mlflow_session, "PAGE", 2)
    # pages through MLflow's client: the embedded store's file is read in one snapshot (``sqlite_search``),
    # where no apply can come between two pages; the client is what it falls back to
    store.local = None
    search, pages = store.client.search_runs, []

    def paging(*args: Any, **kwargs: Any) -> Any:
        page = search(*args, **kwargs)
        pages.append(page)
        if len(pages) == 1:
            settled = e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri)
            assert settled.returncode == 0, settled.stderr
        return page

    monkeypatch.setattr(store.client, "search_runs", paging)
    return pages

