"""Suspension is not failure, on a real apiserver: Kueue suspends (or preempts) a job by setting ``suspend``.

The test plays Kueue and the training operator: it patches ``spec.runPolicy.suspend`` / ``spec.suspend`` and
the job's ``/status``. A suspended job is observed as Pending with the reason, and the plan neither retries it
nor counts an attempt; admitted again, it runs on as the same attempt.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from expctl.backends.kubernetes.backend import KubernetesBackend
from expctl.backends.kubernetes.manifests import KINDS
from expctl.core.model import Action, JobKind, Phase, Scheduling
from expctl.core.plan_rules import make_plan
from tests.support.factories import make_job, make_launch, make_spec
from tests.support.kube_cluster import Cluster
from tests.support.kube_driver import conditions, make_backend, now, patch_status

pytestmark = pytest.mark.kube


def _suspend(cluster: Cluster, namespace: str, kind: JobKind, name: str, value: bool) -> None:
    info = KINDS[kind]
    body: dict[str, Any] = {"suspend": value} if kind is JobKind.TRAIN else {"runPolicy": {"suspend": value}}
    client.CustomObjectsApi(cluster.api_client()).patch_namespaced_custom_object(
        info.group, info.version, namespace, info.plural, name, {"spec": body},
        _content_type="application/merge-patch+json")


@pytest.mark.parametrize("kind", [JobKind.PYTORCH, JobKind.TRAIN])
def test_a_job_suspended_by_its_queue_is_pending_and_never_a_failed_attempt(kube_cluster: Cluster,
                                                                           namespace: str,
                                                                           kind: JobKind) -> None:
    backend: KubernetesBackend = make_backend(kube_cluster, [namespace])
    job = make_job(kind, 2, namespace=namespace, scheduling=Scheduling(queue="gpu-queue"),
                   runtime="torch-distributed" if kind is JobKind.TRAIN else None)
    spec = make_spec("preempted", job=job)
    launch = make_launch(spec)
    backend.create(launch)
    running = conditions(kind.value, "run")  # a TrainJob has no Running condition: it reads as Pending
    patch_status(kube_cluster, namespace, kind, launch.name, running)
    first = {r.name: r for r in backend.observe()}[launch.name]
    assert first.phase is (Phase.RUNNING if kind is not JobKind.TRAIN else Phase.PENDING)

    # Kueue preempts the workload: it sets suspend; the status still says Running for a while, then Suspended
    _suspend(kube_cluster, namespace, kind, launch.name, True)
    run = {r.name: r for r in backend.observe()}[launch.name]
    assert run.phase is Phase.PENDING and run.failure is None and run.attempt == 1
    assert run.message.startswith("suspended")
    suspended = {"type": "Suspended", "status": "True", "reason": "Suspended",
                 "message": "Workload preempted by Kueue", "lastTransitionTime": now()}
    status = dict(running)
    status["conditions"] = [*running["conditions"], suspended]
    patch_status(kube_cluster, namespace, kind, launch.name, status)
    run = {r.name: r for r in backend.observe()}[launch.name]
    assert run.phase is Phase.PENDING and run.message == "suspended: Workload preempted by Kueue"

    plan = make_plan([spec], backend.observe(), commit=spec.commit, backend=backend.name, now=1e12)
    (change,) = plan.changes
    assert change.action is Action.NOOP and change.reason == "unchanged" and change.attempt == 1
    assert not plan.has_writes  # not retried, not given up: still the same attempt

    # admitted again: it runs on, as attempt 1
    _suspend(kube_cluster, namespace, kind, launch.name, False)
    suspended["status"] = "False"
    patch_status(kube_cluster, namespace, kind, launch.name,
                 {"conditions": [*running["conditions"], suspended]})
    again = {r.name: r for r in backend.observe()}[launch.name]
    assert again.phase is first.phase and again.attempt == 1
