"""What every rendered Kubernetes object shares: settings, identity labels/annotations, env, the pod template.

Pure: builds plain dicts from a ``Launch`` and ``KubeSettings``. No Kubernetes client, no I/O.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from expctl.backends.kubernetes.manifests import gitsync, outputs
from expctl.backends.kubernetes.settings import kubernetes_settings
from expctl.core.jobenv import job_env
from expctl.core.model import JobSpec, Launch
from expctl.core.naming import slug
from expctl.core.project import label_value
from expctl.core.team_platform import JOB_SECRET, JOB_SECRET_KEYS

if TYPE_CHECKING:
    from expctl.config.schema import Settings

Manifest = dict[str, Any]

# Labels (selectable) and annotations (informational) on every object expctl creates.
MANAGED_BY = "expctl.io/managed-by"
MANAGER = "expctl"
EXPERIMENT = "expctl.io/experiment"
RUN_KEY = "expctl.io/run-key"
TEAM = "expctl.io/team"  # the team owning the run (expctl.yaml's teams:), set only when teams are declared
SPEC_HASH = "expctl.io/spec-hash"
GIT_COMMIT = "expctl.io/git-commit"
OVERRIDES = "expctl.io/overrides"
ATTEMPT = "expctl.io/attempt"
MLFLOW_RUN_ID = "expctl.io/mlflow-run-id"
APPLIED_BY = "expctl.io/applied-by"
EXPERIMENT_NAME = "expctl.io/experiment-name"
CANCELLED_BY = "expctl.io/cancelled-by"
DATA_DIGEST = "expctl.io/data-digest"  # the digest of the datasets' manifests
CANCELLED_AT = "expctl.io/cancelled-at"
KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"
PROJECT = "expctl.io/project"  # label: the project's digest (``core.project.label_value``); annotation: the project
MANAGED_SELECTOR = f"{MANAGED_BY}={MANAGER}"

CODE_VOLUME = "expctl-code"
SECRET_VOLUME = "expctl-git-secret"
SECRET_MOUNT = "/etc/expctl/git-secret"
SCRIPT_VOLUME = "expctl-git-sync"  # the git-sync script's ConfigMap (``gitsync.configmap_name``), v1 kinds only
JOBS_ACCOUNT = "expctl-jobs"  # the ServiceAccount of a team's jobs, in its namespace (``expctl teams apply``)


@dataclass(frozen=True)
class KubeSettings:
    """Cluster-wide rendering settings (from expctl.yaml); a job's own fields win where both exist."""

    namespace: str = "default"
    repo_url: str | None = None  # where init containers clone the code from; None: the image has the code
    git_secret: str | None = None  # Secret with ssh-privatekey [+ known_hosts] or username + password
    tracking_secret: str | None = None  # Secret with the MLflow credentials (MLFLOW_TRACKING_TOKEN, PGPASSWORD …)
    default_image: str = "python:3.11-slim"
    git_sync_image: str = "alpine/git:2.45.2"
    code_dir: str = "/workspace/code"
    labels: tuple[tuple[str, str], ...] = ()  # extra labels on every object
    project: str | None = None  # whose objects (``core.project``; None: unlabelled, as an older expctl's)
    derived_project: str | None = None  # the repository's derived project: a project declared later keeps its objects
    clean_pod_policy: str = "Running"  # v1 runPolicy: finished jobs keep their pods' logs
    trainjob_step: str = "node"  # TrainJob: the runtime's replicated job and container that train
    trainjob_git_sync: str = "git-sync"  # TrainJob: the runtime's init container that clones
    mlflow_teams: tuple[str, ...] = ()  # teams whose namespace holds their MLflow job Secret (JOB_SECRET)
    account_teams: tuple[str, ...] = ()  # teams whose pods run as JOBS_ACCOUNT (they have a namespace)


def kube_settings(settings: Settings, derived_project: str | None = None) -> KubeSettings:
    """The rendering settings of a project's ``expctl.yaml`` (its ``kubernetes:`` block), for the repository
    whose derived project is ``derived_project`` (``config.source.project``; None: only a declared one)."""
    kube = kubernetes_settings(settings)
    return KubeSettings(
        project=settings.project or derived_project, derived_project=derived_project,
        namespace=kube.namespace,
        repo_url=kube.repo_url,
        git_secret=kube.git_secret,
        tracking_secret=kube.tracking_secret,
        default_image=kube.image,
        git_sync_image=kube.git_image,
        mlflow_teams=tuple(t.name for t in settings.teams if t.kubernetes and t.kubernetes.namespace)
        if any(t.mlflow is not None for t in settings.teams) else (),
        account_teams=tuple(t.name for t in settings.teams if t.kubernetes and t.kubernetes.namespace),
    )


def namespaces(settings: Settings) -> list[str]:
    """Every namespace a project may write to: the default one, each tenant's and each team's."""
    teams = {t.kubernetes.namespace for t in settings.teams if t.kubernetes}
    return sorted({kubernetes_settings(settings).namespace, *(t.namespace for t in settings.tenants), *teams})


def namespace_of(launch: Launch, settings: KubeSettings) -> str:
    return launch.spec.job.namespace or settings.namespace


def image_of(job: JobSpec, settings: KubeSettings) -> str:
    return job.image or settings.default_image


def identity_labels(launch: Launch, settings: KubeSettings) -> dict[str, str]:
    """Selectable identity: managed-by, experiment slug, run key (hashed already), plus Kueue's queue."""
    out = dict(settings.labels)
    out.update(
        {
            MANAGED_BY: MANAGER,
            EXPERIMENT: slug(launch.spec.experiment)[:63].rstrip("-"),
            RUN_KEY: launch.spec.run_key[:63],
        }
    )
    if launch.spec.job.team:
        out[TEAM] = launch.spec.job.team
    if launch.spec.job.scheduling.queue:
        out[KUEUE_QUEUE] = launch.spec.job.scheduling.queue
    if settings.project is not None:
        out[PROJECT] = label_value(settings.project)
    return out


def project_of(obj: Manifest) -> str | None:
    """The project an object names (its annotation; its label's digest when that is missing), None when it
    names none (made by an older expctl)."""
    meta = obj.get("metadata") or {}
    label = (meta.get("labels") or {}).get(PROJECT)
    return None if label is None else str((meta.get("annotations") or {}).get(PROJECT) or label)


def owned_object(obj: Manifest, settings: KubeSettings) -> bool:
    """Whether an object is the settings' project's (no project: every object is): its label names it (or the
    repository's derived project, labelled before ``project:`` was declared), or it has none."""
    label = ((obj.get("metadata") or {}).get("labels") or {}).get(PROJECT)
    mine = {label_value(p) for p in (settings.project, settings.derived_project) if p is not None}
    return settings.project is None or label is None or label in mine


def identity_annotations(launch: Launch) -> dict[str, str]:
    spec = launch.spec
    return {
        SPEC_HASH: spec.spec_hash,
        GIT_COMMIT: spec.commit,
        OVERRIDES: json.dumps(list(spec.overrides)),
        ATTEMPT: str(launch.attempt),
        MLFLOW_RUN_ID: launch.tracking.run_id,
        APPLIED_BY: launch.applied_by,
        EXPERIMENT_NAME: spec.experiment,
        **({DATA_DIGEST: spec.data_digest} if spec.data_digest else {}),
    }


def metadata(launch: Launch, settings: KubeSettings) -> Manifest:
    return {
        "name": launch.name,
        "namespace": namespace_of(launch, settings),
        "labels": identity_labels(launch, settings),
        "annotations": {**identity_annotations(launch),
                        **({PROJECT: settings.project} if settings.project is not None else {})},
    }


def env(launch: Launch) -> list[Manifest]:
    """The job's environment (``expctl.jobenv.job_env``: expctl's identity and MLflow variables win; the
    composed config inline in ``EXPCTL_CONFIG``). Its ``MLFLOW_TRACKING_URI`` holds no password
    (``sanitize.job_uri``): credentials come from ``kubernetes.tracking_secret``."""
    return [{"name": k, "value": v} for k, v in job_env(launch).items()]


# the keys of ``kubernetes.tracking_secret`` an API without ``envFrom`` (TrainJob's trainer) gets one by one
TRACKING_SECRET_KEYS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "PGPASSWORD")


def _secrets(settings: KubeSettings, team: str | None) -> list[str]:
    """The Secrets a job's MLflow credentials come from, the last winning: ``kubernetes.tracking_secret``, then
    its team's job identity (``teams apply`` keeps ``JOB_SECRET`` in the team's namespace)."""
    own = [JOB_SECRET] if team and team in settings.mlflow_teams else []
    return ([settings.tracking_secret] if settings.tracking_secret else []) + own


def tracking_env_from(settings: KubeSettings, team: str | None = None) -> list[Manifest]:
    """``envFrom`` of a training container: every key of ``kubernetes.tracking_secret`` and of the team's job
    Secret as variables (the MLflow credentials the job's URI does not hold); nothing when none is set."""
    return [{"secretRef": {"name": name}} for name in _secrets(settings, team)]


def tracking_secret_env(settings: KubeSettings, team: str | None = None) -> list[Manifest]:
    """The same for an API whose container has ``env`` only: each of ``TRACKING_SECRET_KEYS`` from the Secret,
    optional (a key the Secret lacks is simply unset); the team's job Secret's keys after (they win)."""
    out: dict[str, Manifest] = {}
    for name in _secrets(settings, team):
        keys = TRACKING_SECRET_KEYS if name != JOB_SECRET else JOB_SECRET_KEYS
        out.update({key: {"name": key, "valueFrom": {"secretKeyRef": {"name": name, "key": key,
                                                                      "optional": name != JOB_SECRET}}}
                    for key in keys})
    return list(out.values())


def service_account(job: JobSpec, settings: KubeSettings) -> str | None:
    """The ServiceAccount a job's pods run as: its team's ``JOBS_ACCOUNT`` when the team has a namespace (its
    runs are placed there, where ``teams apply`` creates the account), else the namespace's default (None)."""
    return JOBS_ACCOUNT if job.team and job.team in settings.account_teams else None


def resources(job: JobSpec, with_gpus: bool = True) -> Manifest:
    """Requests for cpu/memory, a memory limit, and GPUs as limits (extended resources are limits-only)."""
    res = job.resources
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if res.cpu:
        requests["cpu"] = res.cpu
    if res.memory:
        requests["memory"] = res.memory
        limits["memory"] = res.memory
    if with_gpus and res.gpus > 0:
        limits[res.gpu_resource] = str(res.gpus)
    out: Manifest = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def repo_url_of(launch: Launch, settings: KubeSettings) -> str | None:
    return launch.repo_url or settings.repo_url


def git_secret_of(launch: Launch, settings: KubeSettings) -> str | None:
    return launch.spec.job.git_secret or settings.git_secret


def git_sync_env(launch: Launch, settings: KubeSettings) -> list[Manifest]:
    """What the clone script reads: repository, pinned commit, target directory, where credentials are."""
    repo = repo_url_of(launch, settings) or ""
    out = [
        {"name": gitsync.ENV_REPO, "value": repo},
        {"name": gitsync.ENV_COMMIT, "value": launch.spec.commit},
        {"name": gitsync.ENV_DIR, "value": settings.code_dir},
    ]
    if git_secret_of(launch, settings):
        out.append({"name": gitsync.ENV_SECRET_DIR, "value": SECRET_MOUNT})
    return out


def git_sync_mounts(launch: Launch, settings: KubeSettings) -> list[Manifest]:
    mounts: list[Manifest] = [{"name": CODE_VOLUME, "mountPath": settings.code_dir}]
    if git_secret_of(launch, settings):
        mounts.append({"name": SECRET_VOLUME, "mountPath": SECRET_MOUNT, "readOnly": True})
    return mounts


def git_sync_volumes(launch: Launch, settings: KubeSettings) -> list[Manifest]:
    """An emptyDir for the checkout and, when configured, the credentials Secret (0400, never inlined)."""
    volumes: list[Manifest] = [{"name": CODE_VOLUME, "emptyDir": {}}]
    secret = git_secret_of(launch, settings)
    if secret:
        volumes.append({"name": SECRET_VOLUME, "secret": {"secretName": secret, "defaultMode": 0o400}})
    return volumes


def git_sync_container(launch: Launch, settings: KubeSettings) -> Manifest:
    """The init container that clones the repository at exactly ``launch.spec.commit``, running the script
    mounted from the namespace's ConfigMap (``git_sync_configmap``; not inline: 1.7 KB less in every replica)."""
    script_mount = {"name": SCRIPT_VOLUME, "mountPath": gitsync.SCRIPT_DIR, "readOnly": True}
    return {
        "name": settings.trainjob_git_sync,
        "image": settings.git_sync_image,
        "command": gitsync.script_command(),
        "env": git_sync_env(launch, settings),
        "volumeMounts": [*git_sync_mounts(launch, settings), script_mount],
    }


def git_sync_configmap(namespace: str) -> Manifest:
    """The ConfigMap a namespace's v1 jobs run the git-sync script from (``apply`` creates it before them)."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": gitsync.configmap_name(), "namespace": namespace, "labels": {MANAGED_BY: MANAGER}},
            "data": {gitsync.SCRIPT_KEY: gitsync.clone_script()}}


def with_inline_script(manifest: Manifest) -> Manifest:
    """A copy of a v1 job that runs the git-sync script inline instead of from its ConfigMap (for a namespace
    where the ConfigMap can be neither created nor found: ``script_configmap``)."""
    job = copy.deepcopy(manifest)
    for role in _replica_specs(job).values():
        pod = role["template"]["spec"]
        pod["volumes"] = [v for v in pod.get("volumes", []) if v.get("name") != SCRIPT_VOLUME]
        for init in pod.get("initContainers", []):
            mounts = init.get("volumeMounts", [])
            if any(m.get("name") == SCRIPT_VOLUME for m in mounts):
                init["volumeMounts"] = [m for m in mounts if m.get("name") != SCRIPT_VOLUME]
                init["command"] = ["sh", "-c", gitsync.clone_script()]
    return job


def _replica_specs(manifest: Manifest) -> Manifest:
    specs: Manifest = next((v for k, v in (manifest.get("spec") or {}).items() if k.endswith("ReplicaSpecs")), {}) or {}
    return specs


def uses_script_configmap(manifest: Manifest) -> bool:
    """Whether a rendered job mounts the git-sync script's ConfigMap (a v1 job with ``repo_url``)."""
    return any(v.get("name") == SCRIPT_VOLUME for role in _replica_specs(manifest).values()
               for v in role["template"]["spec"].get("volumes", []))


def pod_template(
    launch: Launch,
    settings: KubeSettings,
    container_name: str,
    *,
    command: bool = True,
    gpus: bool = True,
    writes_outputs: bool = False,
) -> Manifest:
    """One replica's pod template: the training container, git-sync, scheduling and placement; for the replica
    that ``writes_outputs`` of a producer, its output directory and uploader (``manifests.outputs``)."""
    job = launch.spec.job
    container: Manifest = {"name": container_name, "image": image_of(job, settings), "env": env(launch)}
    env_from = tracking_env_from(settings, job.team)
    if env_from:
        container["envFrom"] = env_from
    if command and job.command:
        container["command"] = list(job.command)
    res = resources(job, with_gpus=gpus)
    if res:
        container["resources"] = res
    spec: Manifest = {"containers": [container]}
    if repo_url_of(launch, settings):
        container["workingDir"] = settings.code_dir
        container["volumeMounts"] = [{"name": CODE_VOLUME, "mountPath": settings.code_dir}]
        spec["initContainers"] = [git_sync_container(launch, settings)]
        spec["volumes"] = [*git_sync_volumes(launch, settings),
                           {"name": SCRIPT_VOLUME, "configMap": {"name": gitsync.configmap_name()}}]
    if writes_outputs and outputs.produces(launch):
        container["command"] = outputs.command(launch)
        container["env"] += outputs.env(launch)
        container["volumeMounts"] = [*container.get("volumeMounts", []), outputs.mount()]
        spec["volumes"] = [*spec.get("volumes", []), outputs.volume()]
    sched = job.scheduling
    if sched.node_selector:
        spec["nodeSelector"] = dict(sched.node_selector)
    if sched.tolerations:
        spec["tolerations"] = [dict(t) for t in sched.tolerations]
    if sched.priority_class:
        spec["priorityClassName"] = sched.priority_class
    if sched.volcano_queue:
        spec["schedulerName"] = "volcano"
    account = service_account(job, settings)
    if account:
        spec["serviceAccountName"] = account
    pod_labels = {k: v for k, v in identity_labels(launch, settings).items() if k != KUEUE_QUEUE}
    return {"metadata": {"labels": pod_labels}, "spec": spec}
