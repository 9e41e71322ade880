"""The apply engine on a real kube-apiserver (MLflow: an embedded sqlite store, which is real MLflow too):

* a no-op plan issues exactly one LIST per kind × namespace and nothing else;
* the git-sync script is mounted from one ConfigMap per namespace, which apply (never plan) makes sure of;
* two concurrent applies of a 200-run sweep (real ``python -m expctl`` processes) create each job and each
  MLflow run exactly once;
* the Lease taken over, or expired, in the middle of an apply: the apply stops before its next write.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from expctl.backends.kubernetes.backend import KubernetesBackend
from expctl.backends.kubernetes.manifests.common import MANAGED_SELECTOR
from expctl.backends.kubernetes.manifests.gitsync import clone_script, configmap_name
from expctl.config.desired_state import Desired
from expctl.config.schema import Settings
from expctl.config.source import Snapshot
from expctl.core.model import JobKind, Launch
from expctl.engine.apply import ApplyOptions, Hooks, run_apply
from expctl.engine.plan import PlanOptions
from expctl.tracking.mlflow.store import MlflowStore
from tests.support.factories import make_job, make_spec
from tests.support.kube_cluster import Cluster
from tests.support.kube_driver import make_backend
from tests.support.kube_project import make_project

pytestmark = [pytest.mark.kube, pytest.mark.usefixtures("kube_environment")]  # $KUBECONFIG, like CI

FAST_KUBE = "  qps: 200\n  burst: 200\n  write_concurrency: 8\n"


def sweep(points: int) -> str:
    return ("defaults:\n  - config\n  - _self_\nhydra:\n  sweeper:\n    params:\n"
            f"      seed: range(0,{points})\n")


def test_noop_plan_is_one_list_per_kind_and_namespace(tmp_path: Path, kube_cluster: Cluster,
                                                      namespace: str) -> None:
    project = make_project(tmp_path, kube_cluster, namespace, f"sqlite:///{tmp_path / 'mlflow.db'}",
                           {"s": sweep(12)}, kube=FAST_KUBE)
    assert "Applied 12 changes." in project.ok("apply", "-y").output
    project.ws.backends.clear()
    assert "No changes." in project.ok("plan").output
    (backend,) = project.ws.backends
    lists = {f"list {info}" for info in ("pytorchjobs", "tfjobs", "mpijobs", "trainjobs")}
    assert backend.requests == Counter(dict.fromkeys(lists, 1)), backend.requests


def test_apply_mounts_the_git_sync_script_from_one_configmap_per_namespace(tmp_path: Path, kube_cluster: Cluster,
                                                                          namespace: str) -> None:
    """The script is in one ConfigMap, named by its digest, created by the apply (one request, not one per job),
    mounted by every job's init container; the next apply makes no new one, and one deleted meanwhile is made
    again by the next apply that creates a job there (its pods would never start without it)."""
    project = make_project(tmp_path, kube_cluster, namespace, f"sqlite:///{tmp_path / 'mlflow.db'}",
                           {"s": sweep(3)}, kube=FAST_KUBE)
    core = client.CoreV1Api(kube_cluster.api_client())

    def apply(points: int) -> Counter[str]:
        project.write_exp("s", sweep(points))
        project.repo.commit(f"{points} points")
        project.ws.backends.clear()
        assert "Applied" in project.ok("apply", "-y").output
        (backend,) = project.ws.backends
        return backend.requests

    def configmaps() -> dict[str, Any]:
        found = core.list_namespaced_config_map(namespace, label_selector=MANAGED_SELECTOR).items
        return {cm.metadata.name: cm for cm in found}

    assert apply(3)["create configmaps"] == 1
    (name,) = configmaps()
    assert name == configmap_name() and configmaps()[name].data == {"git-sync.sh": clone_script()}
    uid = configmaps()[name].metadata.uid
    for job in project.managed().values():
        pod = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
        (init,) = pod["initContainers"]
        assert init["command"] == ["sh", "/etc/expctl/git-sync/git-sync.sh"]
        assert {"name": "expctl-git-sync", "mountPath": "/etc/expctl/git-sync", "readOnly": True} in init[
            "volumeMounts"]
        assert {"name": "expctl-git-sync", "configMap": {"name": name}} in pod["volumes"]
        assert "git fetch" not in json.dumps(job)
    assert apply(4)["create configmaps"] == 1  # 409: already there
    assert list(configmaps()) == [name] and configmaps()[name].metadata.uid == uid
    core.delete_namespaced_config_map(name, namespace)
    assert apply(5)["create configmaps"] == 1 and list(configmaps()) == [name]
    assert len(project.managed()) == 5
    project.ws.backends.clear()
    assert "No changes." in project.ok("plan").output  # plan writes nothing
    assert "create configmaps" not in project.ws.backends[0].requests


def test_two_concurrent_applies_of_200_runs_create_each_once(tmp_path: Path, kube_cluster: Cluster,
                                                            namespace: str) -> None:
    project = make_project(tmp_path, kube_cluster, namespace, f"sqlite:///{tmp_path / 'mlflow.db'}",
                           {"big": sweep(200)}, kube=FAST_KUBE)
    procs = [project.subprocess_apply("--lock-timeout", "300") for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, f"{out}\n{err}"
    assert sorted("Applied 200 changes." in out for out, _ in outputs) == [False, True], outputs
    assert len(project.managed()) == 200
    per_attempt = project.runs_per_attempt("all")
    assert len(per_attempt) == 200 and set(per_attempt.values()) == {1}
    history = json.loads(project.ok("history", "--limit", "1000", "-o", "json").stdout)
    assert Counter(e["run"] for e in history) == Counter(list(project.managed()))


class _Slow:
    """A backend whose creates take a moment, calling ``after(n)`` after the n-th create."""

    def __init__(self, inner: KubernetesBackend, after: Any) -> None:
        self.inner, self.after, self.created = inner, after, 0
        self.name = inner.name

    def observe(self) -> Any:
        return self.inner.observe()

    def create(self, launch: Launch) -> None:
        self.inner.create(launch)
        self.created += 1
        self.after(self.created)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


def _desired(namespace: str, points: int) -> Desired:
    job = make_job(JobKind.PYTORCH, namespace=namespace)
    runs = [make_spec(f"lease-{namespace}", (f"seed={i}",), job=job) for i in range(points)]
    return Desired(Snapshot(Path("."), "c" * 40, "c" * 40), Settings(), runs)


def _apply_with_lease(tmp_path: Path, kube_cluster: Cluster, namespace: str, after: Any,
                      **lease: Any) -> tuple[Any, _Slow]:
    inner = make_backend(kube_cluster, [namespace])
    backend = _Slow(inner, after)
    tracker = MlflowStore(f"sqlite:///{tmp_path / 'mlflow.db'}", "kubernetes")
    lock = inner.lock("expctl-apply", namespace, identity="applier", poll_seconds=0.2, **lease)
    options = ApplyOptions(plan=PlanOptions(), who="Ada", concurrency=1)
    return run_apply(_desired(namespace, 12), backend, tracker, lock, options, Hooks()), backend


def test_lease_taken_over_mid_apply_stops_before_the_next_write(tmp_path: Path, kube_cluster: Cluster,
                                                                namespace: str) -> None:
    custom = client.CustomObjectsApi(kube_cluster.api_client())

    def take_over(created: int) -> None:
        if created != 4:
            return
        args = ("coordination.k8s.io", "v1", namespace, "leases", "expctl-apply")
        lease = custom.get_namespaced_custom_object(*args)
        lease["spec"]["holderIdentity"] = "another-reconciler"
        custom.replace_namespaced_custom_object(*args, lease)
        time.sleep(1.5)  # the holder's next renewal (every second) finds the lease taken

    result, backend = _apply_with_lease(tmp_path, kube_cluster, namespace, take_over, duration_seconds=3)
    outcome = result.applied[0]
    assert backend.created == 4, "no write after the lease was lost"
    assert result.exit_code == 3
    assert "another apply took it over" in outcome.stopped
    assert len(outcome.done) == 4 and len(outcome.done) + len(outcome.failed) + len(outcome.skipped) == 12


def test_lease_expired_mid_apply_stops_before_the_next_write(tmp_path: Path, kube_cluster: Cluster,
                                                             namespace: str) -> None:
    def stall(created: int) -> None:
        if created == 3:
            time.sleep(4.5)  # longer than the lease, which this holder does not renew

    result, backend = _apply_with_lease(tmp_path, kube_cluster, namespace, stall, duration_seconds=4,
                                        renew=False)
    assert backend.created == 3
    assert "expired while applying" in result.applied[0].stopped
    assert result.exit_code == 3
