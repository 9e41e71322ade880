"""Fixtures of the Kubernetes backend tests: the session's real kube-apiserver (``tests/support/kube_cluster.py``
says how it is provisioned), a fresh namespace per test, and the environment a CLI test runs in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.kube_cluster import Cluster, create_namespace, start_cluster


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """etcd + kube-apiserver with the Kubeflow CRDs, for the whole session; stopped at the end."""
    cluster = start_cluster(tmp_path_factory.mktemp("kube"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def namespace(kube_cluster: Cluster) -> str:
    """A fresh namespace per test (namespaces are not deleted: no controller-manager runs)."""
    return create_namespace(kube_cluster.api_client())


@pytest.fixture
def kube_environment(kube_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The apply Lease is opened from $KUBECONFIG (like in CI); nothing else from the environment leaks in."""
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    for var in ("MLFLOW_TRACKING_URI", "EXPCTL_BACKEND", "GITHUB_ACTOR", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
