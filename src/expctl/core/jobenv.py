"""The job environment: the one place that decides which variables a training process gets, on every backend.

Pure: builds ``dict[str, str]`` from a ``Launch``; no I/O, no clock. Two parts:

- ``job_env(launch)`` — the same for every replica: the experiment's own ``env``, then expctl's identity
  (``EXPCTL_*``) and the MLflow run the job logs into (``MLFLOW_TRACKING_URI``, ``MLFLOW_RUN_ID``,
  ``MLFLOW_EXPERIMENT_NAME``), where to checkpoint and what to resume from (``checkpoint_env``:
  ``EXPCTL_CHECKPOINT_DIR``, ``EXPCTL_RESUME_FROM`` …), and the run's datasets (``EXPCTL_DATASET_*``,
  ``dataset_env``), its inputs (``EXPCTL_INPUT_<NAME>_URI``, ``EXPCTL_INPUTS``: ``input_env``) and, from a
  backend that gives the job an output directory, where it writes what it produces (``output_env``).
  **Precedence**: the experiment's ``env`` comes first and expctl's variables win — an
  experiment cannot point its job at another MLflow run or lie about its identity. Any other variable
  (``MLFLOW_SYSTEM_METRICS_*``, ``NCCL_*``, …) is the experiment's to set.
- ``replica_env(...)`` — what differs per replica, as a Kubeflow operator sets it: ``MASTER_ADDR``,
  ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``EXPCTL_REPLICA`` and, for TFJob,
  ``TF_CONFIG``. The local backend calls it per process; on Kubernetes the operator sets these; on Slurm the
  batch script derives the same names from ``SLURM_*`` at run time (``TOPOLOGY`` lists them).

- ``TeamEnv``: a team's job identity (``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``, ``MLFLOW_WORKSPACE``), which
  the engine hands the local and Slurm backends (``team_env``) when the teams declare ``mlflow:``. It holds a
  password: a backend puts it into the process environment of the job at spawn (``sbatch``'s) only, never into a
  state file, a script or a manifest. On Kubernetes the team's Secret carries it instead.

To hand jobs a new variable, add it here (``job_env`` for every replica, ``replica_env`` per replica): every
backend picks it up.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from expctl.core.inputs import env_name
from expctl.core.model import DATASET_ARTIFACT_DIR, JobKind, Launch, ResumeFrom, RunSpec, TrackingRef
from expctl.core.naming import canonical_json
from expctl.core.sanitize import job_uri

TeamEnv = Callable[[str], Mapping[str, str]]  # experiment → its team's job identity (spawn time only; {}: none)

# expctl's identity of the attempt, the same names on every backend
RUN_NAME = "EXPCTL_RUN_NAME"
RUN_KEY = "EXPCTL_RUN_KEY"
SPEC_HASH = "EXPCTL_SPEC_HASH"
ATTEMPT = "EXPCTL_ATTEMPT"
EXPERIMENT = "EXPCTL_EXPERIMENT"
GIT_COMMIT = "EXPCTL_GIT_COMMIT"
CONFIG_FILE = "EXPCTL_CONFIG_FILE"
CONFIG = "EXPCTL_CONFIG"  # the composed config inline (JSON), when the backend has no file for it
REPLICA = "EXPCTL_REPLICA"

# the distributed-training topology (torch.distributed's env:// names, and TensorFlow's TF_CONFIG)
MASTER_ADDR = "MASTER_ADDR"
MASTER_PORT = "MASTER_PORT"
WORLD_SIZE = "WORLD_SIZE"
RANK = "RANK"
LOCAL_RANK = "LOCAL_RANK"
TF_CONFIG = "TF_CONFIG"
TOPOLOGY = (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, LOCAL_RANK, REPLICA)

# the run's datasets (docs/data.md) and, for a validation job, what it validates
DATA_DIGEST_ENV = "EXPCTL_DATA_DIGEST"
INPUTS_ENV = "EXPCTL_INPUTS"  # {input name: label}: what a backend's own record says it was launched with
OUTPUT_DIR = "EXPCTL_OUTPUT_DIR"  # outputs: where the job writes the dataset it produces
OUTPUT_DATASET = "EXPCTL_OUTPUT_DATASET"  # ... and that dataset's name


def job_env(launch: Launch, *, config_file: str | None = None,
            extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every replica's variables: the experiment's env, then expctl's identity and MLflow run (these win).

    ``config_file``: where the backend put the resolved config (JSON) for the job, when it has one; without
    one, the config itself is in ``EXPCTL_CONFIG``.
    ``extra``: backend-provided values that also win over the experiment's env.
    """
    spec = launch.spec
    env = dict(spec.job.env)
    env.update(
        {
            RUN_NAME: launch.name,
            RUN_KEY: spec.run_key,
            SPEC_HASH: spec.spec_hash,
            ATTEMPT: str(launch.attempt),
            EXPERIMENT: spec.experiment,
            GIT_COMMIT: spec.commit,
            "PYTHONUNBUFFERED": "1",
        }
    )
    if config_file is not None:
        env[CONFIG_FILE] = config_file
    else:  # the config travels with the job: no artifact upload per run (see tracking/mlflow/runs.py)
        env[CONFIG] = canonical_json(dict(spec.config))
    env.update(tracking_env(launch.tracking))
    env.update(checkpoint_env(launch))  # EXPCTL_CHECKPOINT_DIR, EXPCTL_RESUME_* (engine.resume)
    # the datasets' manifests: a backend that hands the job local files (config_file) hands it this
    # machine's copy of the manifest too; every job can read it from MLflow
    env.update(dataset_env(launch, local=config_file is not None))
    env.update(input_env(spec))
    if extra:
        env.update(extra)
    return env


def tracking_env(ref: TrackingRef) -> dict[str, str]:
    """The MLflow run the job logs into; the tracking URI without its password (``sanitize.job_uri``)."""
    return {
        "MLFLOW_TRACKING_URI": job_uri(ref.tracking_uri),
        "MLFLOW_RUN_ID": ref.run_id,
        "MLFLOW_EXPERIMENT_NAME": ref.experiment_name,
    }


def resume_env(resume: ResumeFrom) -> dict[str, str]:
    """What a retried attempt resumes from: ``EXPCTL_RESUME_FROM``, ``_ATTEMPT``, ``_RUN_ID`` (``_EPOCH``)."""
    out = {"EXPCTL_RESUME_FROM": resume.uri, "EXPCTL_RESUME_ATTEMPT": str(resume.attempt),
           "EXPCTL_RESUME_RUN_ID": resume.run_id}
    if resume.epoch is not None:
        out["EXPCTL_RESUME_EPOCH"] = str(resume.epoch)
    return out


def checkpoint_env(launch: Launch) -> dict[str, str]:
    """What the job reads to checkpoint and resume: ``EXPCTL_CHECKPOINT_DIR``, ``EXPCTL_RESUME_*``."""
    out: dict[str, str] = {}
    base = launch.spec.job.checkpoints.dir
    if base:
        out["EXPCTL_CHECKPOINT_DIR"] = f"{base.rstrip('/')}/{launch.name}"
    if launch.resume is not None:
        out.update(resume_env(launch.resume))
    return out


def manifest_uri(run_id: str, dataset: str) -> str:
    """Where a job finds a dataset's manifest in MLflow (any backend): ``runs:/<run>/expctl/datasets/<name>.json``."""
    return f"runs:/{run_id}/{DATASET_ARTIFACT_DIR}/{dataset}.json"


def replica_names(kind: str, replicas: int) -> list[str]:
    """Replica names as the Kubeflow operator would call the pods' roles (rank order)."""
    n = max(1, replicas)
    if kind == JobKind.PYTORCH:
        return ["master-0", *(f"worker-{i}" for i in range(n - 1))]
    if kind == JobKind.TF:
        return ["chief-0", *(f"worker-{i}" for i in range(n - 1))]
    if kind == JobKind.MPI:
        return ["launcher", *(f"worker-{i}" for i in range(n - 1))]
    return [f"node-{i}" for i in range(n)]


def replica_env(kind: str, names: Sequence[str], index: int, master_addr: str, master_port: int,
                tf_addresses: Sequence[str] = (), local_rank: int | None = None) -> dict[str, str]:
    """The topology of replica ``index`` (rank order of ``names``), as a training operator sets it.

    ``tf_addresses``: ``host:port`` of every replica, for TFJob's ``TF_CONFIG`` (chief first).
    """
    env = {
        MASTER_ADDR: master_addr,
        MASTER_PORT: str(master_port),
        WORLD_SIZE: str(len(names)),
        RANK: str(index),
        LOCAL_RANK: str(index if local_rank is None else local_rank),
        REPLICA: names[index],
    }
    if kind == JobKind.TF and tf_addresses:
        cluster = {"chief": list(tf_addresses[:1]),
                   **({"worker": list(tf_addresses[1:])} if len(tf_addresses) > 1 else {})}
        task = {"type": "chief", "index": 0} if index == 0 else {"type": "worker", "index": index - 1}
        env[TF_CONFIG] = json.dumps({"cluster": cluster, "task": task})
    return env


def validation_env(spec: RunSpec) -> dict[str, str]:
    """A validation job's inputs: the MLflow run whose model it evaluates, and the held-out split."""
    gate = spec.job.validation
    if not spec.validates or gate is None:
        return {}
    return {"EXPCTL_VALIDATES_RUN_ID": spec.target_run_id, "EXPCTL_VALIDATION_SPLIT": gate.split or "test"}


def dataset_env(launch: Launch, local: bool) -> dict[str, str]:
    """``EXPCTL_DATASET_*``: which manifest the job reads. ``local``: this machine's copy is readable too.

    One dataset: ``EXPCTL_DATASET_NAME``, ``_DIGEST``, ``_MANIFEST_URI`` (and ``_MANIFEST``, a local path);
    every dataset: ``EXPCTL_DATASETS`` (JSON list of the same); ``EXPCTL_DATA_DIGEST`` (all of them).
    """
    spec = launch.spec
    if not spec.datasets:
        return validation_env(spec)
    rows = []
    for ref in spec.datasets:
        row = {"name": ref.name, "digest": ref.digest, "manifest_uri": manifest_uri(launch.tracking.run_id, ref.name)}
        if local and ref.manifest_file:
            row["manifest"] = ref.manifest_file
        rows.append(row)
    first = rows[0]
    env = {
        **validation_env(spec),
        DATA_DIGEST_ENV: spec.data_digest,
        "EXPCTL_DATASETS": json.dumps(rows, sort_keys=True),
        "EXPCTL_DATASET_NAME": first["name"],
        "EXPCTL_DATASET_DIGEST": first["digest"],
        "EXPCTL_DATASET_MANIFEST_URI": first["manifest_uri"],
    }
    if "manifest" in first:
        env["EXPCTL_DATASET_MANIFEST"] = first["manifest"]
    return env


def input_env(spec: RunSpec) -> dict[str, str]:
    """``EXPCTL_INPUT_<NAME>_URI`` per resolved input (``models:/NAME/VERSION`` or ``runs:/RUN_ID``), and
    ``EXPCTL_INPUTS``: every input's name and label (JSON)."""
    if not spec.inputs:
        return {}
    env = {env_name(r.name): r.uri for r in spec.inputs}
    env[INPUTS_ENV] = json.dumps({r.name: r.label for r in spec.inputs}, sort_keys=True)
    return env


def output_env(spec: RunSpec, directory: str) -> dict[str, str]:
    """``EXPCTL_OUTPUT_DIR`` (where the backend put the attempt's output directory) and
    ``EXPCTL_OUTPUT_DATASET``, for a run whose experiment declares ``outputs: {dataset: NAME}``; {} otherwise.
    What the job writes there becomes that dataset when it succeeds (docs/pipelines.md)."""
    if not spec.job.outputs:
        return {}
    return {OUTPUT_DIR: directory, OUTPUT_DATASET: spec.job.outputs}


def inputs_in(env: Mapping[str, str]) -> tuple[tuple[str, str], ...] | None:
    """(input name, label) a job's environment records (None: launched without inputs, or unreadable)."""
    try:
        value = json.loads(env.get(INPUTS_ENV) or "null")
    except ValueError:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        return None
    return tuple(sorted(value.items()))
