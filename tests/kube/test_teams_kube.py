"""``expctl teams plan`` / ``teams apply`` on the real apiserver (Kubeflow and Kueue CRDs, RBAC, token users):
each team's Namespace, ServiceAccount, Role + RoleBinding, ResourceQuota and Kueue queues are created once
(a second apply is a no-op), team A's identity cannot create training jobs in team B's namespace (expctl's
message names the team and namespace), and ``--prune`` never deletes a namespace holding others' objects.
A team's run lands in its namespace with its team label and queue; the test plays Kueue (a Workload whose
``QuotaReserved`` is False) and ``status`` shows Kueue's reason.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from expctl.backends.kubernetes.backend import KubernetesBackend
from expctl.backends.kubernetes.manifests import KINDS
from expctl.backends.kubernetes.manifests.gitsync import configmap_name
from expctl.core.errors import BackendError
from expctl.core.model import JobKind
from tests.support.factories import make_job, make_launch, make_spec
from tests.support.gitrepo import GitRepo
from tests.support.kube_cli import invoke, ok
from tests.support.kube_cluster import RESTRICTED_TOKEN, RESTRICTED_USER, TEAM_B_USER, Cluster, create_namespace
from tests.support.kube_driver import make_backend

pytestmark = pytest.mark.kube

KUEUE = ("kueue.x-k8s.io", "v1beta2")


@pytest.fixture
def kube_env(kube_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "EXPCTL_BACKEND", "GITHUB_ACTOR", "CI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    monkeypatch.setenv("USER", "platform-pat")


def teams_yaml(a: str, b: str | None) -> str:
    text = ("backend: kubernetes\ncode_paths: [train]\nkubernetes:\n  namespace: default\n"
            "  repo_url: https://git.example.com/team/repo.git\n  qps: 50\n  burst: 50\nteams:\n"
            f"  - name: {a}\n    paths: [experiments/a]\n    gpus: 4\n"
            f"    kubernetes: {{namespace: {a}, queue: {a}, users: [{RESTRICTED_USER}], max_jobs: 5, borrow: true}}\n")
    if b:
        text += (f"  - name: {b}\n    paths: [experiments/b]\n    gpus: 2\n"
                 f"    kubernetes: {{namespace: {b}, queue: {b}, users: [{TEAM_B_USER}]}}\n")
    return text


def plan(repo: GitRepo, *args: str) -> dict[tuple[str, str], str]:
    rows: list[dict[str, Any]] = json.loads(ok(repo, "teams", "plan", "-o", "json", *args))
    return {(r["kind"], f"{r['namespace'] or ''}/{r['name']}"): r["action"] for r in rows}


def launch_in(team: str, namespace: str) -> Any:
    return make_launch(make_spec(f"{team}/resnet", overrides=("lr=0.1",), job=make_job(namespace=namespace,
                                                                                       team=team)))


@pytest.mark.timeout(600)
def test_teams_apply_creates_each_teams_objects_once_and_keeps_teams_apart(
        kube_cluster: Cluster, kube_env: None, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    a, b = f"vision-{tag}", f"nlp-{tag}"
    repo = GitRepo(tmp_path / "repo")
    for rel, text in {".gitignore": ".expctl/\n", "expctl.yaml": teams_yaml(a, b), "train/__main__.py": "",
                      "conf/config.yaml": "expctl:\n  kind: PyTorchJob\n  command: [python, -m, train]\n",
                      "experiments/a/resnet.yaml": "defaults:\n  - config\n  - _self_\n",
                      "experiments/b/bert.yaml": "defaults:\n  - config\n  - _self_\n"}.items():
        repo.write(rel, text)
    repo.commit("two teams")

    admin: KubernetesBackend = make_backend(kube_cluster, [a, b])
    with pytest.raises(BackendError, match=f"team {a}'s namespace {a} does not exist yet: run `expctl teams apply`"):
        admin.create(launch_in(a, a))  # before teams apply ran

    first = plan(repo)
    for team in (a, b):
        for kind, where in (("Namespace", f"/{team}"), ("ServiceAccount", f"{team}/expctl-jobs"),
                            ("Role", f"{team}/expctl-team"), ("RoleBinding", f"{team}/expctl-team"),
                            ("ResourceQuota", f"{team}/expctl-team"), ("ClusterQueue", f"/{team}"),
                            ("LocalQueue", f"{team}/{team}")):
            assert first[(kind, where)] == "create", (kind, where, first)
    assert first[("Cohort", "/expctl")] in ("create", "unchanged")  # shared by every team that borrows
    applied = ok(repo, "teams", "apply", "-y")
    assert applied.splitlines()[-1].startswith("Applied: ") and "changes." in applied

    custom = client.CustomObjectsApi(kube_cluster.api_client())
    cq = custom.get_cluster_custom_object(*KUEUE, "clusterqueues", a)
    flavor = cq["spec"]["resourceGroups"][0]["flavors"][0]
    assert (flavor["name"], flavor["resources"]) == ("expctl-default", [{"name": "nvidia.com/gpu", "nominalQuota": 4}])
    assert cq["spec"]["cohortName"] == "expctl" and "cohortName" not in custom.get_cluster_custom_object(
        *KUEUE, "clusterqueues", b)["spec"]
    lq = custom.get_namespaced_custom_object(*KUEUE, b, "localqueues", b)
    assert lq["spec"]["clusterQueue"] == b and lq["metadata"]["labels"]["expctl.io/managed-by"] == "expctl"
    quota = client.CoreV1Api(kube_cluster.api_client()).read_namespaced_resource_quota("expctl-team", a)
    hard = quota.spec.hard
    assert hard["requests.nvidia.com/gpu"] == "4" and hard["count/pytorchjobs.kubeflow.org"] == "5"
    namespace = client.CoreV1Api(kube_cluster.api_client()).read_namespace(a)
    assert namespace.metadata.labels["expctl.io/team"] == a

    assert set(plan(repo).values()) == {"unchanged"}  # a second apply is a no-op
    assert ok(repo, "teams", "apply", "-y").splitlines()[-1].startswith("No changes.")
    history = json.loads(ok(repo, "history", "--team", a, "-o", "json", "--limit", "50"))
    assert {e["action"] for e in history} == {"team-create"} and len(history) == 9

    # team A's identity manages training jobs in its namespace, and nowhere else
    mine = str(kube_cluster.kubeconfig_for(RESTRICTED_USER, RESTRICTED_TOKEN))
    backend: KubernetesBackend = make_backend(kube_cluster, [a, b], kubeconfig=mine)
    backend.create(launch_in(a, a))  # and the git-sync script's ConfigMap its jobs mount (expctl-team-configmaps)
    assert backend.requests["create configmaps"] == 1
    assert client.CoreV1Api(kube_cluster.api_client()).read_namespaced_config_map(configmap_name(), a).data
    with pytest.raises(BackendError) as err:
        backend.create(launch_in(b, b))
    assert str(err.value) == (f'forbidden: cannot create pytorchjobs in namespace "{b}" (user "{RESTRICTED_USER}"): '
                              f"namespace {b} is team {b}'s (its users and groups in expctl.yaml are granted it by "
                              "`expctl teams apply`)")

    # team b is gone from expctl.yaml: its objects are deleted with --prune, its namespace not while it holds
    # an object expctl did not create
    client.CoreV1Api(kube_cluster.api_client()).create_namespaced_config_map(
        b, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="their-notes")))
    repo.write("expctl.yaml", teams_yaml(a, None))
    repo.remove("experiments/b")
    repo.commit("team b leaves")
    kept = plan(repo)
    assert kept[("Namespace", f"/{b}")] == "would-prune" and kept[("ClusterQueue", f"/{b}")] == "would-prune"
    pruning = plan(repo, "--prune")
    assert pruning[("Namespace", f"/{b}")] == "blocked" and pruning[("Role", f"{b}/expctl-team")] == "delete"
    shown = ok(repo, "teams", "plan", "--prune")
    assert f"Namespace/{b}" in shown and "holds objects expctl did not create (configmaps/their-notes)" in shown
    assert ok(repo, "teams", "apply", "-y", "--prune").splitlines()[-1] == "Applied: 8 of 8 changes."
    assert client.CoreV1Api(kube_cluster.api_client()).read_namespace(b).metadata.name == b
    assert plan(repo, "--prune")[("Namespace", f"/{b}")] == "blocked"


def test_teams_plan_names_a_backend_it_cannot_reconcile(kube_env: None, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write(".gitignore", ".expctl/\n")
    repo.write("expctl.yaml", "backend: local\n")
    repo.commit("no teams")
    refused = invoke(repo, "teams", "plan")
    assert refused.exit_code == 1
    assert "nothing to reconcile on backend local (kubernetes:" in refused.output


@pytest.mark.timeout(600)
def test_a_teams_run_lands_in_its_namespace_and_status_shows_why_kueue_holds_it(
        kube_cluster: Cluster, kube_env: None, tmp_path: Path) -> None:
    team = f"vision-{uuid.uuid4().hex[:6]}"
    namespace = create_namespace(kube_cluster.api_client(), team)  # its admin made it (no teams apply here)
    repo = GitRepo(tmp_path / "repo")
    yaml = teams_yaml(team, None).replace(f"namespace: {team}", f"namespace: {namespace}")
    for rel, text in {".gitignore": ".expctl/\n", "expctl.yaml": yaml, "train/__main__.py": "",
                      "conf/config.yaml": "expctl:\n  kind: PyTorchJob\n  command: [python, -m, train]\n"
                                          "  resources: {gpus: 2}\n",
                      "experiments/a/resnet.yaml": "defaults:\n  - config\n  - _self_\n"}.items():
        repo.write(rel, text)
    repo.commit("one team on Kueue")
    ok(repo, "apply", "-y")

    custom = client.CustomObjectsApi(kube_cluster.api_client())
    info = KINDS[JobKind.PYTORCH]
    jobs = custom.list_namespaced_custom_object(info.group, info.version, namespace, info.plural)["items"]
    assert len(jobs) == 1
    labels = jobs[0]["metadata"]["labels"]
    assert (labels["expctl.io/team"], labels["kueue.x-k8s.io/queue-name"]) == (team, team)
    pod = jobs[0]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert pod["serviceAccountName"] == "expctl-jobs"  # its team's, made by `teams apply`

    # play Kueue: the job's Workload is not admitted, for lack of quota in the team's ClusterQueue
    name = jobs[0]["metadata"]["name"]
    why = ("couldn't assign flavors to pod set master: insufficient unused quota for nvidia.com/gpu in flavor "
           "expctl-default, 2 more needed")
    owner = {"apiVersion": f"{info.group}/{info.version}", "kind": "PyTorchJob", "name": name,
             "uid": jobs[0]["metadata"]["uid"], "controller": True}
    workload = {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
                "metadata": {"name": f"pytorchjob-{name}", "ownerReferences": [owner]},
                "spec": {"queueName": team, "podSets": [{"name": "master", "count": 1, "template": {
                    "spec": {"containers": [{"name": "pytorch", "image": "python:3.11-slim"}]}}}]}}
    custom.create_namespaced_custom_object(*KUEUE, namespace, "workloads", workload)
    condition = {"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": why,
                 "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}
    custom.patch_namespaced_custom_object_status(*KUEUE, namespace, "workloads", f"pytorchjob-{name}",
                                                 {"status": {"conditions": [condition]}})

    rows = json.loads(ok(repo, "status", "-o", "json"))
    assert [(r["run"], r["team"], r["state"], r["reason"]) for r in rows] == [(name, team, "Pending", f"queued: {why}")]
    assert "queued: couldn't assign flavors" in ok(repo, "status")
