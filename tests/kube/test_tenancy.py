"""Tenancy and idempotency on the real apiserver: RBAC-restricted tokens, 409 handling, request counts."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from kubernetes import client

from expctl.backends.kubernetes.backend import KubernetesBackend
from expctl.backends.kubernetes.manifests import gitsync
from expctl.backends.kubernetes.manifests.common import git_sync_configmap
from expctl.core.errors import BackendError
from tests.support.factories import make_job, make_launch, make_spec
from tests.support.kube_cluster import RESTRICTED_TOKEN, RESTRICTED_USER, Cluster, create_namespace
from tests.support.kube_driver import make_backend

pytestmark = pytest.mark.kube

JOB_RESOURCES = ["pytorchjobs", "tfjobs", "mpijobs", "trainjobs"]


def grant_team_a(cluster: Cluster, namespace: str) -> None:
    """Role + RoleBinding: the restricted user may manage training jobs (and their pods) in ``namespace``, and
    read the git-sync script's ConfigMap there (made by an admin: the user may not create it)."""
    custom = client.CustomObjectsApi(cluster.api_client())
    rules = [
        {
            "apiGroups": ["kubeflow.org", "trainer.kubeflow.org"],
            "resources": JOB_RESOURCES,
            "verbs": ["get", "list", "watch", "create", "patch", "delete"],
        },
        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "deletecollection"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},  # not create: an admin made it
    ]
    rbac = ("rbac.authorization.k8s.io", "v1", namespace)
    custom.create_namespaced_custom_object(*rbac, "roles", {"metadata": {"name": "expctl-ci"}, "rules": rules})
    custom.create_namespaced_custom_object(
        *rbac,
        "rolebindings",
        {
            "metadata": {"name": "expctl-ci"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "expctl-ci"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": RESTRICTED_USER}],
        },
    )


def launch_in(namespace: str, experiment: str = "team-a/resnet"):  # type: ignore[no-untyped-def]
    job = make_job(replicas=2, namespace=namespace)
    return make_launch(make_spec(experiment, overrides=("lr=0.1",), job=job))


def test_restricted_token_creates_in_its_namespace_only(kube_cluster: Cluster) -> None:
    team_a = create_namespace(kube_cluster.api_client(), "team-a")
    team_b = create_namespace(kube_cluster.api_client(), "team-b")
    grant_team_a(kube_cluster, team_a)
    client.CoreV1Api(kube_cluster.api_client()).create_namespaced_config_map(team_a, git_sync_configmap(team_a))
    kubeconfig = str(kube_cluster.kubeconfig_for(RESTRICTED_USER, RESTRICTED_TOKEN))
    backend: KubernetesBackend = make_backend(kube_cluster, [team_a, team_b], kubeconfig=kubeconfig)

    mine = launch_in(team_a)
    backend.create(mine)
    assert [r.name for r in make_backend(kube_cluster, [team_a]).observe()] == [mine.name]

    with pytest.raises(BackendError) as err:
        backend.create(launch_in(team_b, "team-b/bert"))
    message = str(err.value)
    # no ConfigMap there either (nor may the user make or read one): the job, script inline, is refused itself
    assert message == f'forbidden: cannot create pytorchjobs in namespace "{team_b}" (user "{RESTRICTED_USER}")'
    assert backend.requests["create configmaps"] == 2 and backend.requests["get configmaps"] == 2
    assert backend.requests["create pytorchjobs"] == 2  # team-a's, and the refused one
    assert "\n" not in message

    with pytest.raises(BackendError, match=rf'forbidden: cannot list pytorchjobs in namespace "{team_b}"'):
        backend.observe()


def test_jobs_carry_the_script_where_no_configmap_may_be_made_or_read(
        kube_cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    """An expctl upgrade needs no new permission: where the user may neither create the git-sync ConfigMap nor
    find it, the jobs run the script inline as before (one warning), and nothing is half-made."""
    team_c = create_namespace(kube_cluster.api_client(), "team-c")
    grant_team_a(kube_cluster, team_c)  # jobs and ConfigMaps' get only, and no ConfigMap made by an admin
    kubeconfig = str(kube_cluster.kubeconfig_for(RESTRICTED_USER, RESTRICTED_TOKEN))
    backend: KubernetesBackend = make_backend(kube_cluster, [team_c], kubeconfig=kubeconfig)
    first, second = launch_in(team_c), launch_in(team_c, "team-a/other")
    with caplog.at_level("WARNING", logger="expctl.backends.kubernetes.script_configmap"):
        backend.create(first)
        backend.create(second)
    assert [r.message for r in caplog.records if "inline" in r.message] == [caplog.records[0].message]
    assert f"configmap/{gitsync.configmap_name()}" in caplog.records[0].message
    assert backend.requests["create configmaps"] == 1  # asked once per namespace, not per job
    custom = client.CustomObjectsApi(kube_cluster.api_client())
    for launch in (first, second):
        job = custom.get_namespaced_custom_object("kubeflow.org", "v1", team_c, "pytorchjobs", launch.name)
        for role in job["spec"]["pytorchReplicaSpecs"].values():
            pod = role["template"]["spec"]
            assert pod["initContainers"][0]["command"] == ["sh", "-c", gitsync.clone_script()]
            assert "expctl-git-sync" not in [v["name"] for v in pod["volumes"]]
    maps = client.CoreV1Api(kube_cluster.api_client()).list_namespaced_config_map(team_c).items
    assert not [c for c in maps if c.metadata.name.startswith(gitsync.CONFIGMAP_PREFIX)]


def test_backend_refuses_namespaces_outside_its_tenancy(kube_cluster: Cluster, namespace: str) -> None:
    backend: KubernetesBackend = make_backend(kube_cluster, [namespace])
    before = sum(backend.requests.values())
    with pytest.raises(BackendError, match=r'refusing to create .* in namespace "elsewhere"'):
        backend.create(launch_in("elsewhere"))
    assert sum(backend.requests.values()) == before  # refused before any request


def _requests_by_verb(metrics: str, resource: str) -> Counter[str]:
    """apiserver_request_total for one resource, as ``"<VERB> <code>" -> count``."""
    counts: Counter[str] = Counter()
    for line in metrics.splitlines():
        if not line.startswith("apiserver_request_total{") or f'resource="{resource}"' not in line:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        counts[f"{labels['verb']} {labels['code']}"] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def test_second_identical_create_writes_nothing(kube_cluster: Cluster, namespace: str) -> None:
    backend: KubernetesBackend = make_backend(kube_cluster, [namespace])
    launch = launch_in(namespace)
    backend.create(launch)
    server_before = _requests_by_verb(kube_cluster.metrics(), "pytorchjobs")
    client_before = Counter(backend.requests)

    backend.create(launch)

    server_delta = _requests_by_verb(kube_cluster.metrics(), "pytorchjobs") - server_before
    # one refused POST and one read; kube-apiserver 1.20 labels a custom resource GET as verb "LIST"
    reads = server_delta.pop("GET 200", 0) + server_delta.pop("LIST 200", 0)
    assert (reads, server_delta) == (1, Counter({"POST 409": 1})), server_delta
    assert Counter(backend.requests) - client_before == Counter({"create pytorchjobs": 1, "get pytorchjobs": 1})


def test_create_conflicting_spec_hash_is_an_error(kube_cluster: Cluster, namespace: str) -> None:
    backend: KubernetesBackend = make_backend(kube_cluster, [namespace])
    launch = launch_in(namespace)
    backend.create(launch)
    from dataclasses import replace

    changed = replace(launch, spec=replace(launch.spec, spec_hash="0" * 20))
    with pytest.raises(BackendError, match="already exists with spec hash"):
        backend.create(changed)


def test_two_projects_in_one_namespace_never_take_each_others_jobs(kube_cluster: Cluster, namespace: str) -> None:
    """Two repositories with an experiment of the same name, applied to one namespace: each observes its own jobs
    (and those of an older expctl, unlabelled); a create that meets the other's object fails in one line."""
    vision, speech = (make_backend(kube_cluster, [namespace], project=p) for p in ("vision", "github.com/org/speech"))
    older = make_backend(kube_cluster, [namespace])  # an older expctl: no project label
    theirs, unlabelled = launch_in(namespace), launch_in(namespace, "team-a/older")
    vision.create(theirs)
    older.create(unlabelled)
    assert sorted(r.name for r in vision.observe()) == sorted([theirs.name, unlabelled.name])
    assert [r.name for r in speech.observe()] == [unlabelled.name]
    with pytest.raises(BackendError) as err:
        speech.create(theirs)  # same experiment, same run key: same object name
    assert str(err.value) == (
        f"pytorchjobs/{theirs.name} in namespace {namespace} belongs to project vision, not github.com/org/speech: "
        "two projects share a namespace and an experiment name (give one of them its own namespace)")
    with pytest.raises(BackendError, match="no run named"):
        speech.cancel(theirs.name, "bob")  # nor cancelled by the other
    vision.create(theirs)  # its own: a 409 with the same spec hash is success
    # the first repository declares its project later: its objects, labelled with the derived one, stay its own
    declared = make_backend(kube_cluster, [namespace], project="team-vision", derived_project="vision")
    assert sorted(r.name for r in declared.observe()) == sorted([theirs.name, unlabelled.name])
    declared.create(theirs)
