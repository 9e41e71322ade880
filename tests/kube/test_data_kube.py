"""On a real kube-apiserver: a run's datasets reach its pods' env, and observe reads back its data digest."""

from __future__ import annotations

from dataclasses import replace

import pytest
from kubernetes import client

from expctl.backends.kubernetes.backend import KubernetesBackend
from expctl.backends.kubernetes.manifests import KINDS, render_manifest
from expctl.core.model import DatasetRef, JobKind
from expctl.core.plan_rules import make_plan
from tests.support.factories import make_job, make_launch, make_spec
from tests.support.kube_cluster import Cluster
from tests.support.kube_driver import assert_kept, make_backend

pytestmark = pytest.mark.kube


def test_dataset_env_and_digest_round_trip(kube_cluster: Cluster, namespace: str) -> None:
    backend: KubernetesBackend = make_backend(kube_cluster, [namespace])
    ref = DatasetRef("shapes", "0123456789abcdef0123", "/here/.expctl/manifests/x.json", (("b1", "d", 3),))
    spec = replace(make_spec("data/kube", job=make_job(JobKind.PYTORCH, 1, namespace=namespace)),
                   datasets=(ref,), data_digest=ref.digest)
    launch = make_launch(spec, tracking_uri="http://mlflow.mlflow.svc:5000")
    backend.create(launch)
    info = KINDS[JobKind.PYTORCH]
    stored = client.CustomObjectsApi(kube_cluster.api_client()).get_namespaced_custom_object(
        info.group, info.version, namespace, info.plural, launch.name)
    assert_kept(render_manifest(launch, backend.settings), stored)  # nothing pruned, annotation included
    assert stored["metadata"]["annotations"]["expctl.io/data-digest"] == ref.digest
    container = stored["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["EXPCTL_DATASET_MANIFEST_URI"] == f"runs:/{launch.tracking.run_id}/expctl/datasets/shapes.json"
    assert "EXPCTL_DATASET_MANIFEST" not in env
    (observed,) = [r for r in backend.observe() if r.name == launch.name]
    assert observed.data_digest == ref.digest
    moved = replace(spec, spec_hash="new", datasets=(replace(ref, digest="fedcba"),), data_digest="fedcba")
    (change,) = make_plan([moved], [replace(observed, phase=observed.phase.SUCCEEDED)], commit="c",
                          backend="kubernetes", now=0.0).changes
    assert (change.action.value, change.reason) == ("replace", "data-changed")
