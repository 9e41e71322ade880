"""``cancel --experiment`` of an upstream with runs downstream still unfinished: refused without a terminal
unless ``--cascade``, which cancels them too (local backend, real ``expctl`` processes, a real MLflow server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support import e2e
from tests.support.mlflow_server import MlflowServer
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def rows(repo: Path, uri: str) -> dict[str, dict[str, Any]]:
    shown = e2e.expctl(repo, "status", "-o", "json", tracking_uri=uri)
    assert shown.returncode == 0, shown.stderr
    return {r["experiment"]: r for r in json.loads(shown.stdout)}


def test_cancelling_an_upstream_asks_about_its_dependents_or_cascades(tmp_path: Path,
                                                                       mlflow_server: MlflowServer) -> None:
    release, uri = tmp_path / "release", mlflow_server.uri
    fine = e2e.experiment(quick=True, expctl="  inputs:\n    up: {experiment: casc-pre}\n").replace(
        "trainer:", f"quick:\n  hold: {release}\ntrainer:")
    repo = e2e.make_project(tmp_path / "repo", {"casc-pre": e2e.experiment(quick=True), "casc-fine": fine})
    try:
        assert e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri).returncode == 0
        wait_until("casc-pre to succeed", lambda: rows(repo.path, uri)["casc-pre"]["state"] == "Succeeded")
        assert e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri).returncode == 0  # casc-fine starts, holds
        assert rows(repo.path, uri)["casc-fine"]["state"] in ("Pending", "Running")

        refused = e2e.expctl(repo.path, "cancel", "--experiment", "casc-pre", tracking_uri=uri)
        assert refused.returncode == 1 and "casc-fine (1 unfinished) consume it; pass --cascade" in refused.stderr
        assert rows(repo.path, uri)["casc-fine"]["state"] in ("Pending", "Running")  # untouched

        done = e2e.expctl(repo.path, "cancel", "--experiment", "casc-pre", "--cascade", tracking_uri=uri)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"cancelled {rows(repo.path, uri)['casc-fine']['run']}" in done.stdout
        assert rows(repo.path, uri)["casc-fine"]["state"] == "Cancelled"
    finally:
        release.write_text("go\n")
        e2e.stop_jobs(repo.path)
