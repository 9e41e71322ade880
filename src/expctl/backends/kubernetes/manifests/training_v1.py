"""Manifests of Kubeflow Training Operator v1 jobs (``kubeflow.org/v1`` PyTorchJob, TFJob, MPIJob).

Pure: a ``Launch`` and ``KubeSettings`` in, a dict out. Shapes follow the v1.9 CRDs: ``<kind>ReplicaSpecs``
keyed by role, each with ``replicas``, ``restartPolicy`` and a pod ``template``; ``runPolicy`` carries the
backoff limit, deadline, TTL, clean-pod policy and Volcano's ``schedulingPolicy``. ``suspend`` is never set here:
Kueue owns it (``gate`` sets it on a pipeline's consumer held without Kueue).
"""

from __future__ import annotations

from dataclasses import dataclass

from expctl.backends.kubernetes.manifests.common import KubeSettings, Manifest, metadata, pod_template
from expctl.core.model import JobKind, JobSpec, Launch

API_VERSION = "kubeflow.org/v1"


@dataclass(frozen=True)
class Role:
    """One replica type of a job kind and how many replicas it gets for ``JobSpec.replicas``."""

    name: str
    replicas: int
    command: bool = True  # the role runs the experiment's command (MPI workers run the image's default)
    gpus: bool = True  # the role gets the experiment's GPUs (an MPI launcher does not)
    writes_outputs: bool = False  # a producer's role that writes and stores its dataset (``manifests.outputs``)


@dataclass(frozen=True)
class KindShape:
    kind: JobKind
    replica_specs_key: str
    container: str  # the operator finds the training container by this name


SHAPES = {
    JobKind.PYTORCH: KindShape(JobKind.PYTORCH, "pytorchReplicaSpecs", "pytorch"),
    JobKind.TF: KindShape(JobKind.TF, "tfReplicaSpecs", "tensorflow"),
    JobKind.MPI: KindShape(JobKind.MPI, "mpiReplicaSpecs", "mpi"),
}


def roles(job: JobSpec) -> list[Role]:
    """PyTorchJob: Master + Worker(n-1); TFJob: Chief + Worker(n-1); MPIJob: Launcher + Worker(n). The first
    role (one replica, running the command) is the one that writes a producer's dataset."""
    n = max(job.replicas, 1)
    if job.kind is JobKind.MPI:
        return [Role("Launcher", 1, gpus=False, writes_outputs=True), Role("Worker", n, command=False)]
    lead = "Master" if job.kind is JobKind.PYTORCH else "Chief"
    out = [Role(lead, 1, writes_outputs=True)]
    if n > 1:
        out.append(Role("Worker", n - 1))
    return out


def run_policy(job: JobSpec, settings: KubeSettings) -> Manifest:
    """One attempt per object: backoffLimit 0 unless the experiment opted into operator restarts."""
    policy: Manifest = {
        "backoffLimit": max(job.retries.max_attempts - 1, 0) if job.operator_restarts else 0,
        "cleanPodPolicy": settings.clean_pod_policy,
    }
    if job.timeout_seconds is not None:
        policy["activeDeadlineSeconds"] = job.timeout_seconds
    if job.ttl_seconds_after_finished is not None:
        policy["ttlSecondsAfterFinished"] = job.ttl_seconds_after_finished
    sched = job.scheduling
    if sched.volcano_queue:
        scheduling: Manifest = {
            "minAvailable": sched.min_available or sum(r.replicas for r in roles(job)),
            "queue": sched.volcano_queue,
        }
        if sched.priority_class:
            scheduling["priorityClass"] = sched.priority_class
        policy["schedulingPolicy"] = scheduling
    return policy


def render_v1(launch: Launch, settings: KubeSettings) -> Manifest:
    """The PyTorchJob, TFJob or MPIJob for one attempt of a run."""
    job = launch.spec.job
    shape = SHAPES[job.kind]
    restart = "OnFailure" if job.operator_restarts else "Never"
    replica_specs = {
        role.name: {
            "replicas": role.replicas,
            "restartPolicy": restart,
            "template": pod_template(launch, settings, shape.container, command=role.command, gpus=role.gpus,
                                     writes_outputs=role.writes_outputs),
        }
        for role in roles(job)
    }
    spec: Manifest = {shape.replica_specs_key: replica_specs, "runPolicy": run_policy(job, settings)}
    if job.kind is JobKind.MPI:
        spec["slotsPerWorker"] = max(job.resources.gpus, 1)
    return {
        "apiVersion": API_VERSION,
        "kind": job.kind.value,
        "metadata": metadata(launch, settings),
        "spec": spec,
    }
