"""The shared backend contract, passed by the Kubernetes backend on a real apiserver."""

from __future__ import annotations

import pytest

from expctl.backends.kubernetes.backend import KubernetesBackend
from tests.contract.backend_suite import BackendContract
from tests.support.kube_cluster import Cluster
from tests.support.kube_driver import KubeDriver, make_backend

pytestmark = pytest.mark.kube


class TestKubernetesContract(BackendContract):
    @pytest.fixture
    def backend(self, kube_cluster: Cluster, namespace: str) -> KubernetesBackend:
        backend: KubernetesBackend = make_backend(kube_cluster, [namespace])
        return backend

    @pytest.fixture
    def driver(self, kube_cluster: Cluster, namespace: str) -> KubeDriver:
        return KubeDriver(kube_cluster, namespace)
