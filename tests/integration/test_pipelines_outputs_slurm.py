"""A dataset produced on a real Slurm cluster: the importer's batch job writes into ``EXPCTL_OUTPUT_DIR`` (its run
directory's ``outputs/`` on the shared workdir, made before ``sbatch``); the apply that sees the job succeed
records the files and their manifest on its MLflow run, and the consumer's job, submitted after, gets
``EXPCTL_INPUT_RAW_URI`` and runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import e2e, jobs
from tests.support.mlflow_server import MlflowServer
from tests.support.slurm_cluster import SlurmCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

IMPORTER = e2e.experiment(expctl="  kind: local\n  command: [python, training/write_outputs.py]\n"
                                 "  outputs: {dataset: slurm-raw}\n") + "write: {rows: 2}\n"
TRAIN = e2e.experiment(expctl="  kind: local\n  command: [python, training/print_job_env.py]\n"
                              "  inputs:\n    raw: {dataset: slurm-raw}\n")


def test_an_importer_on_slurm_writes_a_dataset_its_consumer_gets(
        slurm_cluster: SlurmCluster, mlflow_server: MlflowServer, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    repo = e2e.make_project(tmp_path / "repo", {"slurm-import": IMPORTER, "slurm-train": TRAIN})
    workdir = tmp_path / "shared"
    repo.write("training/write_outputs.py", jobs.source("write_outputs"))
    repo.write("training/print_job_env.py", jobs.source("print_job_env"))
    repo.write("expctl.yaml", f"backend: slurm\ncode_paths: [training]\nslurm:\n  workdir: {workdir}\n")
    repo.commit("an importer and its consumer on Slurm")
    uri = mlflow_server.uri

    done = e2e.expctl(repo.path, "apply", "-y", "--wait", "--timeout", "300", tracking_uri=uri)
    assert done.returncode == 0 and "Finished: 2 succeeded." in done.stdout, done.stdout + done.stderr

    (imp,), (train,) = e2e.mlflow_runs(uri, ["slurm-import"]), e2e.mlflow_runs(uri, ["slurm-train"])
    produced = workdir / "runs" / imp.data.tags["expctl.job"] / "outputs"
    assert sorted(p.relative_to(produced).as_posix() for p in produced.rglob("*") if p.is_file()) == [
        "readme.txt", "rows/part-0.txt"]
    digest = imp.data.tags["expctl.output.digest"]
    assert imp.data.tags["expctl.output.dataset"] == "slurm-raw" and len(digest) == 20
    kept = Path(MlflowClient(uri).download_artifacts(imp.info.run_id, "expctl/outputs/slurm-raw", str(tmp_path)))
    assert (kept / "rows" / "part-0.txt").read_text() == "row 0\nrow 1\n"

    want = f"runs:/{imp.info.run_id}/expctl/outputs/slurm-raw"
    log = (workdir / "runs" / train.data.tags["expctl.job"] / "task-0.log").read_text()
    env = json.loads(log.strip().splitlines()[-1])  # what the consumer's job saw, on the Slurm node
    assert env["EXPCTL_INPUT_RAW_URI"] == want and "EXPCTL_OUTPUT_DIR" not in env
    assert (train.data.tags["expctl.input.raw.digest"], train.info.status) == (digest, "FINISHED")
