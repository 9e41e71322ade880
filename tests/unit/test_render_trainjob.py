"""Rendering of Kubeflow Trainer v2 TrainJobs and their git-sync runtime: table-driven, pure."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from expctl.backends.kubernetes.manifests import KubeSettings, render_manifest, to_yaml
from expctl.backends.kubernetes.manifests.common import uses_script_configmap
from expctl.backends.kubernetes.manifests.gitsync import clone_script
from expctl.backends.kubernetes.manifests.trainjob import render_runtime
from expctl.core.model import JobKind, Resources, Scheduling
from tests.support.factories import make_job, make_launch, make_spec

SETTINGS = KubeSettings(namespace="ml", repo_url="https://git.example.com/r.git", git_secret="git-creds")


def render(settings: KubeSettings = SETTINGS, **job: Any) -> dict[str, Any]:
    job.setdefault("runtime", "torch-distributed")
    spec = make_spec("team-a/llm", overrides=("lr=1e-4",), job=make_job(JobKind.TRAIN, job.pop("replicas", 4), **job))
    return render_manifest(make_launch(spec), settings)


def patch_pod(manifest: dict[str, Any]) -> dict[str, Any]:
    (patch,) = manifest["spec"]["runtimePatches"]
    assert patch["manager"] == "expctl.io/expctl"
    (step,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert step["name"] == "node"
    pod: dict[str, Any] = step["template"]["spec"]["template"]["spec"]
    return pod


@pytest.mark.parametrize(
    ("runtime_kind", "replicas"),
    [("ClusterTrainingRuntime", 1), ("ClusterTrainingRuntime", 8), ("TrainingRuntime", 2)],
)
def test_runtime_ref_and_num_nodes(runtime_kind: str, replicas: int) -> None:
    m = render(runtime_kind=runtime_kind, replicas=replicas)
    assert (m["apiVersion"], m["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert m["spec"]["runtimeRef"] == {
        "name": "torch-distributed",
        "apiGroup": "trainer.kubeflow.org",
        "kind": runtime_kind,
    }
    assert m["spec"]["trainer"]["numNodes"] == replicas
    assert m["metadata"]["labels"]["expctl.io/managed-by"] == "expctl"
    assert m["metadata"]["annotations"]["expctl.io/experiment-name"] == "team-a/llm"


def test_trainer_image_command_env_resources() -> None:
    m = render(image="ghcr.io/x/llm:1", resources=Resources(cpu="8", memory="64Gi", gpus=8), env=(("A", "1"),))
    trainer = m["spec"]["trainer"]
    assert trainer["image"] == "ghcr.io/x/llm:1"
    assert trainer["command"] == ["python", "-c", "print('hello')"]
    assert trainer["resourcesPerNode"] == {
        "requests": {"cpu": "8", "memory": "64Gi"},
        "limits": {"memory": "64Gi", "nvidia.com/gpu": "8"},
    }
    env = {e["name"]: e["value"] for e in trainer["env"]}
    assert env["A"] == "1" and env["MLFLOW_RUN_ID"] == "f" * 32 and env["MLFLOW_EXPERIMENT_NAME"] == "team-a/llm"


@pytest.mark.parametrize(("timeout", "expected"), [(None, None), (7200, 7200)])
def test_deadline(timeout: int | None, expected: int | None) -> None:
    assert render(timeout_seconds=timeout)["spec"].get("activeDeadlineSeconds") == expected


def test_kueue_label_and_never_suspend() -> None:
    m = render(scheduling=Scheduling(queue="llm-queue"))
    assert m["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "llm-queue"
    assert "suspend" not in m["spec"]


def test_git_sync_and_placement_are_runtime_patches() -> None:
    toleration = {"key": "gpu", "operator": "Exists"}
    m = render(scheduling=Scheduling(node_selector=(("pool", "h100"),), tolerations=(toleration,)))
    pod = patch_pod(m)
    assert pod["nodeSelector"] == {"pool": "h100"} and pod["tolerations"] == [toleration]
    (init,) = pod["initContainers"]
    assert init["name"] == "git-sync" and set(init) == {
        "name",
        "env",
        "volumeMounts",
    }  # patchable fields only
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["EXPCTL_GIT_REPO"] == "https://git.example.com/r.git"
    assert env["EXPCTL_GIT_COMMIT"] == "0" * 40
    assert env["EXPCTL_GIT_SECRET_DIR"] == "/etc/expctl/git-secret"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["expctl-git-secret"]["secret"]["secretName"] == "git-creds"
    # the runtime holds the script (one object): a TrainJob needs no ConfigMap, apply creates none for it
    assert "expctl-git-sync" not in volumes and not uses_script_configmap(m)
    (main,) = pod["containers"]
    assert main == {"name": "node", "volumeMounts": [{"name": "expctl-code", "mountPath": "/workspace/code"}]}


def test_no_patch_without_repo_or_placement() -> None:
    assert "runtimePatches" not in render(KubeSettings())["spec"]


def test_runtime_is_required() -> None:
    with pytest.raises(ValueError, match=r"needs expctl\.runtime"):
        render(runtime=None)


@pytest.mark.parametrize(("namespace", "kind"), [(None, "ClusterTrainingRuntime"), ("team-a", "TrainingRuntime")])
def test_runtime_declares_the_git_sync_init_container(namespace: str | None, kind: str) -> None:
    rt = render_runtime("torch-git", SETTINGS, "pytorch/pytorch:2.4.0", namespace=namespace)
    assert rt["kind"] == kind and rt["metadata"].get("namespace") == namespace
    (step,) = rt["spec"]["template"]["spec"]["replicatedJobs"]
    assert step["name"] == "node"
    assert step["template"]["metadata"]["labels"]["trainer.kubeflow.org/trainjob-ancestor-step"] == "trainer"
    pod = step["template"]["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["command"] == ["sh", "-c", clone_script()]
    assert pod["containers"][0]["workingDir"] == "/workspace/code"


def test_the_tracking_secret_reaches_the_trainer_key_by_key_and_no_password_does() -> None:
    spec = make_spec("team-a/llm", job=make_job(JobKind.TRAIN, 2, runtime="torch-distributed"))
    launch = make_launch(spec, tracking_uri="postgresql://ml:hunter2@db/mlflow")
    manifest = render_manifest(launch, replace(SETTINGS, tracking_secret="mlflow-creds"))
    assert "hunter2" not in to_yaml([manifest])
    env = manifest["spec"]["trainer"]["env"]
    assert {e["name"]: e.get("value") for e in env}["MLFLOW_TRACKING_URI"] == "postgresql://ml@db/mlflow"
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
    assert set(refs) == {"MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "PGPASSWORD"}
    assert all(r == {"name": "mlflow-creds", "key": k, "optional": True} for k, r in refs.items())


def test_a_teams_trainjob_pods_run_as_its_jobs_service_account() -> None:
    settings = replace(KubeSettings(), account_teams=("vision",))
    assert patch_pod(render(settings, team="vision")) == {"serviceAccountName": "expctl-jobs"}
    assert "runtimePatches" not in render(settings, team="nlp")["spec"]
    with_repo = patch_pod(render(replace(SETTINGS, account_teams=("vision",)), team="vision"))
    assert with_repo["serviceAccountName"] == "expctl-jobs" and with_repo["initContainers"]
