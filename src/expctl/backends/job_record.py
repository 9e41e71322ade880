"""The identity a backend's durable job record starts with — one attempt of one run — shared by the local
backend's ``state.json`` (``local.state.RunState``) and the Slurm backend's ``record.json``
(``slurm.record.JobRecord``).

``JobIdentity`` holds the fields, ``identity_of`` fills them from a ``Launch``, ``observed_identity`` gives
them to an ``ObservedRun``, and ``IDENTITY_TYPES`` is the JSON type of each. The field names are the keys of
state files already on disk: never rename one (a new field needs a default, or older files stop loading).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from expctl.core.model import Launch


@dataclass
class JobIdentity:
    """Which attempt of which run a job is (persisted as JSON under these keys)."""

    name: str
    run_key: str
    experiment: str
    attempt: int
    spec_hash: str
    kind: str
    replicas: int
    gpus: int
    commit: str
    overrides: list[str]
    mlflow_run_id: str
    applied_by: str
    created_at: float


# what each field is in parsed JSON (a float may be written as an int; bool is never an int here)
IDENTITY_TYPES: dict[str, type | tuple[type, ...]] = {
    "name": str, "run_key": str, "experiment": str, "attempt": int, "spec_hash": str, "kind": str,
    "replicas": int, "gpus": int, "commit": str, "overrides": list, "mlflow_run_id": str, "applied_by": str,
    "created_at": (int, float)}


def identity_of(launch: Launch) -> dict[str, Any]:
    """The identity fields of a new record of ``launch`` (created now), as keyword arguments."""
    spec = launch.spec
    return {"name": launch.name, "run_key": spec.run_key, "experiment": spec.experiment, "attempt": launch.attempt,
            "spec_hash": spec.spec_hash, "kind": spec.job.kind.value, "replicas": spec.job.replicas,
            "gpus": spec.job.resources.gpus, "commit": spec.commit, "overrides": list(spec.overrides),
            "mlflow_run_id": launch.tracking.run_id, "applied_by": launch.applied_by, "created_at": time.time()}


def observed_identity(record: JobIdentity) -> dict[str, Any]:
    """The ``ObservedRun`` fields a record's identity gives, as keyword arguments."""
    return {"run_key": record.run_key, "name": record.name, "experiment": record.experiment,
            "attempt": record.attempt, "spec_hash": record.spec_hash, "kind": record.kind,
            "created_at": record.created_at, "mlflow_run_id": record.mlflow_run_id,
            "overrides": tuple(record.overrides), "commit": record.commit, "replicas": record.replicas,
            "gpus": record.gpus, "user": record.applied_by or None}
