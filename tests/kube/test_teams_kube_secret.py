"""A team's MLflow job identity on Kubernetes: ``teams apply``'s reconciler keeps the Secret ``expctl-mlflow-job``
in the team's namespace (created, unchanged on a second plan, updated when the password rotates), never shows its
password in a plan, and the team's jobs read it with ``envFrom`` (``render``: a reference, no value)."""

from __future__ import annotations

import base64
import uuid

from kubernetes import client

from expctl.backends.kubernetes.manifests.common import KubeSettings, pod_template
from expctl.backends.kubernetes.team_reconcile import KubeTeams
from expctl.core.team_platform import JOB_SECRET, PlatformChange, Team, plan_platform
from tests.support.factories import make_job, make_launch, make_spec
from tests.support.kube_cluster import Cluster
from tests.support.kube_driver import make_backend


def _identity(ns: str, password: str) -> dict[str, str]:
    return {"MLFLOW_TRACKING_USERNAME": f"expctl-job-{ns}", "MLFLOW_TRACKING_PASSWORD": password,
            "MLFLOW_WORKSPACE": "voice"}


def test_a_teams_job_secret_is_kept_in_its_namespace_and_never_shown(kube_cluster: Cluster) -> None:
    ns = f"speech-{uuid.uuid4().hex[:6]}"
    first, second = f"pw-{uuid.uuid4().hex}", f"pw-{uuid.uuid4().hex}"
    teams = KubeTeams(make_backend(kube_cluster, [ns]))

    def changes(password: str) -> list[PlatformChange]:
        desired = teams.desired([Team(ns, namespace=ns, job_env=_identity(ns, password))])
        observed, blocked = teams.observe(desired)
        return plan_platform(desired, observed, prune=False, unmanaged=blocked, order=teams.order)

    def secret() -> dict[str, str]:
        found = client.CoreV1Api(kube_cluster.api_client()).read_namespaced_secret(JOB_SECRET, ns)
        assert found.metadata.labels["expctl.io/managed-by"] == "expctl"
        return {k: base64.b64decode(v).decode() for k, v in found.data.items()}

    planned = changes(first)
    assert [(c.action.value, c.obj.shown) for c in planned if c.obj.kind == "Secret"] == [
        ("create", f"Secret/{ns}/{JOB_SECRET}")]
    for change in planned:
        teams.write(change)
    assert secret() == _identity(ns, first)
    # its own objects (the session's apiserver holds other tests' teams: would-prune here)
    assert {c.action.value for c in changes(first) if c.obj.team == ns} == {"unchanged"}
    rotated = [c for c in changes(second) if c.action.writes]
    assert [(c.action.value, c.obj.kind) for c in rotated] == [("update", "Secret")]
    teams.write(rotated[0])
    assert secret() == _identity(ns, second)
    shown = repr(planned + rotated) + "".join(f"{c.obj.shown} {c.detail}" for c in planned + rotated)
    assert first not in shown and second not in shown
    assert teams.foreign_in(ns) == []  # the Secret is expctl's: pruning the team may delete the namespace

    launch = make_launch(make_spec(f"{ns}/a", job=make_job(namespace=ns, team=ns)))
    container = pod_template(launch, KubeSettings(namespace=ns, mlflow_teams=(ns,)), "pytorch")["spec"][
        "containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": JOB_SECRET}}]
    assert first not in str(container) and second not in str(container)
    client.CoreV1Api(kube_cluster.api_client()).delete_namespace(ns)
