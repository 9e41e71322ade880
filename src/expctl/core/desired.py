"""Desired runs: a sweep point's resolved config and job spec become a content-addressed RunSpec.

Pure: hashing of values handed in; no Hydra, git or clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from expctl.core.model import DatasetRef, JobKind, JobSpec, RunSpec
from expctl.core.naming import canonical_json, run_key, run_name, sha256_hex

# The platform's default evaluator: loads the run's logged model (mlflow.pytorch or mlflow.sklearn).
DEFAULT_EVALUATOR = ("python", "-m", "expctl.tracking.mlflow_evaluate")


def spec_hash(config: Mapping[str, Any], job: JobSpec, code_digest: str, data_digest: str = "") -> str:
    """sha256 of everything that changes what the run computes: config, job shape and image, code digest,
    and the digest of the manifests of the datasets it uses (which stands in for their ``data:`` declaration:
    what the data *is*, not how it is written down)."""
    computed = {k: v for k, v in config.items() if k != "expctl"}  # how to run it is in job.shape()
    if data_digest:
        computed["data"] = data_digest
    return sha256_hex(canonical_json({"config": computed, "job": job.shape(), "code": code_digest}))[:20]


def run_spec(
    *,
    experiment: str,
    source_file: str,
    key_overrides: Sequence[str],
    overrides: Sequence[str],
    config: Mapping[str, Any],
    job: JobSpec,
    commit: str,
    code_digest: str,
    datasets: Sequence[DatasetRef] = (),
    data_digest: str = "",
) -> RunSpec:
    """One desired run. ``key_overrides`` (the swept ones) identify it; ``overrides`` are all it was given."""
    key = run_key(experiment, key_overrides)
    return RunSpec(
        experiment=experiment,
        source_file=source_file,
        overrides=tuple(sorted(overrides)),
        run_key=key,
        name=run_name(experiment, key),
        spec_hash=spec_hash(config, job, code_digest, data_digest),
        commit=commit,
        code_digest=code_digest,
        job=job,
        config=config,
        datasets=tuple(datasets),
        data_digest=data_digest,
    )


def validation_spec(train: RunSpec) -> RunSpec | None:
    """The validation job of a training run whose gate is decided by the platform (None otherwise).

    Its own run on the same backend: one replica, the evaluation command, the training run's datasets. Its
    identity follows the training run's: a new training spec (or new data) means a new validation.
    """
    gate = train.job.validation
    if gate is None or not gate.by_platform:
        return None
    kind = train.job.kind if train.job.kind in (JobKind.LOCAL, JobKind.PYTORCH, JobKind.TRAIN) else JobKind.PYTORCH
    job = replace(train.job, kind=kind, replicas=1, command=gate.command or DEFAULT_EVALUATOR,
                  operator_restarts=False)
    key = sha256_hex(f"{train.run_key}:validation")[:32]
    config = {"validates": {"run_key": train.run_key, "spec_hash": train.spec_hash, "split": gate.split,
                            "metric": gate.gate_metric}}
    digest = sha256_hex(canonical_json({"validates": train.spec_hash, "job": job.shape(), "split": gate.split}))
    return RunSpec(
        experiment=train.experiment, source_file=train.source_file, overrides=train.overrides, run_key=key,
        name=run_name(f"{train.experiment}-val", key), spec_hash=digest[:20], commit=train.commit,
        code_digest=train.code_digest, job=job, config=config, datasets=train.datasets,
        data_digest=train.data_digest, validates=train.run_key,
    )
