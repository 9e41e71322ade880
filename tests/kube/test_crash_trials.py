"""Crash trials on the Kubernetes backend: ``expctl apply`` SIGKILLed at a seeded random crash point, 30 times,
against the real kube-apiserver and a real MLflow server.

Each trial commits a new sweep (two runs), runs ``apply -y`` with ``EXPCTL_TEST_CRASH_SEED=<seed>:<p>``, lets the
killed apply's Lease expire (the test deletes it: time passing, not a shortcut of the code under test), reruns
``apply -y``, plays the training operator (the jobs succeed), and applies once more to sync. After every
trial: exactly one job object and one MLflow run per (run key, attempt), every run finished in MLflow; at the end
the audit trail is complete (every job object that exists was audited exactly once as created).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from expctl.core.model import JobKind
from tests.support import e2e
from tests.support.forked_cli import forked_cli
from tests.support.gitrepo import GitRepo
from tests.support.kube_cluster import Cluster
from tests.support.kube_driver import conditions, patch_status

pytestmark = pytest.mark.kube

TRIALS = 30
RUN_KEY = "expctl.io/run-key"


@pytest.fixture
def project(tmp_path: Path, namespace: str) -> Iterator[GitRepo]:
    repo = GitRepo(tmp_path / "repo")
    repo.write(".gitignore", ".expctl/\n")
    repo.write("conf/config.yaml", "seed: 0\noptimizer:\n  lr: 0.1\n")
    repo.write("code/train.py", "print('train')\n")
    repo.write("expctl.yaml", f"backend: kubernetes\ncode_paths: [code]\nkubernetes:\n  namespace: {namespace}\n"
                              "  repo_url: https://git.example.com/team/repo.git\n  qps: 100\n  burst: 100\n")
    repo.write("experiments/.keep", "")
    repo.commit("initial")
    yield repo


def jobs(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    from kubernetes import client

    return list(client.CustomObjectsApi(cluster.api_client()).list_namespaced_custom_object(
        "kubeflow.org", "v1", namespace, "pytorchjobs")["items"])


def expire_lease(cluster: Cluster, namespace: str) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.CoordinationV1Api(cluster.api_client()).delete_namespaced_lease("expctl-apply", namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise


def test_thirty_seeded_crashes_each_converge_on_rerun(project: GitRepo, kube_cluster: Cluster, namespace: str,
                                                      mlflow_server: Any) -> None:
    name = f"ktrial-{uuid.uuid4().hex[:8]}"
    env: dict[str, str | None] = {"MLFLOW_TRACKING_URI": mlflow_server.uri, "KUBECONFIG": str(kube_cluster.kubeconfig),
                                  "EXPCTL_BACKEND": None, "EXPCTL_TEST_CRASH_AT": None, "CI": "1"}
    crashes = 0
    for trial in range(TRIALS):
        project.write(f"experiments/{name}.yaml", "defaults:\n  - config\n  - _self_\nhydra:\n  sweeper:\n"
                                                  f"    params:\n      optimizer.lr: {trial}.1,{trial}.2\n")
        project.commit(f"trial {trial}")
        crashed = forked_cli(project.path, ["apply", "-y"], {**env, "EXPCTL_TEST_CRASH_SEED": f"{trial}:0.35"})
        assert crashed.crashed or crashed.returncode == 0, (trial, crashed)
        crashes += crashed.crashed
        expire_lease(kube_cluster, namespace)
        rerun = forked_cli(project.path, ["apply", "-y"], env)
        assert rerun.returncode == 0, (trial, rerun)

        objects = jobs(kube_cluster, namespace)
        per_key = Counter((o["metadata"]["labels"][RUN_KEY], o["metadata"]["annotations"]["expctl.io/attempt"])
                          for o in objects)
        assert set(per_key.values()) == {1}, trial  # one job per (run key, attempt)
        runs = e2e.mlflow_runs(mlflow_server.uri, [name], deleted_too=True)
        assert e2e.attempts_per_key(runs) == per_key, trial  # and one MLflow run each
        assert len(per_key) == 2 * (trial + 1)

        for obj in objects:  # the operator: the new jobs succeed
            if not obj.get("status"):
                patch_status(kube_cluster, namespace, JobKind.PYTORCH, obj["metadata"]["name"],
                             conditions("PyTorchJob", "succeed"))
        synced = forked_cli(project.path, ["apply", "-y"], env)
        assert synced.returncode == 0 and "No changes." in synced.stdout, (trial, synced)
        current = {r.info.run_id: r.info.status for r in e2e.mlflow_runs(mlflow_server.uri, [name])
                   if r.data.params.get("optimizer.lr", "").startswith(f"{trial}.")
                   or r.data.tags.get("expctl.commit") == project.head}
        assert current and set(current.values()) == {"FINISHED"}, (trial, current)
    assert crashes >= TRIALS // 3
    history = forked_cli(project.path, ["history", "--experiment", name, "--output", "json", "--limit", "100000"],
                         env)
    created = Counter(e["run"] for e in json.loads(history.stdout) if e.get("action") in ("create", "retry", "replace"))
    names = Counter(o["metadata"]["name"] for o in jobs(kube_cluster, namespace)
                    if o["metadata"]["labels"].get("expctl.io/experiment") == name)
    assert created == names, sorted(set(created) ^ set(names))
