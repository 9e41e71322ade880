"""Manifests of Kubeflow Trainer v2 jobs (``trainer.kubeflow.org/v1alpha1`` TrainJob) and a matching runtime.

Pure. A TrainJob names a (Cluster)TrainingRuntime (``runtimeRef``) that holds the JobSet template; the job
itself sets the trainer (image, command, env, ``numNodes``, ``resourcesPerNode``) and, through
``runtimePatches`` (owned by manager ``expctl.io/expctl``), the pod-level fields the v2.3 API lets it patch:
env and volume mounts of existing containers, volumes, nodeSelector, tolerations and the pods' ServiceAccount
(a team's ``expctl-jobs``); a producer's trainer gets its output directory that way (``manifests.outputs``).
A patch cannot add an init container, so the runtime must declare the git-sync init container; ``render_runtime``
renders one that does (priority class and Volcano gang scheduling likewise belong to the runtime).
"""

from __future__ import annotations

from typing import Any

from expctl.backends.kubernetes.manifests import gitsync, outputs
from expctl.backends.kubernetes.manifests.common import (
    CODE_VOLUME,
    KubeSettings,
    Manifest,
    env,
    git_sync_env,
    git_sync_mounts,
    git_sync_volumes,
    image_of,
    metadata,
    repo_url_of,
    resources,
    service_account,
    tracking_secret_env,
)
from expctl.core.model import Launch

API_GROUP = "trainer.kubeflow.org"
API_VERSION = f"{API_GROUP}/v1alpha1"
PATCH_MANAGER = "expctl.io/expctl"
ANCESTOR_LABEL = "trainer.kubeflow.org/trainjob-ancestor-step"


def _runtime_patch(launch: Launch, settings: KubeSettings) -> Manifest | None:
    sched = launch.spec.job.scheduling
    pod: Manifest = {}
    if sched.node_selector:
        pod["nodeSelector"] = dict(sched.node_selector)
    if sched.tolerations:
        pod["tolerations"] = [dict(t) for t in sched.tolerations]
    account = service_account(launch.spec.job, settings)
    if account:
        pod["serviceAccountName"] = account
    mounts: list[Manifest] = []
    if repo_url_of(launch, settings):
        pod["volumes"] = git_sync_volumes(launch, settings)
        pod["initContainers"] = [
            {
                "name": settings.trainjob_git_sync,
                "env": git_sync_env(launch, settings),
                "volumeMounts": git_sync_mounts(launch, settings),
            }
        ]
        mounts.append({"name": CODE_VOLUME, "mountPath": settings.code_dir})
    if outputs.produces(launch):  # the trainer's output directory (manifests.outputs)
        pod["volumes"] = [*pod.get("volumes", []), outputs.volume()]
        mounts.append(outputs.mount())
    if mounts:
        pod["containers"] = [{"name": settings.trainjob_step, "volumeMounts": mounts}]
    if not pod:
        return None
    job_template = {"spec": {"template": {"spec": pod}}}
    return {
        "manager": PATCH_MANAGER,
        "trainingRuntimeSpec": {
            "template": {"spec": {"replicatedJobs": [{"name": settings.trainjob_step, "template": job_template}]}}
        },
    }


def render_trainjob(launch: Launch, settings: KubeSettings) -> Manifest:
    """The TrainJob for one attempt of a run; ``job.runtime`` names its runtime (required)."""
    job = launch.spec.job
    if not job.runtime:
        raise ValueError(f"{launch.spec.experiment}: a TrainJob needs expctl.runtime (a training runtime name)")
    trainer: Manifest = {
        "image": image_of(job, settings),
        "numNodes": max(job.replicas, 1),
        "env": env(launch) + tracking_secret_env(settings, job.team),  # the trainer has no envFrom
    }
    if outputs.produces(launch):  # every node gets them; the uploader stores node 0's (manifests.outputs)
        trainer["command"] = outputs.command(launch)
        trainer["env"] += outputs.env(launch)
    elif job.command:
        trainer["command"] = list(job.command)
    res = resources(job)
    if res:
        trainer["resourcesPerNode"] = res
    spec: Manifest = {
        "runtimeRef": {"name": job.runtime, "apiGroup": API_GROUP, "kind": job.runtime_kind},
        "trainer": trainer,
    }
    if job.timeout_seconds is not None:
        spec["activeDeadlineSeconds"] = job.timeout_seconds
    patch = _runtime_patch(launch, settings)
    if patch is not None:
        spec["runtimePatches"] = [patch]
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainJob",
        "metadata": metadata(launch, settings),
        "spec": spec,
    }


def render_runtime(
    name: str,
    settings: KubeSettings,
    image: str | None = None,
    *,
    namespace: str | None = None,
    ttl_seconds_after_finished: int = 86400,
    volcano: bool = False,
) -> Manifest:
    """A torch (Cluster)TrainingRuntime whose trainer step runs in the git-synced checkout.

    Cluster-scoped (``ClusterTrainingRuntime``) unless ``namespace`` is given (``TrainingRuntime``).
    """
    code_mount = {"name": CODE_VOLUME, "mountPath": settings.code_dir}
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "initContainers": [
            {
                "name": settings.trainjob_git_sync,
                "image": settings.git_sync_image,
                "command": ["sh", "-c", gitsync.clone_script()],
                "volumeMounts": [code_mount],
            }
        ],
        "containers": [
            {
                "name": settings.trainjob_step,
                "image": image or settings.default_image,
                "workingDir": settings.code_dir,
                "volumeMounts": [code_mount],
            }
        ],
        "volumes": [{"name": CODE_VOLUME, "emptyDir": {}}],
    }
    step = {
        "name": settings.trainjob_step,
        "replicas": 1,
        "template": {
            "metadata": {"labels": {ANCESTOR_LABEL: "trainer"}},
            "spec": {"backoffLimit": 0, "template": {"spec": pod}},
        },
    }
    spec: Manifest = {
        "mlPolicy": {"numNodes": 1, "torch": {}},
        "template": {"spec": {"replicatedJobs": [step], "ttlSecondsAfterFinished": ttl_seconds_after_finished}},
    }
    if volcano:
        spec["podGroupPolicy"] = {"volcano": {}}
    meta: Manifest = {"name": name, "labels": {"trainer.kubeflow.org/framework": "torch"}}
    kind = "ClusterTrainingRuntime"
    if namespace:
        meta["namespace"] = namespace
        kind = "TrainingRuntime"
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec}
