"""The uploader a producer's pod runs on Kubernetes (``backends/kubernetes/upload_outputs.py``), for real: run as
its own program (no expctl imported; tests/kube/test_pipelines_outputs_kube.py runs it as the manifest does,
from the pod's env), it runs a real job command and
stores what it wrote into ``EXPCTL_OUTPUT_DIR`` on the job's run of a real ``mlflow server`` (proxied
artifacts), where ``MlflowStore.fetch_output`` reads the same files back; the command's exit code is kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from expctl.backends.kubernetes.manifests.outputs import UPLOADER
from expctl.tracking.mlflow.store import MlflowStore
from tests.support import jobs
from tests.support.mlflow_server import MlflowServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def new_run(uri: str, name: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(name)
    experiment = found.experiment_id if found else client.create_experiment(name)
    return str(client.create_run(experiment).info.run_id)


def run_uploader(tmp: Path, uri: str, run_id: str, *command: str) -> subprocess.CompletedProcess[str]:
    config = tmp / "config.json"
    config.write_text(json.dumps({"write": {"rows": 2}}))
    env = {"PATH": "/usr/bin:/bin", "MLFLOW_TRACKING_URI": uri, "MLFLOW_RUN_ID": run_id,
           "EXPCTL_OUTPUT_DIR": str(tmp / "out"), "EXPCTL_OUTPUT_DATASET": "up-raw",
           "EXPCTL_CONFIG_FILE": str(config)}
    return subprocess.run([sys.executable, str(UPLOADER), *command], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_the_uploader_runs_the_job_then_stores_its_files_on_the_run(tmp_path: Path,
                                                                     mlflow_server: MlflowServer) -> None:
    run_id = new_run(mlflow_server.uri, "upload-outputs")
    (tmp_path / "out" / ".cache").mkdir(parents=True)
    (tmp_path / "out" / ".cache" / "skipped.txt").write_text("hidden")
    (tmp_path / "out" / ".partial").write_text("hidden")
    done = run_uploader(tmp_path, mlflow_server.uri, run_id, sys.executable, str(jobs.path("write_outputs")))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"expctl: stored 2 file(s) of the dataset up-raw on MLflow run {run_id}"

    store = MlflowStore(mlflow_server.uri, "kubernetes")
    stored = Path(store.fetch_output(run_id, "up-raw", str(tmp_path / "back")))
    assert {p.relative_to(stored).as_posix(): p.read_text() for p in stored.rglob("*") if p.is_file()} == {
        "readme.txt": "2 rows for up-raw\n", "rows/part-0.txt": "row 0\nrow 1\n"}


def test_a_failed_command_keeps_its_exit_code_and_stores_nothing(tmp_path: Path,
                                                                 mlflow_server: MlflowServer) -> None:
    run_id = new_run(mlflow_server.uri, "upload-outputs")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "half.txt").write_text("written before the failure")
    done = run_uploader(tmp_path, mlflow_server.uri, run_id, "sh", "-c", "exit 3")
    assert done.returncode == 3 and "stored" not in done.stdout, done
    fetched = Path(MlflowStore(mlflow_server.uri, "kubernetes").fetch_output(run_id, "up-raw", str(tmp_path / "back")))
    assert not fetched.exists()


def test_storing_that_fails_fails_the_job_in_one_line(tmp_path: Path, mlflow_server: MlflowServer) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.txt").write_text("a")
    done = run_uploader(tmp_path, mlflow_server.uri, "0" * 32, "true")  # no such run
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"expctl: could not store the dataset up-raw on MLflow run {'0' * 32}: GET "), line
    assert "HTTP 404" in line
