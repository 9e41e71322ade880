"""The domain ``JobSpec`` of a validated ``expctl`` block: the project's defaults (code paths), the team's
placement (``team_placement``) or the (deprecated) tenant's namespace and queue, and Slurm placement (the
team's, else the experiment's, else its tenant's, else ``slurm:``'s)."""

from __future__ import annotations

from typing import Any, Protocol, cast

from expctl.config.schema import ExpctlBlock, Settings, ValidationIn, scalar_text
from expctl.config.schema_inputs import to_decls
from expctl.config.team_placement import placement
from expctl.core.errors import ConfigError
from expctl.core.model import (
    CheckpointPolicy,
    FailureClass,
    JobKind,
    JobSpec,
    Resources,
    RetryPolicy,
    Scheduling,
    ValidationGate,
)


def to_job_spec(block: ExpctlBlock, settings: Settings, source_file: str) -> JobSpec:
    """The domain JobSpec of a validated block, with project defaults (tenant namespace/queue, code paths)."""
    tenant = settings.tenant_for(source_file)
    if tenant and block.namespace and block.namespace != tenant.namespace:
        raise ConfigError(f"namespace {block.namespace!r} is outside this tenant's namespace {tenant.namespace!r} "
                          f"(experiments under {tenant.path} run in {tenant.namespace})", file=source_file,
                          key="expctl.namespace")
    team = placement(block, settings, source_file)
    slurm = _slurm_placement(block, settings, source_file)
    if team is not None:
        slurm = {k: v or slurm[k] for k, v in team.slurm.items()}
    res = block.resources
    return JobSpec(
        kind=JobKind(block.kind),
        replicas=block.replicas,
        image=block.image,
        command=tuple(block.command),
        resources=Resources(
            cpu=None if res.cpu is None else str(res.cpu), memory=res.memory, gpus=res.gpus,
            gpu_resource=res.gpu_resource,
        ),
        env=tuple(sorted((k, scalar_text(v)) for k, v in block.env.items())),
        scheduling=Scheduling(
            queue=team.queue if team else block.queue or (tenant.queue if tenant else None),
            priority_class=team.priority_class if team else block.priority_class,
            volcano_queue=block.volcano.queue if block.volcano else None,
            min_available=block.volcano.min_available if block.volcano else None,
            node_selector=tuple(sorted(block.node_selector.items())),
            tolerations=tuple(t.model_dump(exclude_none=True) for t in block.tolerations),
            **slurm,
        ),
        retries=RetryPolicy(
            max_attempts=block.retries.max_attempts,
            on=tuple(FailureClass(x) for x in block.retries.failures),
            backoff_seconds=block.retries.backoff_seconds,
            backoff_factor=block.retries.backoff_factor,
            max_backoff_seconds=block.retries.max_backoff_seconds,
        ),
        timeout_seconds=block.timeout,
        ttl_seconds_after_finished=block.ttl_seconds_after_finished,
        validation=_gate(block.validation) if block.validation else None,
        code_paths=tuple(block.code_paths if block.code_paths is not None else settings.code_paths),
        namespace=team.namespace if team else block.namespace or (tenant.namespace if tenant else None),
        runtime=block.runtime,
        runtime_kind=block.runtime_kind,
        git_secret=block.git_secret,
        operator_restarts=block.operator_restarts,
        checkpoints=CheckpointPolicy(dir=block.checkpoints.dir,
                                     resume_on=tuple(FailureClass(x) for x in block.checkpoints.resume_on)),
        team=team.team if team else None,
        inputs=to_decls(block.inputs),
        outputs=block.outputs.dataset if block.outputs else None,
    )


class _SlurmDefaults(Protocol):
    """What placement reads of ``expctl.yaml``'s ``slurm:`` block (``backends.slurm.settings.SlurmIn``)."""

    partition: str | None
    account: str | None
    qos: str | None

    def tenant_for(self, source_file: str) -> Any: ...


def _slurm_placement(block: ExpctlBlock, settings: Settings, source_file: str) -> dict[str, str | None]:
    """partition / account / qos: the experiment's, else its Slurm tenant's, else the ``slurm:`` defaults.

    A tenant's value is binding: an experiment under the tenant's path cannot choose another.
    """
    defaults = cast("_SlurmDefaults | None", settings.block("slurm"))
    tenant = defaults.tenant_for(source_file) if defaults is not None else None
    out: dict[str, str | None] = {}
    for key in ("partition", "account", "qos"):
        own, theirs = getattr(block.slurm, key), getattr(tenant, key) if tenant else None
        if own and theirs and own != theirs:
            raise ConfigError(f"{key} {own!r} is outside this tenant's {key} {theirs!r} (experiments under "
                              f"{tenant.path if tenant else ''} use {theirs})", file=source_file,
                              key=f"expctl.slurm.{key}")
        out[key] = own or theirs or getattr(defaults, key, None)
    return out


def _gate(v: ValidationIn) -> ValidationGate:
    split = v.split if v.split is not None else ("test" if v.command else None)
    return ValidationGate(
        metric=v.metric, threshold=v.threshold, mode=v.mode, register_as=v.register_as, alias=v.alias,
        alias_to=v.alias_to, split=split, command=tuple(v.command or ()),
        promote_alias=v.promote.alias if v.promote else None,
        promote_when=v.promote.when if v.promote else "better_than_current",
        promote_unmeasured=v.promote.if_holder_unmeasured if v.promote else "keep",
    )
