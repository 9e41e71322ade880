"""Every kind's rendered manifest is accepted by the real apiserver as is (no 422, nothing pruned)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from kubernetes import client

from expctl.backends.kubernetes.backend import KubernetesBackend
from expctl.backends.kubernetes.manifests import KINDS, KubeSettings, render_manifest
from expctl.backends.kubernetes.manifests.common import MANAGED_SELECTOR
from expctl.backends.kubernetes.manifests.trainjob import render_runtime
from expctl.core.model import JobKind, Launch, Resources, Scheduling
from tests.support.factories import make_job, make_launch, make_spec
from tests.support.kube_cluster import Cluster
from tests.support.kube_driver import assert_kept, make_backend

pytestmark = pytest.mark.kube

TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def full_launch(kind: JobKind, namespace: str, **sched: Any) -> Launch:
    scheduling = Scheduling(
        queue=sched.get("queue"),
        priority_class="research-high",
        volcano_queue=sched.get("volcano_queue"),
        node_selector=(("cloud.google.com/gke-accelerator", "nvidia-tesla-a100"),),
        tolerations=(TOLERATION,),
    )
    job = make_job(
        kind,
        replicas=3,
        namespace=namespace,
        resources=Resources(cpu="4", memory="16Gi", gpus=2),
        scheduling=scheduling,
        env=(("BATCH_SIZE", "64"),),
        timeout_seconds=3600,
        runtime="torch-distributed" if kind is JobKind.TRAIN else None,
        git_secret="repo-credentials",
        team="manifests",
        outputs=sched.get("outputs"),
    )
    spec = make_spec(f"manifests/{kind.value.lower()}", overrides=("lr=0.01", "model=resnet50"), job=job)
    return make_launch(spec, tracking_uri="http://mlflow.mlflow.svc:5000")


CASES = [
    (JobKind.PYTORCH, {"queue": "team-a-queue"}),
    (JobKind.PYTORCH, {"volcano_queue": "research"}),
    (JobKind.TF, {"queue": "team-a-queue"}),
    (JobKind.TF, {"volcano_queue": "research"}),
    (JobKind.MPI, {"queue": "team-a-queue"}),
    (JobKind.MPI, {"volcano_queue": "research"}),
    (JobKind.TRAIN, {"queue": "team-a-queue"}),
    # a producer (outputs:): its writing replica's emptyDir, env and wrapped command
    (JobKind.PYTORCH, {"outputs": "manifests-out"}),
    (JobKind.MPI, {"outputs": "manifests-out"}),
    (JobKind.TRAIN, {"outputs": "manifests-out"}),
]


def test_every_kind_is_accepted_unchanged_and_listed(kube_cluster: Cluster, namespace: str) -> None:
    backend: KubernetesBackend = make_backend(kube_cluster, [namespace])
    # envFrom / secretKeyRef too, and the pods of a team's runs as its jobs' ServiceAccount
    backend.settings = replace(backend.settings, tracking_secret="mlflow-creds", account_teams=("manifests",))
    custom = client.CustomObjectsApi(kube_cluster.api_client())
    created = []
    for i, (kind, sched) in enumerate(CASES):
        launch = full_launch(kind, namespace, **sched)
        launch = make_launch(
            make_spec(
                f"manifests/case-{i}",
                overrides=launch.spec.overrides,
                job=launch.spec.job,
            ),
            tracking_uri="http://ci:hunter2@mlflow.mlflow.svc:5000",
        )
        rendered = render_manifest(launch, backend.settings)
        assert "hunter2" not in str(rendered)
        assert "'serviceAccountName': 'expctl-jobs'" in str(rendered)
        backend.create(launch)  # a 422 (schema violation) would raise BackendError here
        info = KINDS[kind]
        stored = custom.get_namespaced_custom_object(info.group, info.version, namespace, info.plural, launch.name)
        assert_kept(rendered, stored)
        created.append((kind.value, launch.name))
    listed = []
    for info in KINDS.values():
        page = custom.list_namespaced_custom_object(
            info.group, info.version, namespace, info.plural, label_selector=MANAGED_SELECTOR
        )
        listed += [(item["kind"], item["metadata"]["name"]) for item in page["items"]]
    assert sorted(listed) == sorted(created)
    observed = {(r.kind, r.name): r for r in backend.observe()}
    assert sorted(observed) == sorted(created)
    assert all(r.gpus == 2 and r.replicas == 3 for r in observed.values())


def test_training_runtime_with_git_sync_is_accepted(kube_cluster: Cluster, namespace: str) -> None:
    settings = KubeSettings(namespace=namespace, repo_url="https://git.example.com/r.git")
    custom = client.CustomObjectsApi(kube_cluster.api_client())
    namespaced = render_runtime("torch-git", settings, "pytorch/pytorch:2.4.0", namespace=namespace)
    custom.create_namespaced_custom_object(
        "trainer.kubeflow.org", "v1alpha1", namespace, "trainingruntimes", namespaced
    )
    stored = custom.get_namespaced_custom_object(
        "trainer.kubeflow.org", "v1alpha1", namespace, "trainingruntimes", "torch-git"
    )
    assert_kept(namespaced, stored)
    cluster_wide = render_runtime(f"torch-git-{namespace}", settings, "pytorch/pytorch:2.4.0", volcano=True)
    custom.create_cluster_custom_object("trainer.kubeflow.org", "v1alpha1", "clustertrainingruntimes", cluster_wide)
    stored = custom.get_cluster_custom_object(
        "trainer.kubeflow.org", "v1alpha1", "clustertrainingruntimes", cluster_wide["metadata"]["name"]
    )
    assert_kept(cluster_wide, stored)


def test_the_pruning_check_has_teeth(kube_cluster: Cluster, namespace: str) -> None:
    """A field the CRD does not know is dropped silently by the apiserver, and ``assert_kept`` notices."""
    settings = KubeSettings(namespace=namespace)
    manifest = render_manifest(full_launch(JobKind.PYTORCH, namespace), settings)
    manifest["spec"]["runPolicy"]["notAField"] = True
    custom = client.CustomObjectsApi(kube_cluster.api_client())
    custom.create_namespaced_custom_object("kubeflow.org", "v1", namespace, "pytorchjobs", manifest)
    stored = custom.get_namespaced_custom_object(
        "kubeflow.org", "v1", namespace, "pytorchjobs", manifest["metadata"]["name"]
    )
    with pytest.raises(AssertionError, match="notAField was pruned"):
        assert_kept(manifest, stored)
