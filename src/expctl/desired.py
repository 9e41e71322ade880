"""Desired runs: a sweep point's resolved config and job spec become a content-addressed RunSpec.

Pure: hashing of values handed in; no Hydra, git or clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from expctl.model import DatasetRef, JobSpec, RunSpec
from expctl.naming import canonical_json, run_key, run_name, sha256_hex


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
