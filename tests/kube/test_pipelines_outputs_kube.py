"""A produced dataset (``outputs:``) on a real kube-apiserver: the producer is created with its output directory
(an emptyDir), ``EXPCTL_OUTPUT_*`` and the uploader wrapping its command on its Master; the test plays the pod
(runs that very command with that very env: the job writes its files, the uploader stores them on the run of a
real ``mlflow server``) and the operator (patches /status to Succeeded); the next ``expctl apply`` downloads,
hashes and records the dataset and creates the consumer with ``EXPCTL_INPUT_RAW_URI``."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from expctl.backends.kubernetes.manifests.outputs import OUTPUT_MOUNT, OUTPUT_VOLUME, WRAPPER
from tests.support import jobs
from tests.support.kube_cluster import Cluster
from tests.support.kube_project import Project, make_project
from tests.support.mlflow_server import MlflowServer

pytestmark = [pytest.mark.kube, pytest.mark.usefixtures("kube_environment"), pytest.mark.timeout(300)]

COMMAND = ["python3", "training/write_outputs.py"]
PRODUCER = ("defaults:\n  - config\n  - _self_\nwrite: {rows: 3}\nexpctl:\n  kind: PyTorchJob\n  replicas: 2\n"
            f"  command: {json.dumps(COMMAND)}\n  retries: {{max_attempts: 1}}\n  outputs: {{dataset: DS}}\n")
CONSUMER = ("defaults:\n  - config\n  - _self_\nexpctl:\n  kind: PyTorchJob\n  retries: {max_attempts: 1}\n"
            "  inputs:\n    raw: {dataset: DS}\n")


def job_of(project: Project, experiment: str) -> tuple[str, dict[str, Any]] | None:
    found = [(n, o) for n, o in project.managed().items()
             if o["metadata"]["annotations"]["expctl.io/experiment-name"] == project.exp(experiment)]
    return found[0] if found else None


def play_the_pod(project: Project, container: dict[str, Any], emptydir: Path) -> str:
    """Run the container's command with its env, as its pod would (the emptyDir: a local directory)."""
    env = {e["name"]: e["value"] for e in container["env"]}
    config = emptydir.parent / "config.json"
    config.write_text(env["EXPCTL_CONFIG"])
    env.update({"PATH": os.environ["PATH"], "EXPCTL_OUTPUT_DIR": str(emptydir), "EXPCTL_CONFIG_FILE": str(config)})
    done = subprocess.run(container["command"], cwd=project.repo.path, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_kubernetes_producer_stores_its_files_on_its_run_and_the_apply_records_them(
        tmp_path: Path, kube_cluster: Cluster, namespace: str, mlflow_server: MlflowServer) -> None:
    from mlflow import MlflowClient

    dataset = f"ds-{namespace}"[:40]
    project = make_project(tmp_path, kube_cluster, namespace, mlflow_server.uri, {
        "imp": PRODUCER.replace("DS", dataset), "train": CONSUMER.replace("DS", dataset)})
    project.repo.write("training/write_outputs.py", jobs.source("write_outputs"))
    project.repo.commit("the importer's code")

    project.ok("apply", "-y")
    assert job_of(project, "train") is None  # its dataset is not recorded yet
    found = job_of(project, "imp")
    assert found is not None
    name, producer = found
    specs = producer["spec"]["pytorchReplicaSpecs"]
    master = specs["Master"]["template"]["spec"]
    (container,) = master["containers"]
    assert container["command"] == ["sh", "-c", WRAPPER, "expctl-outputs", *COMMAND]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert (env["EXPCTL_OUTPUT_DIR"], env["EXPCTL_OUTPUT_DATASET"]) == (OUTPUT_MOUNT, dataset)
    assert {"name": OUTPUT_VOLUME, "mountPath": OUTPUT_MOUNT} in container["volumeMounts"]
    assert {"name": OUTPUT_VOLUME, "emptyDir": {}} in master["volumes"]
    assert "EXPCTL_OUTPUT_DIR" not in str(specs["Worker"])

    (tmp_path / "pod").mkdir()
    out = play_the_pod(project, container, tmp_path / "pod" / "outputs")
    run_id = env["MLFLOW_RUN_ID"]
    assert f"expctl: stored 2 file(s) of the dataset {dataset} on MLflow run {run_id}" in out
    assert "expctl.output.digest" not in MlflowClient(mlflow_server.uri).get_run(run_id).data.tags

    project.settle(name, "succeed")
    project.ok("apply", "-y")  # records the dataset from the run's artifacts, then creates the consumer
    tags = MlflowClient(mlflow_server.uri).get_run(run_id).data.tags
    assert tags["expctl.output.dataset"] == dataset
    manifest = json.loads(Path(MlflowClient(mlflow_server.uri).download_artifacts(
        run_id, f"expctl/outputs/{dataset}.json", str(tmp_path / "m"))).read_text())
    assert manifest["digest"] == tags["expctl.output.digest"]
    assert [(i["path"], i["size"]) for i in manifest["items"]] == [
        ("readme.txt", len(f"3 rows for {dataset}\n")), ("rows/part-0.txt", len("row 0\nrow 1\nrow 2\n"))]
    assert f"runs:/{run_id}/expctl/outputs/{dataset}" in json.dumps(manifest)  # where, not this machine's path
    assert str(tmp_path) not in json.dumps(manifest)

    consumer = job_of(project, "train")
    assert consumer is not None
    consumer_env = {e["name"]: e.get("value") for e in
                    consumer[1]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["env"]}
    assert consumer_env["EXPCTL_INPUT_RAW_URI"] == f"runs:/{run_id}/expctl/outputs/{dataset}"
    assert len(project.managed()) == 2
    assert [c["action"] for c in project.plan()["changes"]] == ["noop", "noop"]
