"""A producer on Kubernetes (``outputs:``): which replica gets the output directory, its env and the uploader
wrapping its command, for every kind (pure rendering; the apiserver's acceptance is tests/kube/test_manifests.py,
the uploader itself tests/integration/test_upload_outputs.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from expctl.backends.kubernetes.manifests import KubeSettings, render_manifest
from expctl.backends.kubernetes.manifests.outputs import OUTPUT_MOUNT, OUTPUT_VOLUME, WRAPPER, uploader_source
from expctl.backends.kubernetes.manifests.training_v1 import SHAPES
from expctl.core.model import JobKind
from tests.support.factories import make_job, make_launch, make_spec

SETTINGS = KubeSettings(namespace="ml", repo_url="https://git.example.com/r.git")
COMMAND = ["python", "train.py", "--rows", "3"]
WRAPPED = ["sh", "-c", WRAPPER, "expctl-outputs", *COMMAND]


def rendered(kind: JobKind, outputs: str | None = "blobs", replicas: int = 3, **kw: Any) -> dict[str, Any]:
    job = make_job(kind, replicas=replicas, command=tuple(COMMAND), outputs=outputs,
                   runtime="torch" if kind is JobKind.TRAIN else None, **kw)
    return render_manifest(make_launch(make_spec("imp", job=job), tracking_uri="http://mlflow:5000"), SETTINGS)


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


@pytest.mark.parametrize(("kind", "writer", "others"), [
    (JobKind.PYTORCH, "Master", ["Worker"]), (JobKind.TF, "Chief", ["Worker"]), (JobKind.MPI, "Launcher", ["Worker"])])
def test_only_the_first_role_of_a_v1_producer_writes_and_stores_its_dataset(
        kind: JobKind, writer: str, others: list[str]) -> None:
    specs = rendered(kind)["spec"][SHAPES[kind].replica_specs_key]
    pod = specs[writer]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == WRAPPED
    env = env_of(container)
    assert (env["EXPCTL_OUTPUT_DIR"], env["EXPCTL_OUTPUT_DATASET"]) == (OUTPUT_MOUNT, "blobs")
    assert env["EXPCTL_OUTPUT_UPLOADER"] == uploader_source()
    assert {"name": OUTPUT_VOLUME, "mountPath": OUTPUT_MOUNT} in container["volumeMounts"]
    assert {"name": OUTPUT_VOLUME, "emptyDir": {}} in pod["volumes"]
    assert container["workingDir"] == "/workspace/code"  # the git-synced checkout is kept
    for role in others:
        other = specs[role]["template"]["spec"]
        assert "EXPCTL_OUTPUT_DIR" not in env_of(other["containers"][0])
        assert OUTPUT_VOLUME not in str(other)
        assert other["containers"][0].get("command") in (COMMAND, None)  # MPI workers run the image's own


def test_a_trainjob_producer_wraps_the_trainer_and_patches_its_output_directory_in() -> None:
    spec = rendered(JobKind.TRAIN)["spec"]
    trainer = spec["trainer"]
    assert trainer["command"] == WRAPPED
    assert env_of(trainer)["EXPCTL_OUTPUT_DIR"] == OUTPUT_MOUNT
    (patch,) = spec["runtimePatches"]
    (step,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = step["template"]["spec"]["template"]["spec"]
    assert {"name": OUTPUT_VOLUME, "emptyDir": {}} in pod["volumes"]
    (container,) = pod["containers"]
    assert container["volumeMounts"] == [{"name": "expctl-code", "mountPath": "/workspace/code"},
                                         {"name": OUTPUT_VOLUME, "mountPath": OUTPUT_MOUNT}]


@pytest.mark.parametrize("kind", [JobKind.PYTORCH, JobKind.TRAIN])
def test_a_run_that_produces_nothing_keeps_its_manifest(kind: JobKind) -> None:
    plain = rendered(kind, outputs=None)
    assert OUTPUT_VOLUME not in str(plain) and "EXPCTL_OUTPUT" not in str(plain)
    assert "expctl-outputs" not in str(plain)


def test_a_producers_validation_run_stores_nothing() -> None:
    job = make_job(JobKind.PYTORCH, command=tuple(COMMAND), outputs="blobs")
    spec = replace(make_spec("imp", job=job), validates="imp|")
    assert OUTPUT_VOLUME not in str(render_manifest(make_launch(spec), SETTINGS))


def test_a_producer_without_a_command_cannot_be_rendered() -> None:
    launch = make_launch(make_spec("imp", job=make_job(JobKind.PYTORCH, command=(), outputs="blobs")))
    with pytest.raises(ValueError, match=r"outputs: on Kubernetes needs expctl\.command"):
        render_manifest(launch, SETTINGS)


def test_the_uploader_is_shipped_whole_and_kubernetes_expands_nothing_in_it() -> None:
    text = uploader_source()
    assert "$" not in text  # Kubernetes expands $(NAME) and $$ in env values
    assert "import expctl" not in text and "from expctl" not in text
    compile(text, "upload_outputs.py", "exec")
