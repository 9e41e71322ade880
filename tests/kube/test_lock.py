"""The Lease lock on a real apiserver: contention, bounded waits, renewal, release and takeover."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from expctl.backends.kubernetes.backend import KubernetesBackend
from expctl.core.errors import LockError
from tests.support.kube_cluster import Cluster
from tests.support.kube_driver import make_backend

pytestmark = pytest.mark.kube


def lease_spec(cluster: Cluster, namespace: str, name: str) -> dict[str, object]:
    custom = client.CustomObjectsApi(cluster.api_client())
    lease = custom.get_namespaced_custom_object("coordination.k8s.io", "v1", namespace, "leases", name)
    spec: dict[str, object] = lease["spec"]
    return spec


def test_second_holder_waits_then_times_out_while_the_first_renews(kube_cluster: Cluster, namespace: str) -> None:
    backend: KubernetesBackend = make_backend(kube_cluster, [namespace])
    first = backend.lock(identity="ci-run-1", duration_seconds=2, poll_seconds=0.2)
    second = backend.lock(identity="ci-run-2", duration_seconds=2, poll_seconds=0.2)
    first.acquire(timeout=5)
    try:
        started = time.monotonic()
        with pytest.raises(LockError, match=r'lease .*/expctl-apply is held by "ci-run-1"'):
            second.acquire(timeout=4)  # twice the lease duration: only renewal keeps it held
        assert time.monotonic() - started > 3.5  # it waited (no upper bound: speed is not asserted in tests)
        assert first.held and not first.lost
        assert lease_spec(kube_cluster, namespace, "expctl-apply")["holderIdentity"] == "ci-run-1"
    finally:
        first.release()
    second.acquire(timeout=3)  # released: no need to wait for expiry
    try:
        spec = lease_spec(kube_cluster, namespace, "expctl-apply")
        assert spec["holderIdentity"] == "ci-run-2"
        assert spec["leaseTransitions"] == 1
    finally:
        second.release()


def test_takeover_after_the_holder_stops_renewing(kube_cluster: Cluster, namespace: str) -> None:
    backend: KubernetesBackend = make_backend(kube_cluster, [namespace])
    crashed = backend.lock("apply", identity="crashed", duration_seconds=2, renew=False)
    crashed.acquire(timeout=5)  # never released: the holder "crashed"
    successor = backend.lock("apply", identity="successor", duration_seconds=2, poll_seconds=0.2)
    started = time.monotonic()
    successor.acquire(timeout=10)
    try:
        assert time.monotonic() - started > 1.0  # it waited for the lease to expire
        spec = lease_spec(kube_cluster, namespace, "apply")
        assert spec["holderIdentity"] == "successor"
        assert spec["leaseTransitions"] == 1
    finally:
        successor.release()
    assert lease_spec(kube_cluster, namespace, "apply")["holderIdentity"] == ""


def test_context_manager_and_lost_lease_detection(kube_cluster: Cluster, namespace: str) -> None:
    backend: KubernetesBackend = make_backend(kube_cluster, [namespace])
    with backend.lock("ctx", identity="me", duration_seconds=3) as lock:
        assert lock.held
        # someone else overwrites the lease: our next renewal conflicts and the lock knows it is lost
        custom = client.CustomObjectsApi(kube_cluster.api_client())
        custom.patch_namespaced_custom_object(
            "coordination.k8s.io",
            "v1",
            namespace,
            "leases",
            "ctx",
            {"spec": {"holderIdentity": "intruder"}},
            _content_type="application/merge-patch+json",
        )
        deadline = time.monotonic() + 5
        while not lock.lost and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lock.lost
        with pytest.raises(LockError, match="lost lease"):
            lock.check()
    assert lease_spec(kube_cluster, namespace, "ctx")["holderIdentity"] == "intruder"


def test_lease_lock_from_project_settings(
    kube_cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``expctl apply`` uses: the backend and the Lease from ``expctl.yaml`` and $KUBECONFIG."""
    from expctl.backends.kubernetes.backend import lease_lock, open_kubernetes
    from expctl.backends.kubernetes.settings import KubernetesIn
    from expctl.config.schema import Settings, TenantIn

    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    settings = Settings(
        kubernetes=KubernetesIn(namespace=namespace, qps=50, burst=20),
        tenants=[TenantIn(path="experiments/team-a", namespace="team-a-ns", queue="q")],
    )
    backend = open_kubernetes(settings)
    assert backend.namespaces == sorted([namespace, "team-a-ns"])
    assert backend.observe() == []
    with lease_lock(settings, timeout=5) as lock:
        assert lease_spec(kube_cluster, namespace, "expctl-apply")["holderIdentity"] == lock.identity
        with pytest.raises(LockError, match="is held by"), lease_lock(settings, timeout=1):
            pass
    assert lease_spec(kube_cluster, namespace, "expctl-apply")["holderIdentity"] == ""
