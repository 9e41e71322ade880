"""Rendering: a ``Launch`` becomes the Kubernetes manifest of its job (pure; one module per API family).

``render_manifest`` dispatches on the job kind; ``KINDS`` says where each kind lives in the API (group,
version, plural, the label its pods carry) so that the Kubernetes backend needs no per-kind knowledge of its
own; ``to_yaml`` prints manifests for ``expctl render``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import yaml

from expctl.model import JobKind, Launch
from expctl.render.common import KubeSettings, Manifest
from expctl.render.training_v1 import render_v1
from expctl.render.trainjob import render_trainjob


@dataclass(frozen=True)
class KindInfo:
    """Where a job kind lives in the Kubernetes API and how its pods are found."""

    kind: JobKind
    group: str
    version: str
    plural: str
    pod_selector_label: str  # label on the job's pods whose value is the job's name
    replica_label: str  # label on the pods naming their replica role
    render: Callable[[Launch, KubeSettings], Manifest]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


def _kinds() -> dict[JobKind, KindInfo]:
    v1 = ("kubeflow.org", "v1", "training.kubeflow.org/job-name", "training.kubeflow.org/replica-type")
    return {
        JobKind.PYTORCH: KindInfo(JobKind.PYTORCH, v1[0], v1[1], "pytorchjobs", v1[2], v1[3], render_v1),
        JobKind.TF: KindInfo(JobKind.TF, v1[0], v1[1], "tfjobs", v1[2], v1[3], render_v1),
        JobKind.MPI: KindInfo(JobKind.MPI, v1[0], v1[1], "mpijobs", v1[2], v1[3], render_v1),
        JobKind.TRAIN: KindInfo(
            JobKind.TRAIN,
            "trainer.kubeflow.org",
            "v1alpha1",
            "trainjobs",
            "jobset.sigs.k8s.io/jobset-name",
            "jobset.sigs.k8s.io/replicatedjob-name",
            render_trainjob,
        ),
    }


KINDS: dict[JobKind, KindInfo] = _kinds()


def render_manifest(launch: Launch, settings: KubeSettings) -> Manifest:
    """The manifest of one attempt of a run, for its job kind (ValueError for kinds Kubernetes cannot run)."""
    info = KINDS.get(launch.spec.job.kind)
    if info is None:
        raise ValueError(f"job kind {launch.spec.job.kind.value!r} does not run on Kubernetes")
    return info.render(launch, settings)


def to_yaml(manifests: Iterable[Manifest]) -> str:
    """A multi-document YAML stream, keys in rendering order (like ``helm template``)."""
    return yaml.safe_dump_all(list(manifests), sort_keys=False, default_flow_style=False, width=120)


__all__ = ["KINDS", "KindInfo", "KubeSettings", "Manifest", "render_manifest", "to_yaml"]
