"""The Kubernetes backend on a real apiserver: statuses, paging, cancel, logs, missing CRDs."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
import yaml
from kubernetes import client

from expctl.backends.kubernetes.backend import KubernetesBackend
from expctl.core.errors import BackendError, ExpctlError
from expctl.core.model import FailureClass, JobKind, Launch, Phase, Scheduling
from tests.support.factories import make_job, make_launch, make_spec
from tests.support.kube_cluster import Cluster, find_crds, install_crds
from tests.support.kube_driver import conditions, make_backend, patch_status

pytestmark = pytest.mark.kube


def launch_of(kind: JobKind, namespace: str, experiment: str, replicas: int = 2, **job: Any) -> Launch:
    job.setdefault("runtime", "torch-distributed" if kind is JobKind.TRAIN else None)
    spec = make_spec(experiment, job=make_job(kind, replicas, namespace=namespace, **job))
    return make_launch(spec)


def add_pod(cluster: Cluster, namespace: str, name: str, labels: dict[str, str]) -> None:
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(containers=[client.V1Container(name="pytorch", image="busybox")]),
    )
    client.CoreV1Api(cluster.api_client()).create_namespaced_pod(namespace, pod)


def pod_names(cluster: Cluster, namespace: str) -> list[str]:
    pods = client.CoreV1Api(cluster.api_client()).list_namespaced_pod(namespace)
    return sorted(p.metadata.name for p in pods.items)


@pytest.mark.parametrize(
    ("kind", "outcome", "reason", "message", "phase", "failure"),
    [
        (JobKind.PYTORCH, "run", "", "", Phase.RUNNING, None),
        (JobKind.TF, "succeed", "", "", Phase.SUCCEEDED, None),
        (JobKind.MPI, "fail", "MPIJobFailed", "launcher exited with code 2", Phase.FAILED, FailureClass.CODE),
        (
            JobKind.PYTORCH,
            "fail",
            "PyTorchJobFailed",
            "pod demo-worker-0 Evicted",
            Phase.FAILED,
            FailureClass.INFRASTRUCTURE,
        ),
        (JobKind.TRAIN, "run", "", "", Phase.PENDING, None),
        (JobKind.TRAIN, "succeed", "", "", Phase.SUCCEEDED, None),
        (
            JobKind.TRAIN,
            "fail",
            "FailedJobs",
            "jobset failed: OOMKilled",
            Phase.FAILED,
            FailureClass.INFRASTRUCTURE,
        ),
    ],
)
def test_observed_phase_per_kind(
    kube_cluster: Cluster,
    namespace: str,
    kind: JobKind,
    outcome: str,
    reason: str,
    message: str,
    phase: Phase,
    failure: FailureClass | None,
) -> None:
    backend: KubernetesBackend = make_backend(kube_cluster, [namespace])
    launch = launch_of(kind, namespace, "status")
    backend.create(launch)
    patch_status(kube_cluster, namespace, kind, launch.name, conditions(kind.value, outcome, reason, message))
    (run,) = backend.observe()
    assert (run.kind, run.phase, run.failure) == (kind.value, phase, failure)
    assert (run.finished_at is not None) == phase.finished


def test_observe_pages_through_large_lists(kube_cluster: Cluster, namespace: str) -> None:
    backend: KubernetesBackend = make_backend(kube_cluster, [namespace], page_size=2)
    names = []
    for i in range(5):
        launch = launch_of(JobKind.PYTORCH, namespace, f"paged-{i}")
        backend.create(launch)
        names.append(launch.name)
    before = backend.requests["list pytorchjobs"]
    assert sorted(r.name for r in backend.observe()) == sorted(names)
    assert backend.requests["list pytorchjobs"] - before == 3  # 2 + 2 + 1


def test_observe_ignores_objects_without_the_managed_by_label(kube_cluster: Cluster, namespace: str) -> None:
    backend: KubernetesBackend = make_backend(kube_cluster, [namespace])
    launch = launch_of(JobKind.PYTORCH, namespace, "foreign")
    from expctl.backends.kubernetes.manifests import render_manifest

    manifest = render_manifest(launch, backend.settings)
    del manifest["metadata"]["labels"]["expctl.io/managed-by"]
    client.CustomObjectsApi(kube_cluster.api_client()).create_namespaced_custom_object(
        "kubeflow.org", "v1", namespace, "pytorchjobs", manifest
    )
    assert backend.observe() == []
    with pytest.raises(BackendError, match="not managed by expctl"):
        backend.delete(launch.name)
    with pytest.raises(BackendError, match="not managed by expctl"):
        backend.create(launch)


@pytest.mark.parametrize(("queue", "suspended"), [(None, True), ("team-a-queue", False)])
def test_cancel_keeps_the_object_records_who_and_stops_pods(
    kube_cluster: Cluster, namespace: str, queue: str | None, suspended: bool
) -> None:
    backend: KubernetesBackend = make_backend(kube_cluster, [namespace])
    launch = launch_of(JobKind.PYTORCH, namespace, "cancel", scheduling=Scheduling(queue=queue))
    backend.create(launch)
    patch_status(kube_cluster, namespace, JobKind.PYTORCH, launch.name, conditions("PyTorchJob", "run"))
    job_label = {"training.kubeflow.org/job-name": launch.name}
    add_pod(kube_cluster, namespace, f"{launch.name}-master-0", job_label)
    add_pod(kube_cluster, namespace, f"{launch.name}-worker-0", job_label)
    add_pod(kube_cluster, namespace, "unrelated", {"training.kubeflow.org/job-name": "other"})

    backend.cancel(launch.name, by="alice")

    (run,) = backend.observe()
    assert (run.phase, run.cancelled, run.message) == (Phase.CANCELLED, True, "cancelled by alice")
    obj = client.CustomObjectsApi(kube_cluster.api_client()).get_namespaced_custom_object(
        "kubeflow.org", "v1", namespace, "pytorchjobs", launch.name
    )
    assert obj["metadata"]["annotations"]["expctl.io/cancelled-by"] == "alice"
    assert obj["spec"]["runPolicy"].get("suspend", False) is suspended  # never touched when Kueue owns it
    deadline = time.monotonic() + 10  # pods without a kubelet finish deleting at once (no finalizers)
    while pod_names(kube_cluster, namespace) != ["unrelated"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pod_names(kube_cluster, namespace) == ["unrelated"]


def test_cancel_of_unknown_run_is_an_error(kube_cluster: Cluster, namespace: str) -> None:
    backend: KubernetesBackend = make_backend(kube_cluster, [namespace])
    with pytest.raises(BackendError, match="no run named nope"):
        backend.cancel("nope", by="alice")


def test_logs_select_replicas_and_explain_missing_pods(kube_cluster: Cluster, namespace: str) -> None:
    backend: KubernetesBackend = make_backend(kube_cluster, [namespace])
    launch = launch_of(JobKind.PYTORCH, namespace, "logs", replicas=3)
    backend.create(launch)
    with pytest.raises(ExpctlError, match=r"run .* \(pending\) has no pods yet"):
        list(backend.logs(launch.name))
    for role, index in (("master", "0"), ("worker", "0"), ("worker", "1")):
        labels = {
            "training.kubeflow.org/job-name": launch.name,
            "training.kubeflow.org/replica-type": role,
            "training.kubeflow.org/replica-index": index,
        }
        add_pod(kube_cluster, namespace, f"{launch.name}-{role}-{index}", labels)
    assert backend.pods(launch.name, "worker") == [f"{launch.name}-worker-0", f"{launch.name}-worker-1"]
    assert backend.pods(launch.name, "Worker-1") == [f"{launch.name}-worker-1"]
    assert backend.pods(launch.name, "master") == [f"{launch.name}-master-0"]
    assert len(backend.pods(launch.name)) == 3
    with pytest.raises(ExpctlError, match="has no pods for replica chief"):
        list(backend.logs(launch.name, "chief"))
    # no kubelet here: an unscheduled pod has no logs yet (the apiserver answers 204 No Content)
    assert list(backend.logs(launch.name, "master")) == []
    assert list(backend.logs(launch.name)) == []


def test_a_kind_whose_crd_is_missing_is_skipped(
    kube_cluster: Cluster, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend: KubernetesBackend = make_backend(kube_cluster, [namespace])
    launch = launch_of(JobKind.PYTORCH, namespace, "still-seen")
    backend.create(launch)
    api = kube_cluster.api_client()
    custom = client.CustomObjectsApi(api)
    crd = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    custom.delete_cluster_custom_object(*crd, "mpijobs.kubeflow.org")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            names = [c["metadata"]["name"] for c in custom.list_cluster_custom_object(*crd)["items"]]
            if "mpijobs.kubeflow.org" not in names:
                break
            time.sleep(0.2)
        with caplog.at_level(logging.DEBUG, logger="expctl.backends.kubernetes"):
            assert [r.name for r in backend.observe()] == [launch.name]
        assert "mpijobs is not installed on the cluster; skipping it" in caplog.text
    finally:
        tmp = kube_cluster.run_dir / "mpijobs-crd"
        tmp.mkdir(exist_ok=True)
        source = next(find_crds().glob("*mpijobs*.yaml"))
        (tmp / source.name).write_text(yaml.safe_dump(yaml.safe_load(source.read_text())))
        install_crds(api, tmp)
