"""A producer's pod (``outputs: {dataset: NAME}``): the output directory, its env and the wrapped command.

Pure. Only the replica that writes the dataset gets them: a v1 job's first role (PyTorchJob ``Master``, TFJob
``Chief``, MPIJob ``Launcher``), a TrainJob's trainer (each node gets them; the uploader stores only node 0's).
It gets an ``emptyDir`` mounted at ``OUTPUT_MOUNT`` (``EXPCTL_OUTPUT_DIR``), ``EXPCTL_OUTPUT_DATASET``, and the
uploader's text (``EXPCTL_OUTPUT_UPLOADER``, the stdlib program ``backends/kubernetes/upload_outputs.py``); its
command becomes ``sh -c 'exec python3 -c "$EXPCTL_OUTPUT_UPLOADER" "$@"' expctl-outputs <command...>``: the
uploader runs the command and, after an exit 0, stores the directory's files on the job's MLflow run, where the
apply that sees the run succeed records the dataset (``engine.outputs``). The command's own argv is kept as is.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from expctl.core.jobenv import output_env
from expctl.core.model import Launch

OUTPUT_VOLUME = "expctl-outputs"
OUTPUT_MOUNT = "/expctl/outputs"
UPLOADER_ENV = "EXPCTL_OUTPUT_UPLOADER"
WRAPPER = 'exec python3 -c "$EXPCTL_OUTPUT_UPLOADER" "$@"'
WRAPPER_NAME = "expctl-outputs"  # the wrapper's $0

UPLOADER = Path(__file__).resolve().parent.parent / "upload_outputs.py"  # the program (a file here, text in a pod)

Manifest = dict[str, Any]  # as common's (which imports this module)


@functools.cache
def uploader_source() -> str:
    """The uploader program's text (shipped in the pod's environment)."""
    return UPLOADER.read_text(encoding="utf-8")


def produces(launch: Launch) -> bool:
    """Whether the run's job writes a dataset (a validation run of a producer does not)."""
    return bool(launch.spec.job.outputs) and not launch.spec.validates


def command(launch: Launch) -> list[str]:
    """The producer's command, run by the uploader (ValueError: it has none, the image's own would not be)."""
    if not launch.spec.job.command:
        raise ValueError("outputs: on Kubernetes needs expctl.command (the uploader runs it, then stores the "
                         "files it wrote)")
    return ["sh", "-c", WRAPPER, WRAPPER_NAME, *launch.spec.job.command]


def env(launch: Launch) -> list[Manifest]:
    """``EXPCTL_OUTPUT_DIR``, ``EXPCTL_OUTPUT_DATASET`` and ``EXPCTL_OUTPUT_UPLOADER``."""
    values = {**output_env(launch.spec, OUTPUT_MOUNT), UPLOADER_ENV: uploader_source()}
    return [{"name": k, "value": v} for k, v in values.items()]


def volume() -> Manifest:
    return {"name": OUTPUT_VOLUME, "emptyDir": {}}


def mount() -> Manifest:
    return {"name": OUTPUT_VOLUME, "mountPath": OUTPUT_MOUNT}
