"""Rendering: a ``Launch`` becomes the Kubernetes manifest of its job (pure; one module per API family).

``render_manifest`` dispatches on the job kind; ``KINDS`` says where each kind lives in the API (group,
version, plural, the label its pods carry) so that the Kubernetes backend needs no per-kind knowledge of its
own; ``to_yaml`` prints manifests for ``expctl render``. ``outputs`` is what a producer's writing replica gets
(``outputs:``), ``common`` what every object shares, ``gitsync`` the clone script, ``checks`` the refusals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from expctl.backends.kubernetes.manifests.common import KubeSettings, Manifest, kube_settings
from expctl.backends.kubernetes.manifests.training_v1 import render_v1
from expctl.backends.kubernetes.manifests.trainjob import render_trainjob
from expctl.config import source
from expctl.core.model import JobKind, Launch, RunSpec, TrackingRef

if TYPE_CHECKING:
    from expctl.config.schema import Settings


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


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the git-sync script) as literal blocks, readable in ``expctl render``."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value and not any(line != line.rstrip() for line in value.splitlines()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(manifests: Iterable[Manifest]) -> str:
    """A multi-document YAML stream, keys in rendering order (like ``helm template``)."""
    return yaml.dump_all(list(manifests), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def render_all(runs: Iterable[RunSpec], settings: Settings, repo: Path | None = None) -> str:
    """``expctl render``: the first attempt of each run that runs on Kubernetes, as one YAML stream.

    The MLflow run id is only known at apply time, so it shows as ``<assigned-at-apply>``. ``repo`` names the
    project the objects are labelled with; the clone URL comes from ``kubernetes.repo_url``.
    """
    ks = kube_settings(settings, source.project(repo, None) if repo is not None else None)
    manifests = []
    for run in runs:
        if run.job.kind not in KINDS:
            continue
        ref = TrackingRef(settings.tracking_uri or "", "<assigned-at-apply>", run.experiment)
        manifests.append(render_manifest(Launch(spec=run, attempt=1, name=run.name, tracking=ref), ks))
    return to_yaml(manifests) if manifests else ""


__all__ = ["KINDS", "KindInfo", "KubeSettings", "Manifest", "kube_settings", "render_all", "render_manifest", "to_yaml"]
