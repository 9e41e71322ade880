"""Builders of domain values for tests (pure data; no fakes of servers live here)."""

from __future__ import annotations

from typing import Any

from expctl.core.model import JobKind, JobSpec, Launch, Resources, RetryPolicy, RunSpec, TrackingRef, ValidationGate
from expctl.core.naming import canonical_json, run_key, run_name, sha256_hex


def make_job(kind: JobKind = JobKind.PYTORCH, replicas: int = 1, **kw: Any) -> JobSpec:
    kw.setdefault("image", "python:3.11-slim")
    kw.setdefault("command", ("python", "-c", "print('hello')"))
    kw.setdefault("resources", Resources(cpu="500m", memory="512Mi", gpus=0))
    kw.setdefault("retries", RetryPolicy())
    return JobSpec(kind=kind, replicas=replicas, **kw)


def make_spec(
    experiment: str = "demo",
    overrides: tuple[str, ...] = (),
    config: dict[str, Any] | None = None,
    job: JobSpec | None = None,
    commit: str = "0" * 40,
    validation: ValidationGate | None = None,
) -> RunSpec:
    config = config if config is not None else {"lr": 0.1, "overrides": list(overrides)}
    job = job or make_job()
    if validation is not None:
        from dataclasses import replace

        job = replace(job, validation=validation)
    key = run_key(experiment, overrides)
    digest = "c0de"
    spec_hash = sha256_hex(canonical_json({"config": config, "job": job.shape(), "code": digest}))[:20]
    return RunSpec(
        experiment=experiment,
        source_file=f"experiments/{experiment}.yaml",
        overrides=tuple(sorted(overrides)),
        run_key=key,
        name=run_name(experiment, key),
        spec_hash=spec_hash,
        commit=commit,
        code_digest=digest,
        job=job,
        config=config,
    )


def make_launch(spec: RunSpec, attempt: int = 1, tracking_uri: str = "sqlite:///unused.db",
                run_id: str = "f" * 32) -> Launch:
    return Launch(
        spec=spec,
        attempt=attempt,
        name=spec.name_for(attempt),
        tracking=TrackingRef(tracking_uri=tracking_uri, run_id=run_id, experiment_name=spec.experiment),
        applied_by="Test User <test@example.com>",
    )
