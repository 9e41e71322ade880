"""The operator commands on the Kubernetes backend: a real kube-apiserver with the Kubeflow CRDs, no operator.

The test plays the training operator by patching the jobs' ``/status``; no kubelet runs, so ``logs`` can only
be tested up to the clear "no pods yet" message. The project's ``expctl.yaml`` says ``backend: kubernetes``
with the test namespace; MLflow is the embedded sqlite store under the repository's ``.expctl/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from expctl.backends.kubernetes.manifests import KINDS
from expctl.backends.kubernetes.manifests.common import CANCELLED_BY
from expctl.core.model import JobKind
from tests.support.kube_cli import SINGLE, invoke, make_repo, ok, status
from tests.support.kube_cluster import Cluster
from tests.support.kube_driver import conditions, patch_status

pytestmark = pytest.mark.kube

OPERATOR = "kube-operator-kim"


def job(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    info = KINDS[JobKind.PYTORCH]
    obj = client.CustomObjectsApi(cluster.api_client()).get_namespaced_custom_object(
        info.group, info.version, namespace, info.plural, name)
    assert isinstance(obj, dict)
    return obj


@pytest.fixture
def kube_env(kube_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "EXPCTL_BACKEND", "GITHUB_ACTOR", "CI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    monkeypatch.setenv("USER", OPERATOR)


@pytest.mark.timeout(600)
def test_status_logs_describe_and_cancel_on_kubernetes(
    kube_cluster: Cluster, namespace: str, kube_env: None, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    repo = make_repo(tmp_path / "repo", namespace)
    applied = ok(repo, "apply", "-y")
    assert "Applied 4 changes." in applied

    rows = status(repo)
    assert len(rows) == 4 and {r["state"] for r in rows} == {"Pending"}
    by_exp: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_exp.setdefault(row["experiment"], []).append(row)
    (single,) = by_exp["single"]
    running, succeeded, pending = sorted(by_exp["sweep"], key=lambda r: r["run"])

    # Play the operator: one sweep point runs, one succeeds, one stays pending; the single run runs.
    for row, outcome in ((running, "run"), (succeeded, "succeed"), (single, "run")):
        patch_status(kube_cluster, namespace, JobKind.PYTORCH, row["run"], conditions("PyTorchJob", outcome))

    # status: the squeue-like view of the cluster's jobs, with filters and JSON.
    live = {r["run"]: r for r in status(repo)}
    assert {name: r["state"] for name, r in live.items()} == {
        single["run"]: "Running", running["run"]: "Running", succeeded["run"]: "Succeeded",
        pending["run"]: "Pending"}
    for r in live.values():
        assert r["kind"] == "PyTorchJob" and r["namespace"] == namespace and r["attempt"] == 1
        assert (r["user"], r["applied_by"]) == ("Ada Lovelace", "Ada Lovelace <ada@example.com>")
        assert len(r["mlflow_run"]) == 32
    assert (live[single["run"]]["replicas"], live[single["run"]]["gpus"]) == (3, 1)
    assert (live[running["run"]]["replicas"], live[running["run"]]["gpus"]) == (1, 0)
    assert {r["run"] for r in status(repo, "--state", "running")} == {single["run"], running["run"]}
    assert len(status(repo, "--experiment", "sweep")) == 3
    assert status(repo, "--user", "someone-else") == []
    table = ok(repo, "status", "--experiment", "single").splitlines()
    assert table[0].split()[:6] == ["RUN", "EXPERIMENT", "KIND", "REPLICAS", "GPUS", "STATE"]
    assert table[1].split()[:7] == [single["run"], "single", "PyTorchJob", "3", "1", "Running", "1"]

    # logs: no kubelet runs here, so there are no pods — said clearly, as an error.
    for args in ((single["run"],), (pending["run"], "--replica", "worker-1"), (single["run"], "-f")):
        result = invoke(repo, "logs", *args)
        assert result.exit_code == 1
        assert f"error: run {args[0]} (" in result.stderr and "has no pods" in result.stderr
        assert "try again once it is scheduled" in result.stderr
    unknown = invoke(repo, "logs", "no-such-run")
    assert unknown.exit_code == 1 and "no run named no-such-run" in unknown.stderr

    # describe: human and JSON.
    info = json.loads(ok(repo, "describe", single["run"], "-o", "json"))
    assert info["run"] == single["run"] and info["state"] == "Running" and info["namespace"] == namespace
    assert info["backend"] == "kubernetes" and (info["replicas"], info["gpus"]) == (3, 1)
    assert info["commit"] == repo.git("rev-parse", "HEAD") and info["in_sync"] is True
    assert info["spec_hash"] == live[single["run"]]["spec_hash"]
    assert info["config"]["expctl"]["replicas"] == 3
    assert [p["phase"] for p in info["phases"]] == ["Created", "Running"]
    human = ok(repo, "describe", single["run"])
    assert f"namespace:         {namespace}" in human and "phase history:" in human and "config (composed" in human

    # cancel one run: the object is kept and marked, suspended, its MLflow run KILLED, the cancel audited.
    assert ok(repo, "cancel", single["run"]).splitlines() == [f"cancelled {single['run']}"]
    obj = job(kube_cluster, namespace, single["run"])
    assert obj["metadata"]["annotations"][CANCELLED_BY] == OPERATOR
    assert obj["spec"]["runPolicy"]["suspend"] is True
    assert status(repo, "--experiment", "single")[0]["state"] == "Cancelled"
    mlflow = MlflowClient(f"sqlite:///{repo.path / '.expctl' / 'mlflow.db'}")
    killed = mlflow.get_run(single["mlflow_run"])
    assert killed.info.status == "KILLED" and killed.data.tags["expctl.cancelled_by"] == OPERATOR
    history = json.loads(ok(repo, "history", "--experiment", "single", "-o", "json"))
    assert (history[0]["action"], history[0]["run"], history[0]["who"]) == ("cancel", single["run"], OPERATOR)
    assert history[0]["namespace"] == namespace

    # bulk cancel of the sweep: the running and the pending point, not the one that succeeded.
    bulk = ok(repo, "cancel", "--experiment", "sweep").splitlines()
    assert sorted(bulk) == sorted(f"cancelled {r['run']}" for r in (running, pending))
    states = {r["run"]: r["state"] for r in status(repo, "--experiment", "sweep")}
    assert states == {running["run"]: "Cancelled", pending["run"]: "Cancelled", succeeded["run"]: "Succeeded"}
    skipped = invoke(repo, "cancel", succeeded["run"])
    assert skipped.exit_code == 0 and "already succeeded: nothing to stop" in skipped.stderr

    # A new expctl process plans the cancelled runs as cancelled; apply relaunches nothing.
    env = {**os.environ, "KUBECONFIG": str(kube_cluster.kubeconfig)}
    expctl = str(Path(sys.executable).with_name("expctl"))
    plan = subprocess.run([expctl, "plan", "-o", "json"], cwd=repo.path, env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    reasons = {c["name"]: c["reason"] for c in json.loads(plan.stdout)["changes"]}
    assert reasons == {single["run"]: "cancelled", running["run"]: "cancelled", pending["run"]: "cancelled",
                       succeeded["run"]: "unchanged"}
    assert "No changes." in ok(repo, "apply", "-y")
    assert job(kube_cluster, namespace, single["run"])["metadata"]["uid"] == obj["metadata"]["uid"]

    # Until its spec changes: then it is a replace.
    repo.write("experiments/single.yaml", SINGLE.format(replicas=2))
    repo.commit("single: two replicas")
    changes = json.loads(ok(repo, "plan", "-o", "json"))["changes"]
    assert {(c["name"], c["action"], c["reason"]) for c in changes if c["experiment"] == "single"} == {
        (single["run"], "replace", "spec-changed")}
