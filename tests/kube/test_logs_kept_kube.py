"""Logs kept after the job on the Kubernetes backend: ``expctl logs`` reads them from MLflow once the job
object is deleted. No kubelet runs here, so the test writes the log artifacts where the sync would (the same
``MlflowStore.keep_logs``) after checking that a sync with no pods left records why it kept none."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client
from mlflow import MlflowClient

from expctl.backends.kubernetes.manifests import KINDS
from expctl.core.model import JobKind
from expctl.tracking.mlflow.store import MlflowStore
from tests.support.kube_cli import invoke, make_repo, ok, status
from tests.support.kube_cluster import Cluster
from tests.support.kube_driver import conditions, patch_status

pytestmark = pytest.mark.kube


@pytest.fixture
def kube_cli_env(kube_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "EXPCTL_BACKEND", "GITHUB_ACTOR", "CI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))


@pytest.mark.timeout(600)
def test_logs_of_a_deleted_job_come_from_mlflow(kube_cluster: Cluster, namespace: str, kube_cli_env: None,
                                                tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", namespace)
    repo.remove("experiments/sweep.yaml")
    repo.commit("only the 3-replica run")
    ok(repo, "apply", "-y")
    (row,) = status(repo)
    name, run_id = row["run"], row["mlflow_run"]
    patch_status(kube_cluster, namespace, JobKind.PYTORCH, name, conditions("PyTorchJob", "succeed"))

    ok(repo, "apply", "-y")  # the sync sees it finished; with no pods left there is nothing to keep: said so
    uri = f"sqlite:///{repo.path / '.expctl' / 'mlflow.db'}"
    tags = MlflowClient(uri).get_run(run_id).data.tags
    assert tags["expctl.logs"].startswith(f"unavailable: run {name} has no replica with logs left")

    store = MlflowStore(uri, "kubernetes", artifact_root=repo.path / ".expctl" / "mlartifacts")
    store.keep_logs(run_id, {"master-0": "epoch 0\nepoch 1\ndone\n", "worker-0": "worker says hi\n",
                             "worker-1": "worker 1 too\n"})
    info = KINDS[JobKind.PYTORCH]
    client.CustomObjectsApi(kube_cluster.api_client()).delete_namespaced_custom_object(
        info.group, info.version, namespace, info.plural, name)

    result = invoke(repo, "logs", name)
    assert result.exit_code == 0, result.output
    assert f"from MLflow artifacts of run {run_id}" in result.stderr
    assert result.stdout.splitlines() == ["[master-0] epoch 0", "[master-0] epoch 1", "[master-0] done",
                                          "[worker-0] worker says hi", "[worker-1] worker 1 too"]
    one = invoke(repo, "logs", name, "--replica", "master-0")
    assert one.exit_code == 0 and one.stdout.splitlines() == ["epoch 0", "epoch 1", "done"]
