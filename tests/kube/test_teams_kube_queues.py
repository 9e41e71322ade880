"""A team's Kueue queue that expctl does not make (a team without ``gpus:``), on the real apiserver with Kueue's
CRDs: ``expctl teams plan`` says in one note when its LocalQueue does not exist, or points to a ClusterQueue that
does not exist (the team's runs would wait for ever), and says nothing once both exist.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from kubernetes import client

from tests.support.gitrepo import GitRepo
from tests.support.kube_cli import invoke, ok
from tests.support.kube_cluster import Cluster

pytestmark = pytest.mark.kube

KUEUE = ("kueue.x-k8s.io", "v1beta2")


def notes(repo: GitRepo) -> list[str]:
    return [line for line in ok(repo, "teams", "plan").splitlines() if line.startswith("note: ")]


def test_teams_plan_names_a_missing_local_queue_and_a_missing_cluster_queue(
        kube_cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("MLFLOW_TRACKING_URI", "EXPCTL_BACKEND", "GITHUB_ACTOR", "CI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    team, queue, cluster_queue = f"speech-{uuid.uuid4().hex[:6]}", "shared-q", f"lab-{uuid.uuid4().hex[:6]}"
    repo = GitRepo(tmp_path / "repo")
    for rel, text in {".gitignore": ".expctl/\n", "experiments/speech/a.yaml": "expctl:\n  kind: PyTorchJob\n",
                      "expctl.yaml": f"backend: kubernetes\nkubernetes: {{namespace: default}}\nteams:\n"
                                     f"  - name: {team}\n    paths: [experiments/speech]\n"
                                     f"    kubernetes: {{namespace: {namespace}, queue: {queue}}}\n"}.items():
        repo.write(rel, text)
    repo.commit("a team on the cluster's own queue")

    assert notes(repo) == [f"note: team {team}: LocalQueue {namespace}/{queue} does not exist: its runs would wait "
                           "for ever (expctl makes it, with a ClusterQueue, for a team with gpus:; else the "
                           "cluster's admin)"]
    custom = client.CustomObjectsApi(kube_cluster.api_client())
    custom.create_namespaced_custom_object(*KUEUE, namespace, "localqueues", {
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue", "metadata": {"name": queue},
        "spec": {"clusterQueue": cluster_queue}})
    assert notes(repo) == [f"note: team {team}: LocalQueue {namespace}/{queue} points to ClusterQueue "
                           f"{cluster_queue}, which does not exist: its runs would wait for ever (the cluster's "
                           "admin creates it)"]
    assert invoke(repo, "teams", "plan").exit_code == 0  # a note, not a refusal: the admin may be on it

    custom.create_cluster_custom_object(*KUEUE, "clusterqueues", {
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": cluster_queue},
        "spec": {"namespaceSelector": {}}})
    assert notes(repo) == []
