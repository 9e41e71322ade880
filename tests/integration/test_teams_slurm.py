"""A team's runs on a real Slurm cluster (no accounting): they land in the team's partition and account, and
expctl holds back the runs beyond the team's GPU quota until its jobs free their GPUs. Real ``expctl``
processes, real git, the shared MLflow server; the jobs hold until the test releases them.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from expctl.backends.slurm.qos_quota import NO_ACCOUNTING
from tests.support import e2e, jobs
from tests.support.gitrepo import GitRepo
from tests.support.mlflow_server import MlflowServer
from tests.support.slurm_cluster import SlurmCluster

pytestmark = pytest.mark.integration

CONFIG = ("seed: 0\nlines: 1\nrelease: \"\"\nexpctl:\n  kind: PyTorchJob\n  command: [python, code/job.py]\n"
          "  resources: {gpus: 2}\n")


def team_jobs(cluster: SlurmCluster, workdir: Path) -> list[dict[str, Any]]:
    runs = str(workdir / "runs") + "/"
    found: list[dict[str, Any]] = json.loads(cluster.run("squeue", "--json"))["jobs"]
    return [j for j in found if str(j.get("current_working_directory", "")).startswith(runs)]


@pytest.mark.timeout(600)
def test_a_teams_run_lands_in_its_partition_and_account_within_its_quota(
        slurm_cluster: SlurmCluster, mlflow_server: MlflowServer, tmp_path: Path) -> None:
    hold, workdir = tmp_path / "hold", tmp_path / "shared"
    repo = GitRepo(tmp_path / "repo")
    held = f"defaults:\n  - config\n  - _self_\nrelease: {hold}\n"
    teams = ("teams:\n  - name: vision\n    paths: [experiments/vision]\n    gpus: 2\n"
             "    slurm: {partition: gpu, account: vision}\n")
    for rel, text in {".gitignore": ".expctl/\n", "code/job.py": jobs.source("replica_lines"),
                      "conf/config.yaml": CONFIG,
                      "expctl.yaml": f"backend: slurm\ncode_paths: [code]\nslurm:\n  workdir: {workdir}\n{teams}",
                      "experiments/vision/vit.yaml": held + "hydra:\n  sweeper:\n    params:\n      seed: 1,2\n"
                      }.items():
        repo.write(rel, text)
    repo.commit("vision on Slurm: partition gpu, account vision, 2 GPUs")
    uri = mlflow_server.uri
    try:
        applied = e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri, **slurm_cluster.env)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert "(quota: vision 2/2 GPUs)" in applied.stdout, applied.stdout
        assert f"note: {NO_ACCOUNTING}" in applied.stdout, applied.stdout
        submitted = team_jobs(slurm_cluster, workdir)
        assert [(j["partition"], j["account"]) for j in submitted] == [("gpu", "vision")], submitted

        hold.touch()
        done = e2e.expctl(repo.path, "apply", "-y", "--wait", "--timeout", "300", tracking_uri=uri,
                          **slurm_cluster.env)
        assert done.returncode == 0 and "Finished: 2 succeeded." in done.stdout, done.stdout + done.stderr
    finally:
        hold.touch()


@pytest.mark.timeout(600)
def test_a_teams_job_gets_its_mlflow_identity_through_sbatch_only(
        slurm_cluster: SlurmCluster, mlflow_server: MlflowServer, tmp_path: Path) -> None:
    """A team that declares ``mlflow:``: its Slurm job gets the team's job identity and workspace from sbatch's
    environment; the password is in no batch script, record, log or output."""
    workdir, password = tmp_path / "shared", f"job-pw-{uuid.uuid4().hex}"
    store = tmp_path / "store" / "mlflow-jobs.json"
    store.parent.mkdir()
    store.write_text(json.dumps({"expctl-job-speech": password}))
    repo = GitRepo(tmp_path / "repo")
    teams = "teams:\n  - name: speech\n    paths: [experiments/speech]\n    mlflow: {workspace: voice}\n"
    for rel, text in {".gitignore": ".expctl/\n", "code/job.py": jobs.source("check_team_identity"),
                      "conf/config.yaml": "expctl:\n  kind: PyTorchJob\n  command: [python, code/job.py]\n",
                      "expctl.yaml": f"backend: slurm\ncode_paths: [code]\nslurm:\n  workdir: {workdir}\n{teams}",
                      "experiments/speech/who.yaml": "defaults:\n  - config\n  - _self_\n"}.items():
        repo.write(rel, text)
    repo.commit("speech on Slurm, with its MLflow job identity")
    done = e2e.expctl(repo.path, "apply", "-y", "--wait", "--timeout", "300", tracking_uri=mlflow_server.uri,
                      EXPCTL_SECRET_STORE=str(store), **slurm_cluster.env)
    assert done.returncode == 0 and "Finished: 1 succeeded." in done.stdout, done.stdout + done.stderr
    assert password not in done.stdout + done.stderr
    leaked = [p for root in (workdir, repo.path / ".expctl") for p in root.rglob("*")
              if p.is_file() and password.encode() in p.read_bytes()]
    assert leaked == []
