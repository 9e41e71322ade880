"""Rendering of Training Operator v1 jobs (PyTorchJob, TFJob, MPIJob): table-driven, pure."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from expctl.backends.kubernetes.manifests import KubeSettings, render_manifest, to_yaml
from expctl.backends.kubernetes.manifests.common import uses_script_configmap, with_inline_script
from expctl.backends.kubernetes.manifests.gitsync import clone_script, configmap_name
from expctl.core.model import JobKind, Resources, RetryPolicy, Scheduling
from tests.support.factories import make_job, make_launch, make_spec

SETTINGS = KubeSettings(namespace="ml", repo_url="https://git.example.com/team/repo.git", git_secret="git-creds")


def render(kind: JobKind, replicas: int = 3, **job: Any) -> dict[str, Any]:
    spec = make_spec("team-a/resnet-sweep", overrides=("lr=0.1", "model=r50"), job=make_job(kind, replicas, **job))
    return render_manifest(make_launch(spec, attempt=2, tracking_uri="http://mlflow:5000"), SETTINGS)


def replica_specs(manifest: dict[str, Any]) -> dict[str, Any]:
    key = next(k for k in manifest["spec"] if k.endswith("ReplicaSpecs"))
    specs: dict[str, Any] = manifest["spec"][key]
    return specs


@pytest.mark.parametrize(
    ("kind", "replicas", "key", "roles", "container"),
    [
        (JobKind.PYTORCH, 1, "pytorchReplicaSpecs", {"Master": 1}, "pytorch"),
        (JobKind.PYTORCH, 4, "pytorchReplicaSpecs", {"Master": 1, "Worker": 3}, "pytorch"),
        (JobKind.TF, 1, "tfReplicaSpecs", {"Chief": 1}, "tensorflow"),
        (JobKind.TF, 3, "tfReplicaSpecs", {"Chief": 1, "Worker": 2}, "tensorflow"),
        (JobKind.MPI, 1, "mpiReplicaSpecs", {"Launcher": 1, "Worker": 1}, "mpi"),
        (JobKind.MPI, 4, "mpiReplicaSpecs", {"Launcher": 1, "Worker": 4}, "mpi"),
    ],
)
def test_roles_and_replicas(kind: JobKind, replicas: int, key: str, roles: dict[str, int], container: str) -> None:
    m = render(kind, replicas)
    assert (m["apiVersion"], m["kind"]) == ("kubeflow.org/v1", kind.value)
    specs = m["spec"][key]
    assert {role: s["replicas"] for role, s in specs.items()} == roles
    for s in specs.values():
        assert s["restartPolicy"] == "Never"
        assert [c["name"] for c in s["template"]["spec"]["containers"]] == [container]


def test_identity_labels_and_annotations() -> None:
    m = render(JobKind.PYTORCH)
    meta = m["metadata"]
    assert meta["name"].startswith("team-a-resnet-sweep-") and meta["name"].endswith("-r2")
    assert meta["namespace"] == "ml"
    assert meta["labels"]["expctl.io/managed-by"] == "expctl"
    assert meta["labels"]["expctl.io/experiment"] == "team-a-resnet-sweep"
    assert len(meta["labels"]["expctl.io/run-key"]) <= 63
    ann = meta["annotations"]
    assert json.loads(ann["expctl.io/overrides"]) == ["lr=0.1", "model=r50"]
    assert ann["expctl.io/attempt"] == "2"
    assert ann["expctl.io/experiment-name"] == "team-a/resnet-sweep"
    assert ann["expctl.io/mlflow-run-id"] == "f" * 32
    assert ann["expctl.io/applied-by"] == "Test User <test@example.com>"
    assert set(ann) >= {"expctl.io/spec-hash", "expctl.io/git-commit"}
    assert "suspend" not in m["spec"]["runPolicy"]


def test_env_has_job_env_and_mlflow_variables_which_win() -> None:
    m = render(JobKind.PYTORCH, env=(("BATCH", "64"), ("MLFLOW_RUN_ID", "user-set")))
    container = replica_specs(m)["Master"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["BATCH"] == "64"
    assert env["MLFLOW_RUN_ID"] == "f" * 32
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["MLFLOW_EXPERIMENT_NAME"] == "team-a/resnet-sweep"
    assert len(env) == len(container["env"])  # no duplicate names


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        (Resources(), None),
        (Resources(cpu="2"), {"requests": {"cpu": "2"}}),
        (
            Resources(cpu="4", memory="16Gi", gpus=2),
            {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"memory": "16Gi", "nvidia.com/gpu": "2"}},
        ),
        (Resources(gpus=1, gpu_resource="amd.com/gpu"), {"limits": {"amd.com/gpu": "1"}}),
    ],
)
def test_resources(resources: Resources, expected: dict[str, Any] | None) -> None:
    container = replica_specs(render(JobKind.PYTORCH, resources=resources))["Master"]["template"]["spec"]["containers"][
        0
    ]
    assert container.get("resources") == expected


def test_mpi_launcher_runs_the_command_without_gpus_workers_get_gpus() -> None:
    m = render(JobKind.MPI, 2, resources=Resources(cpu="1", gpus=4))
    launcher = replica_specs(m)["Launcher"]["template"]["spec"]["containers"][0]
    worker = replica_specs(m)["Worker"]["template"]["spec"]["containers"][0]
    assert launcher["command"] == ["python", "-c", "print('hello')"]
    assert "nvidia.com/gpu" not in launcher["resources"].get("limits", {})
    assert "command" not in worker and worker["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert m["spec"]["slotsPerWorker"] == 4


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ({}, {"backoffLimit": 0, "cleanPodPolicy": "Running", "ttlSecondsAfterFinished": 86400}),
        (
            {"timeout_seconds": 600, "ttl_seconds_after_finished": None},
            {"backoffLimit": 0, "cleanPodPolicy": "Running", "activeDeadlineSeconds": 600},
        ),
        (
            {"operator_restarts": True, "retries": RetryPolicy(max_attempts=4)},
            {"backoffLimit": 3, "cleanPodPolicy": "Running", "ttlSecondsAfterFinished": 86400},
        ),
    ],
)
def test_run_policy(job: dict[str, Any], expected: dict[str, Any]) -> None:
    m = render(JobKind.TF, **job)
    assert m["spec"]["runPolicy"] == expected
    restart = "OnFailure" if job.get("operator_restarts") else "Never"
    assert {s["restartPolicy"] for s in replica_specs(m).values()} == {restart}


def test_kueue_label_only_on_the_job_never_suspend() -> None:
    m = render(JobKind.PYTORCH, scheduling=Scheduling(queue="team-a-queue", priority_class="high"))
    assert m["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a-queue"
    pod = replica_specs(m)["Master"]["template"]
    assert "kueue.x-k8s.io/queue-name" not in pod["metadata"]["labels"]
    assert pod["spec"]["priorityClassName"] == "high"
    assert "schedulerName" not in pod["spec"] and "schedulingPolicy" not in m["spec"]["runPolicy"]
    assert "suspend" not in json.dumps(m)


@pytest.mark.parametrize(
    ("kind", "replicas", "min_available", "expected_min"),
    [(JobKind.PYTORCH, 4, None, 4), (JobKind.MPI, 2, None, 3), (JobKind.TF, 4, 2, 2)],
)
def test_volcano_gang_scheduling(kind: JobKind, replicas: int, min_available: int | None, expected_min: int) -> None:
    sched = Scheduling(volcano_queue="research", priority_class="high", min_available=min_available)
    m = render(kind, replicas, scheduling=sched)
    assert m["spec"]["runPolicy"]["schedulingPolicy"] == {
        "minAvailable": expected_min,
        "queue": "research",
        "priorityClass": "high",
    }
    assert {s["template"]["spec"]["schedulerName"] for s in replica_specs(m).values()} == {"volcano"}


def test_placement() -> None:
    toleration = {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}
    sched = Scheduling(node_selector=(("pool", "a100"),), tolerations=(toleration,))
    pod = replica_specs(render(JobKind.PYTORCH, scheduling=sched))["Worker"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "a100"}
    assert pod["tolerations"] == [toleration]


def test_git_sync_on_every_replica_with_secret_by_reference() -> None:
    m = render(JobKind.PYTORCH, 3)
    for spec in replica_specs(m).values():
        pod = spec["template"]["spec"]
        init = pod["initContainers"][0]
        assert init["image"] == "alpine/git:2.45.2" and init["command"] == ["sh", "/etc/expctl/git-sync/git-sync.sh"]
        script = {"name": "expctl-git-sync", "mountPath": "/etc/expctl/git-sync", "readOnly": True}
        assert script in init["volumeMounts"]
        env = {e["name"]: e["value"] for e in init["env"]}
        assert env["EXPCTL_GIT_REPO"] == "https://git.example.com/team/repo.git"
        assert env["EXPCTL_GIT_COMMIT"] == "0" * 40
        main = pod["containers"][0]
        assert main["workingDir"] == env["EXPCTL_CODE_DIR"] == "/workspace/code"
        assert {"name": "expctl-code", "mountPath": "/workspace/code"} in main["volumeMounts"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["expctl-code"] == {"name": "expctl-code", "emptyDir": {}}
        assert volumes["expctl-git-secret"]["secret"]["secretName"] == "git-creds"
        assert volumes["expctl-git-sync"] == {"name": "expctl-git-sync", "configMap": {"name": configmap_name()}}
    # the Secret is referenced by name only (its data never appears in the manifest), the script is mounted
    assert json.dumps(m).count('"git-creds"') == len(replica_specs(m))
    assert "git fetch" not in json.dumps(m) and uses_script_configmap(m)


def test_inline_script_where_no_configmap_can_be_made() -> None:
    m = render(JobKind.PYTORCH, 3)
    inline = with_inline_script(m)
    assert not uses_script_configmap(inline) and uses_script_configmap(m)  # a copy: the rendering is unchanged
    for original, spec in zip(replica_specs(m).values(), replica_specs(inline).values(), strict=True):
        pod, before = spec["template"]["spec"], original["template"]["spec"]
        (init,) = pod["initContainers"]
        assert init["command"] == ["sh", "-c", clone_script()]
        kept = [v["name"] for v in before["volumes"] if v["name"] != "expctl-git-sync"]
        assert [v["name"] for v in pod["volumes"]] == kept
        assert "expctl-git-sync" not in [mount["name"] for mount in init["volumeMounts"]]
        assert {k: v for k, v in init.items() if k not in ("command", "volumeMounts")} == {
            k: v for k, v in before["initContainers"][0].items() if k not in ("command", "volumeMounts")}
    assert with_inline_script(render(JobKind.PYTORCH, 3)) == inline


def test_no_repo_url_means_no_git_sync() -> None:
    spec = make_spec(job=make_job(JobKind.PYTORCH))
    m = render_manifest(make_launch(spec), KubeSettings())
    pod = m["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert "initContainers" not in pod and "workingDir" not in pod["containers"][0]
    assert not uses_script_configmap(m)  # apply creates no ConfigMap for it


def test_job_namespace_and_image_win_over_settings() -> None:
    m = render(JobKind.PYTORCH, namespace="team-b", image="ghcr.io/x/train:1")
    assert m["metadata"]["namespace"] == "team-b"
    assert replica_specs(m)["Master"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/x/train:1"
    m = render(JobKind.PYTORCH, image=None)
    assert replica_specs(m)["Master"]["template"]["spec"]["containers"][0]["image"] == SETTINGS.default_image


def test_local_kind_is_not_rendered() -> None:
    with pytest.raises(ValueError, match="does not run on Kubernetes"):
        render(JobKind.LOCAL)


def test_to_yaml_is_a_stream_that_round_trips() -> None:
    import yaml

    docs = [render(JobKind.PYTORCH), render(JobKind.TF)]
    text = to_yaml(docs)
    assert text.count("\n---\n") == 1
    assert list(yaml.safe_load_all(text)) == docs
    assert text.index("apiVersion") < text.index("metadata") < text.index("spec:")


def test_render_all_uses_the_project_settings_and_skips_local_runs() -> None:
    import yaml

    from expctl.backends.kubernetes.manifests import render_all
    from expctl.backends.kubernetes.settings import KubernetesIn
    from expctl.config.schema import Settings

    settings = Settings(
        tracking_uri="http://mlflow:5000",
        kubernetes=KubernetesIn(namespace="ml", repo_url="https://git.example.com/r.git", image="img:1"),
    )
    runs = [
        make_spec("a", job=make_job(JobKind.PYTORCH, 2, image=None)),
        make_spec("b", job=make_job(JobKind.LOCAL)),
        make_spec("c", job=make_job(JobKind.TF, 2)),
    ]
    docs = list(yaml.safe_load_all(render_all(runs, settings)))
    assert [d["kind"] for d in docs] == ["PyTorchJob", "TFJob"]
    master = docs[0]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert master["containers"][0]["image"] == "img:1"
    assert docs[0]["metadata"]["namespace"] == "ml"
    env = {e["name"]: e["value"] for e in master["containers"][0]["env"]}
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["MLFLOW_RUN_ID"] == "<assigned-at-apply>"
    assert master["initContainers"][0]["env"][0]["value"] == "https://git.example.com/r.git"
    assert render_all([runs[1]], settings) == ""


def test_a_credentialed_tracking_uri_leaves_no_password_and_the_tracking_secret_feeds_every_container() -> None:
    spec = make_spec("team-a/creds", job=make_job(JobKind.PYTORCH, 3))
    launch = make_launch(spec, tracking_uri="http://ci:hunter2@mlflow:5000?token=hunter2")
    manifest = render_manifest(launch, replace(SETTINGS, tracking_secret="mlflow-creds"))
    assert "hunter2" not in to_yaml([manifest])
    for role in replica_specs(manifest).values():
        pod = role["template"]["spec"]
        (container,) = pod["containers"]
        assert {e["name"]: e["value"] for e in container["env"]}["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert container["envFrom"] == [{"secretRef": {"name": "mlflow-creds"}}]
        assert all("envFrom" not in init for init in pod["initContainers"])  # git-sync needs no MLflow credentials
    assert "envFrom" not in to_yaml([render(JobKind.PYTORCH)])  # only when configured


def test_pods_of_a_team_with_a_namespace_run_as_its_jobs_service_account() -> None:
    from expctl.backends.kubernetes.manifests import kube_settings
    from expctl.config.schema import parse_settings

    settings = kube_settings(parse_settings({"teams": [
        {"name": "vision", "paths": ["experiments/vision"], "kubernetes": {"namespace": "vision"}},
        {"name": "nlp", "paths": ["experiments/nlp"], "slurm": {"account": "nlp"}}]}))
    assert settings.account_teams == ("vision",)
    for kind in (JobKind.PYTORCH, JobKind.TF, JobKind.MPI):
        def pods(team: str | None, kind: JobKind = kind) -> list[dict[str, Any]]:
            spec = make_spec("vision/resnet", job=make_job(kind, 3, namespace="vision", team=team))
            return [s["template"]["spec"] for s in replica_specs(render_manifest(make_launch(spec), settings)).values()]

        assert [p["serviceAccountName"] for p in pods("vision")] == ["expctl-jobs"] * len(pods("vision"))
        assert all("serviceAccountName" not in p for p in pods("nlp") + pods(None))  # no namespace: its default
