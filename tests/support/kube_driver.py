"""Playing the training operator on the test apiserver: status patches, backends for a namespace, and the
check that the apiserver kept a manifest as rendered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from expctl.backends.kubernetes.backend import KubernetesBackend
from expctl.backends.kubernetes.manifests import KINDS, KubeSettings
from expctl.backends.kubernetes.retry import RetrySettings
from expctl.core.model import JobKind, Launch
from tests.support.factories import make_job, make_launch, make_spec
from tests.support.kube_cluster import Cluster

FAST_RETRY = RetrySettings(attempts=3, initial_delay=0.1, max_delay=0.5)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_backend(cluster: Cluster, namespaces: list[str], kubeconfig: str | None = None, project: str | None = None,
                 derived_project: str | None = None, **kw: Any) -> Any:
    settings = KubeSettings(namespace=namespaces[0], repo_url="https://git.example.com/team/repo.git", project=project,
                            derived_project=derived_project)
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("qps", 100.0)
    kw.setdefault("burst", 100)
    return KubernetesBackend.from_kubeconfig(
        kubeconfig or str(cluster.kubeconfig), namespaces=namespaces, settings=settings, **kw
    )


def conditions(kind: str, outcome: str, reason: str = "", message: str = "") -> dict[str, Any]:
    """The status the operator would write when the job reaches ``outcome`` (run, succeed, fail)."""
    t = now()

    def cond(ctype: str, status: str = "True", why: str = "", msg: str = "") -> dict[str, Any]:
        return {
            "type": ctype,
            "status": status,
            "reason": why or f"{kind}{ctype}",
            "message": msg or f"{kind} is {ctype.lower()}",
            "lastTransitionTime": t,
            **({} if kind == "TrainJob" else {"lastUpdateTime": t}),
        }

    if kind == "TrainJob":
        if outcome == "succeed":
            return {"conditions": [cond("Complete")]}
        if outcome == "fail":
            return {"conditions": [cond("Failed", why=reason, msg=message)]}
        return {"conditions": []}
    created = cond("Created")
    if outcome == "run":
        return {"conditions": [created, cond("Running")], "startTime": t}
    if outcome == "succeed":
        return {
            "conditions": [created, cond("Running", "False"), cond("Succeeded")],
            "startTime": t,
            "completionTime": t,
        }
    return {
        "conditions": [created, cond("Running", "False"), cond("Failed", why=reason, msg=message)],
        "startTime": t,
        "completionTime": t,
    }


def patch_status(cluster: Cluster, namespace: str, kind: JobKind, name: str, status: dict[str, Any]) -> None:
    from kubernetes import client

    info = KINDS[kind]
    client.CustomObjectsApi(cluster.api_client()).patch_namespaced_custom_object_status(
        info.group,
        info.version,
        namespace,
        info.plural,
        name,
        {"status": status},
        _content_type="application/merge-patch+json",
    )


class KubeDriver:
    """The contract suite's driver: launches in one namespace, settled by patching ``/status``."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def launch(self, outcome: str, attempt: int = 1, experiment: str = "contract") -> Launch:
        job = make_job(JobKind.PYTORCH, replicas=2, namespace=self.namespace)
        spec = make_spec(experiment, overrides=("lr=0.1",), job=job, commit="a" * 40)
        return make_launch(spec, attempt)

    def settle(self, launch: Launch, outcome: str) -> None:
        if outcome == "infra":  # the node went away: the operator reports the pod's eviction
            status = conditions("PyTorchJob", "fail", "Evicted", "pod master-0 evicted: node lost")
            patch_status(self.cluster, self.namespace, launch.spec.job.kind, launch.name, status)
            return
        message = "PyTorchJob contract-x failed: exit code 1" if outcome == "fail" else ""
        status = conditions("PyTorchJob", outcome, "PyTorchJobFailed" if outcome == "fail" else "", message)
        patch_status(self.cluster, self.namespace, launch.spec.job.kind, launch.name, status)

    def reopen(self) -> KubernetesBackend:
        backend: KubernetesBackend = make_backend(self.cluster, [self.namespace])
        return backend


def assert_kept(rendered: Any, stored: Any, path: str = "") -> None:
    """Everything rendered is stored unchanged: an unknown field would have been pruned silently."""
    if isinstance(rendered, dict):
        assert isinstance(stored, dict), f"{path}: stored {stored!r}"
        for key, value in rendered.items():
            assert key in stored, f"{path}.{key} was pruned by the apiserver"
            assert_kept(value, stored[key], f"{path}.{key}")
    elif isinstance(rendered, list):
        assert isinstance(stored, list) and len(stored) == len(rendered), f"{path}: {stored!r}"
        for i, (a, b) in enumerate(zip(rendered, stored, strict=True)):
            assert_kept(a, b, f"{path}[{i}]")
    else:
        assert rendered == stored, f"{path}: rendered {rendered!r}, stored {stored!r}"

