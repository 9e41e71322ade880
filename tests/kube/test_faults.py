"""Faults injected between expctl and the real kube-apiserver (``tests/support/proxy.py``, terminating TLS with
the apiserver's own certificate so the client still verifies the real CA).

Transient faults (5xx, 429 with Retry-After, resets, a lost response to a create, slow answers) are retried by
expctl's retrier and never duplicate a job; an unhealthy or dead apiserver fails in one line within seconds; an
apiserver that dies in the middle of creating jobs leaves nothing that a rerun does not converge.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from expctl.backends.kubernetes.backend import KubernetesBackend
from expctl.core.errors import BackendError
from expctl.core.model import JobKind, Launch
from tests.support.factories import make_job, make_launch, make_spec
from tests.support.kube_cluster import Cluster
from tests.support.kube_driver import make_backend
from tests.support.proxy import FaultProxy, Rule

pytestmark = pytest.mark.kube

LIST = r"/apis/kubeflow\.org/v1/namespaces/[^/]+/pytorchjobs(\?|$)"
CREATE = r"/apis/kubeflow\.org/v1/namespaces/[^/]+/pytorchjobs(\?|$)"


@pytest.fixture
def proxy(kube_cluster: Cluster) -> Iterator[FaultProxy]:
    certs = kube_cluster.run_dir / "certs"
    fp = FaultProxy(upstream=f"127.0.0.1:{kube_cluster.port}", tls_cert=certs / "apiserver.crt",
                    tls_key=certs / "apiserver.key", ca=certs / "apiserver.crt").start()
    yield fp
    fp.close()


def kubeconfig(cluster: Cluster, proxy: FaultProxy, path: Path) -> str:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    for entry in config["clusters"]:
        entry["cluster"]["server"] = proxy.url
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture
def backend(kube_cluster: Cluster, proxy: FaultProxy, namespace: str, tmp_path: Path) -> KubernetesBackend:
    b: KubernetesBackend = make_backend(kube_cluster, [namespace], kubeconfig(kube_cluster, proxy,
                                                                              tmp_path / "kubeconfig"))
    return b


def launches(namespace: str, n: int) -> list[Launch]:
    job = make_job(JobKind.PYTORCH, 1, namespace=namespace)
    return [make_launch(make_spec(f"faults-{i}", job=job)) for i in range(n)]


def objects(cluster: Cluster, namespace: str) -> list[str]:
    from kubernetes import client

    items = client.CustomObjectsApi(cluster.api_client()).list_namespaced_custom_object(
        "kubeflow.org", "v1", namespace, "pytorchjobs")["items"]
    return sorted(o["metadata"]["name"] for o in items)


@pytest.mark.parametrize("rule", [
    Rule("GET", LIST, "status", times=2, status=503),
    Rule("GET", LIST, "status", times=1, status=429, retry_after=1),
    Rule("GET", LIST, "reset-before", times=1),
    Rule("GET", LIST, "delay", times=1, delay=1.0),
], ids=["two 503s", "429 with Retry-After", "connection reset", "slow answer"])
def test_transient_faults_on_reads_are_retried(backend: KubernetesBackend, proxy: FaultProxy, rule: Rule) -> None:
    proxy.add(rule)
    started = time.monotonic()
    assert backend.observe() == []
    assert rule.hits == rule.times
    if rule.retry_after:
        assert time.monotonic() - started >= rule.retry_after  # Retry-After honoured


@pytest.mark.parametrize("rule", [
    Rule("POST", CREATE, "status", times=1, status=503),
    Rule("POST", CREATE, "reset-before", times=1),
    Rule("POST", CREATE, "reset-after", times=1),  # created, but the client never heard: the retry gets 409
], ids=["503", "reset before the server saw it", "response lost"])
def test_faults_on_create_never_duplicate_a_job(backend: KubernetesBackend, proxy: FaultProxy,
                                                kube_cluster: Cluster, namespace: str, rule: Rule) -> None:
    proxy.add(rule)
    (launch,) = launches(namespace, 1)
    backend.create(launch)
    assert rule.hits == 1
    assert objects(kube_cluster, namespace) == [launch.name]
    assert [r.name for r in backend.observe()] == [launch.name]


def test_an_unhealthy_apiserver_fails_fast_in_one_line(backend: KubernetesBackend, proxy: FaultProxy) -> None:
    rule = Rule("GET", r"^/version", "status", times=-1, status=503)
    proxy.add(rule)
    with pytest.raises(BackendError) as err:
        backend.check()
    assert "is unhealthy: /version answered HTTP 503" in str(err.value) and "\n" not in str(err.value)
    assert rule.hits == 1  # fast because it is not retried (the retrier's budget is for answers that may change)


def test_a_dead_apiserver_fails_fast_in_one_line(backend: KubernetesBackend, proxy: FaultProxy) -> None:
    proxy.stop()
    with pytest.raises(BackendError) as err:
        backend.check()
    assert "is unreachable" in str(err.value) and "\n" not in str(err.value)


def test_apiserver_dies_mid_apply_then_rerun_converges(backend: KubernetesBackend, proxy: FaultProxy,
                                                       kube_cluster: Cluster, namespace: str) -> None:
    wanted = launches(namespace, 4)
    proxy.add(Rule("POST", CREATE, "die", times=1, nth=3))
    failed: list[str] = []
    for launch in wanted:
        try:
            backend.create(launch)
        except BackendError as exc:
            assert "\n" not in str(exc)
            failed.append(launch.name)
    assert failed == [w.name for w in wanted[2:]]
    assert len(objects(kube_cluster, namespace)) == 2
    proxy.clear()
    proxy.start()
    for launch in wanted:  # the rerun: creates are idempotent by name and spec hash
        backend.create(launch)
    assert objects(kube_cluster, namespace) == sorted(w.name for w in wanted)




def test_apiserver_dies_mid_apply_the_engine_stops_launching(backend: KubernetesBackend, proxy: FaultProxy,
                                                             kube_cluster: Cluster, namespace: str,
                                                             tmp_path: Path) -> None:
    """Through the engine: once the apiserver cannot be reached (after the retries), no further change is
    started — each one would only fail the same way after its own retries — and the apply exits 3, listing what
    was not applied; a rerun against the healthy apiserver converges, each job created once."""
    from expctl.config.desired_state import Desired
    from expctl.config.schema import Settings
    from expctl.config.source import Snapshot
    from expctl.engine.apply import ApplyOptions, Hooks, run_apply
    from expctl.engine.plan import PlanOptions
    from expctl.tracking.mlflow.store import MlflowStore

    job = make_job(JobKind.PYTORCH, 1, namespace=namespace)
    desired = Desired(Snapshot(Path("."), "c" * 40, "c" * 40), Settings(),
                      [make_spec("dies", (f"seed={i}",), job=job) for i in range(20)])
    proxy.add(Rule("POST", CREATE, "die", times=1, nth=4))  # then the proxy is gone: connection refused
    tracker = MlflowStore(f"sqlite:///{tmp_path / 'mlflow.db'}", "kubernetes")
    direct = make_backend(kube_cluster, [namespace])  # the Lease through the healthy apiserver
    options = ApplyOptions(plan=PlanOptions(), who="Ada", concurrency=2)
    result = run_apply(desired, backend, tracker, direct.lock("expctl-apply", namespace, identity="a"), options,
                       Hooks())
    outcome = result.applied[0]
    assert result.exit_code == 3 and outcome.stopped == "the kubernetes backend is unreachable", outcome.stopped
    assert len(outcome.done) == 3 and 1 <= len(outcome.failed) <= 2, outcome.failed  # at most the ones in flight
    assert all("\n" not in message for _, message in outcome.failed)
    assert len(outcome.skipped) == 20 - len(outcome.done) - len(outcome.failed)
    assert len(objects(kube_cluster, namespace)) == 3

    proxy.clear()
    rerun = run_apply(desired, direct, tracker, direct.lock("expctl-apply", namespace, identity="a"), options,
                      Hooks())
    assert rerun.exit_code == 0 and len(rerun.applied[0].done) == 17
    assert len(objects(kube_cluster, namespace)) == 20
