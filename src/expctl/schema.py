"""The user-input boundary: strict models of the ``expctl`` block and of ``expctl.yaml`` (pydantic).

Unknown keys are errors with a "did you mean" hint; every error names the file and the key. Validated input
is turned into the frozen domain values of ``expctl.model``. This is the only module that imports pydantic.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from expctl import backend_registry
from expctl.errors import ConfigError
from expctl.model import (
    CheckpointPolicy,
    FailureClass,
    JobKind,
    JobSpec,
    Resources,
    RetryPolicy,
    Scheduling,
    ValidationGate,
)

if TYPE_CHECKING:
    BackendName = str
else:  # the registered backends' names: pydantic reports a typo with the list of choices
    BackendName = Literal[tuple(backend_registry.names())]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ResourcesIn(_Strict):
    cpu: str | int | float | None = None
    memory: str | None = None
    gpus: int = Field(0, ge=0)
    gpu_resource: str = "nvidia.com/gpu"


class RetriesIn(_Strict):
    max_attempts: int = Field(3, ge=1, le=100)
    failures: list[Literal["infrastructure", "code"]] = ["infrastructure"]
    backoff_seconds: float = Field(30.0, ge=0)
    backoff_factor: float = Field(2.0, ge=1)
    max_backoff_seconds: float = Field(3600.0, ge=0)


class ValidationIn(_Strict):
    metric: str
    threshold: float
    mode: Literal["max", "min"] = "max"
    register_as: str | None = None
    alias: str | None = None


class VolcanoIn(_Strict):
    queue: str
    min_available: int | None = Field(None, ge=1)


class CheckpointsIn(_Strict):
    dir: str | None = Field(None, description="shared storage for checkpoints (default: MLflow artifacts)")
    resume_on: list[Literal["infrastructure", "code"]] = ["infrastructure"]


class SlurmJobIn(_Strict):
    """An experiment's Slurm placement (``expctl.slurm``); unset values come from expctl.yaml's ``slurm:``."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None


class ExpctlBlock(_Strict):
    """The ``expctl`` block of an experiment's composed config: how to run it."""

    kind: Literal["PyTorchJob", "TFJob", "MPIJob", "TrainJob", "local"] = "PyTorchJob"
    replicas: int = Field(1, ge=1, le=10000)
    image: str | None = None
    command: list[str] = ["python", "-m", "training.train"]
    resources: ResourcesIn = ResourcesIn()
    env: dict[str, str | int | float | bool] = {}
    queue: str | None = None
    priority_class: str | None = None
    volcano: VolcanoIn | None = None
    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []
    retries: RetriesIn = RetriesIn()
    timeout: int | None = Field(None, ge=1, description="seconds: the job's activeDeadlineSeconds")
    ttl_seconds_after_finished: int | None = Field(86400, ge=0)
    validation: ValidationIn | None = None
    code_paths: list[str] | None = None
    namespace: str | None = None
    runtime: str | None = "torch-distributed"
    runtime_kind: Literal["ClusterTrainingRuntime", "TrainingRuntime"] = "ClusterTrainingRuntime"
    git_secret: str | None = None
    operator_restarts: bool = False
    max_runs: int | None = Field(None, ge=1)
    checkpoints: CheckpointsIn = CheckpointsIn()
    slurm: SlurmJobIn = SlurmJobIn()


class TenantIn(_Strict):
    path: str
    namespace: str
    queue: str | None = None


class KubernetesIn(_Strict):
    namespace: str = "default"
    context: str | None = None
    repo_url: str | None = None
    git_secret: str | None = None
    image: str = "python:3.11-slim"
    git_image: str = "alpine/git:2.45.2"
    qps: float = Field(5.0, gt=0)
    burst: int = Field(10, ge=1)
    write_concurrency: int = Field(4, ge=1)


class LocalIn(_Strict):
    parallelism: int | None = Field(None, ge=1)
    write_concurrency: int = Field(4, ge=1)  # changes an apply performs at once
    gpus: int | list[int | str] | None = Field(
        None, description="this machine's GPUs for local runs: a count or device ids (default: nvidia-smi)")


class LogsIn(_Strict):
    tail_bytes: int = Field(1_000_000, ge=1024, description="per replica: the tail of its log kept in MLflow")


class SlurmTenantIn(_Strict):
    """Slurm tenancy: experiments under ``path`` are charged to ``account`` in ``partition`` with ``qos``."""

    path: str
    partition: str | None = None
    account: str | None = None
    qos: str | None = None


class SlurmIn(_Strict):
    """The ``slurm:`` block: where per-commit checkouts live (shared by every node) and placement defaults."""

    workdir: str | None = Field(None, description="a directory on a filesystem every node mounts")
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    tenants: list[SlurmTenantIn] = []

    def tenant_for(self, source_file: str) -> SlurmTenantIn | None:
        matches = [t for t in self.tenants if source_file.startswith(t.path.rstrip("/") + "/")]
        return max(matches, key=lambda t: len(t.path)) if matches else None


class Settings(_Strict):
    """``expctl.yaml`` at the repository root: project-wide settings (all optional)."""

    backend: BackendName = "local"
    tracking_uri: str | None = None
    code_paths: list[str] = []
    max_runs_per_experiment: int = Field(10000, ge=1)
    allow_resolvers: list[str] = []
    tenants: list[TenantIn] = []
    kubernetes: KubernetesIn = KubernetesIn()
    local: LocalIn = LocalIn()
    logs: LogsIn = LogsIn()
    slurm: SlurmIn = SlurmIn()

    def tenant_for(self, source_file: str) -> TenantIn | None:
        matches = [t for t in self.tenants if source_file.startswith(t.path.rstrip("/") + "/")]
        return max(matches, key=lambda t: len(t.path)) if matches else None


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the (nested) model that ``loc`` points into."""
    current: Any = model
    for part in loc:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            break
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            break
        current = nested[0]
    return list(getattr(current, "model_fields", {}))


def _errors(exc: ValidationError, model: type[BaseModel], file: str, prefix: str) -> list[ConfigError]:
    errors: list[ConfigError] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join([prefix, *map(str, loc)]) if prefix else ".".join(map(str, loc))
        if err["type"] == "extra_forbidden":
            known = _fields_at(model, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(sorted(known))})"
            errors.append(ConfigError(f"unknown key{hint}", file=file, key=key))
        else:
            value = err.get("input")
            shown = f" (got {value!r})" if isinstance(value, (int, float, str, bool)) else ""
            errors.append(ConfigError(f"{err['msg'][0].lower()}{err['msg'][1:]}{shown}", file=file, key=key))
    return errors


def parse_block(data: Any, file: str) -> ExpctlBlock:
    """Validate an experiment's ``expctl`` block; raises ConfigError (several at once as ConfigErrors)."""
    from expctl.errors import ConfigErrors

    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError("must be a mapping", file=file, key="expctl")
    try:
        return ExpctlBlock.model_validate(dict(data))
    except ValidationError as exc:
        errors = _errors(exc, ExpctlBlock, file, "expctl")
        raise (errors[0] if len(errors) == 1 else ConfigErrors(errors)) from None


def parse_settings(data: Any, file: str = "expctl.yaml") -> Settings:
    from expctl.errors import ConfigErrors

    if data is None:
        return Settings()
    if not isinstance(data, Mapping):
        raise ConfigError("must be a mapping", file=file)
    try:
        return Settings.model_validate(dict(data))
    except ValidationError as exc:
        errors = _errors(exc, Settings, file, "")
        raise (errors[0] if len(errors) == 1 else ConfigErrors(errors)) from None


def to_job_spec(block: ExpctlBlock, settings: Settings, source_file: str) -> JobSpec:
    """The domain JobSpec of a validated block, with project defaults (tenant namespace/queue, code paths)."""
    tenant = settings.tenant_for(source_file)
    if tenant and block.namespace and block.namespace != tenant.namespace:
        raise ConfigError(f"namespace {block.namespace!r} is outside this tenant's namespace {tenant.namespace!r} "
                          f"(experiments under {tenant.path} run in {tenant.namespace})", file=source_file,
                          key="expctl.namespace")
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
        env=tuple(sorted((k, _env_str(v)) for k, v in block.env.items())),
        scheduling=Scheduling(
            queue=block.queue or (tenant.queue if tenant else None),
            priority_class=block.priority_class,
            volcano_queue=block.volcano.queue if block.volcano else None,
            min_available=block.volcano.min_available if block.volcano else None,
            node_selector=tuple(sorted(block.node_selector.items())),
            tolerations=tuple(block.tolerations),
            **_slurm_placement(block, settings, source_file),
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
        validation=ValidationGate(**block.validation.model_dump()) if block.validation else None,
        code_paths=tuple(block.code_paths if block.code_paths is not None else settings.code_paths),
        namespace=block.namespace or (tenant.namespace if tenant else None),
        runtime=block.runtime,
        runtime_kind=block.runtime_kind,
        git_secret=block.git_secret,
        operator_restarts=block.operator_restarts,
        checkpoints=CheckpointPolicy(dir=block.checkpoints.dir,
                                     resume_on=tuple(FailureClass(x) for x in block.checkpoints.resume_on)),
    )


def _slurm_placement(block: ExpctlBlock, settings: Settings, source_file: str) -> dict[str, str | None]:
    """partition / account / qos: the experiment's, else its Slurm tenant's, else the ``slurm:`` defaults.

    A tenant's value is binding: an experiment under the tenant's path cannot choose another.
    """
    tenant = settings.slurm.tenant_for(source_file)
    out: dict[str, str | None] = {}
    for key in ("partition", "account", "qos"):
        own, theirs = getattr(block.slurm, key), getattr(tenant, key) if tenant else None
        if own and theirs and own != theirs:
            raise ConfigError(f"{key} {own!r} is outside this tenant's {key} {theirs!r} (experiments under "
                              f"{tenant.path if tenant else ''} use {theirs})", file=source_file,
                              key=f"expctl.slurm.{key}")
        out[key] = own or theirs or getattr(settings.slurm, key)
    return out


def _env_str(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
