"""Logs outlive the job on the local backend: kept in MLflow (capped) when the run finishes, read from there
once its processes, run directory and worktree are gone. Real ``expctl`` processes, the embedded MLflow store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import e2e, jobs

pytestmark = pytest.mark.integration

EXPERIMENT = "defaults:\n  - config\n  - _self_\nexpctl:\n  command: [python, -m, training.chatty]\n  replicas: 2\n"


def test_logs_of_a_finished_run_are_read_from_mlflow_once_its_files_are_gone(tmp_path: Path) -> None:
    repo = e2e.make_project(tmp_path / "repo", {"chatty": EXPERIMENT})
    repo.write("training/chatty.py", jobs.source("chatty"))
    repo.write("expctl.yaml", "backend: local\ncode_paths: [training]\nlogs:\n  tail_bytes: 2048\n")
    repo.commit("a chatty job; keep 2 KB of each replica's log")
    try:
        done = e2e.expctl(repo.path, "apply", "-y", "--wait", "--timeout", "300")
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
        (name,) = e2e.run_states(repo.path)
        live = e2e.expctl(repo.path, "logs", name)
        assert live.returncode == 0 and "logs of " + name + " live from the local backend" in live.stderr
        assert "[master-0] master-0 line 000 " in live.stdout  # the whole log, live

        (run,) = e2e.mlflow_runs(e2e.embedded_uri(repo.path), ["chatty"])
        assert run.data.tags["expctl.logs"] == "kept"
        artifacts = repo.path / ".expctl" / "mlartifacts"
        kept = {p.name: p.read_bytes() for p in artifacts.rglob("expctl/logs/*.log")}
        assert set(kept) == {"master-0.log", "worker-0.log"}
        assert all(len(data) <= 2048 for data in kept.values())  # the cap holds

        shutil.rmtree(repo.path / ".expctl" / "runs")  # processes ended; run dirs and checkouts are gone
        shutil.rmtree(repo.path / ".expctl" / "worktrees", ignore_errors=True)
        gone = e2e.expctl(repo.path, "logs", name, PYTHONPROFILEIMPORTTIME="1")  # = python -X importtime
        assert gone.returncode == 0, gone.stderr
        imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in gone.stderr.splitlines()
                    if line.startswith("import time:")}
        assert "click" in imported and not imported & {"mlflow", "sqlalchemy"}  # read from the artifact files
        assert f"from MLflow artifacts of run {run.info.run_id}" in gone.stderr
        lines = gone.stdout.splitlines()
        assert lines[0].startswith("[master-0] [expctl: ") and "earlier bytes not kept" in lines[0]
        assert "[master-0] master-0 line 399 " + "x" * 20 in lines  # the tail
        assert "[worker-0] worker-0 line 399 " + "x" * 20 in lines
        assert not any(" line 000 " in line for line in lines)  # the head was cut
        one = e2e.expctl(repo.path, "logs", name, "--replica", "worker-0")
        assert one.returncode == 0 and one.stdout.splitlines()[-1] == "worker-0 line 399 " + "x" * 20
    finally:
        e2e.stop_jobs(repo.path)
