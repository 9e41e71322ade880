"""The job environment: the one place that decides which variables a training process gets, on every backend.

Pure: builds ``dict[str, str]`` from a ``Launch``; no I/O, no clock. Two parts:

- ``job_env(launch)`` — the same for every replica: the experiment's own ``env``, then expctl's identity
  (``EXPCTL_*``) and the MLflow run the job logs into (``MLFLOW_TRACKING_URI``, ``MLFLOW_RUN_ID``,
  ``MLFLOW_EXPERIMENT_NAME``), and where to checkpoint and what to resume from (``Launch.checkpoint_env``:
  ``EXPCTL_CHECKPOINT_DIR``, ``EXPCTL_RESUME_FROM`` …). **Precedence**: the experiment's ``env`` comes first
  and expctl's variables win — an experiment cannot point its job at another MLflow run or lie about its
  identity. Any other variable (``MLFLOW_SYSTEM_METRICS_*``, ``NCCL_*``, …) is the experiment's to set.
- ``replica_env(...)`` — what differs per replica, as a Kubeflow operator sets it: ``MASTER_ADDR``,
  ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``EXPCTL_REPLICA`` and, for TFJob,
  ``TF_CONFIG``. The local backend calls it per process; on Kubernetes the operator sets these; on Slurm the
  batch script derives the same names from ``SLURM_*`` at run time (``TOPOLOGY`` lists them).

To hand jobs a new variable, add it here (``job_env`` for every replica, ``replica_env`` per replica): every
backend picks it up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from expctl.model import JobKind, Launch
from expctl.naming import canonical_json

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
    else:  # the config travels with the job: no artifact upload per run (see tracking/mlflow_runs.py)
        env[CONFIG] = canonical_json(dict(spec.config))
    env.update(launch.tracking.env())
    env.update(launch.checkpoint_env())  # EXPCTL_CHECKPOINT_DIR, EXPCTL_RESUME_* (expctl.resume)
    if extra:
        env.update(extra)
    return env


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
