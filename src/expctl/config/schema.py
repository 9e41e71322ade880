"""The user-input boundary: strict models of the ``expctl`` block and of ``expctl.yaml`` (pydantic).

Unknown keys are errors with a "did you mean" hint; every error names the file and the key. ``job_spec`` turns
a validated block into the frozen domain values of ``expctl.model``; ``schema_data`` validates the ``data:``
block, ``schema_inputs`` its ``inputs:``. All are written in ``schema_types``' vocabulary, as is each backend's
block of ``expctl.yaml`` (its own ``backends/<name>/settings.py``, which ``Settings`` reaches through
``core.backend_registry``).
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError, create_model, model_validator

from expctl.config.schema_inputs import InputIn, InputName, OutputsIn
from expctl.config.schema_teams import TeamIn, check_teams, team_for
from expctl.config.schema_types import (
    ENV_NAME,
    INT32,
    INT64,
    MAX_GPUS,
    PATTERN_HINTS,
    QUALIFIED,
    UI_URL,
    Alias,
    BackendSettings,
    EnvValue,
    Label,
    MetricName,
    ModelName,
    Name,
    PositiveNumber,
    ProjectId,
    Quantity,
    RepoPath,
    Strict,
    Text,
    Word,
)
from expctl.core import backend_registry
from expctl.core.errors import ConfigError, truncate
from expctl.core.sanitize import shown_uri
from expctl.core.sweep import MAX_RUNS

if TYPE_CHECKING:
    BackendName = str
else:  # the registered backends' names: pydantic reports a typo with the list of choices
    BackendName = Literal[tuple(backend_registry.names())]


class ResourcesIn(Strict):
    cpu: Quantity | PositiveNumber | None = None
    memory: Quantity | None = None
    gpus: int = Field(0, ge=0, le=MAX_GPUS)
    gpu_resource: Annotated[str, Field(pattern=QUALIFIED)] = "nvidia.com/gpu"


class TolerationIn(Strict):
    key: Annotated[str, Field(pattern=QUALIFIED)] | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: int | None = Field(None, ge=-INT64, le=INT64)  # noqa: N815 (the Kubernetes field name)


class RetriesIn(Strict):
    max_attempts: int = Field(3, ge=1, le=100)
    failures: list[Literal["infrastructure", "code"]] = ["infrastructure"]
    backoff_seconds: float = Field(30.0, ge=0, le=INT32)
    backoff_factor: float = Field(2.0, ge=1, le=100)
    max_backoff_seconds: float = Field(3600.0, ge=0, le=INT32)


class PromoteIn(Strict):
    alias: Alias
    when: Literal["better_than_current", "always"] = "better_than_current"
    if_holder_unmeasured: Literal["keep", "replace"] = "keep"  # a holder with no metric to compare (docs/data.md)


class ValidationIn(Strict):
    metric: MetricName
    threshold: float
    mode: Literal["max", "min"] = "max"
    register_as: ModelName | None = None
    alias: Alias | None = None
    alias_to: Literal["best", "latest"] = "best"  # the best of the current points, or every passing version
    split: Literal["validation", "test"] | None = None  # validated by the platform, on this held-out split
    command: list[str] | None = None  # the evaluation command (default: expctl's evaluator)
    promote: PromoteIn | None = None

    @model_validator(mode="after")
    def _promote_needs_a_model(self) -> ValidationIn:
        if self.promote is not None and not self.register_as:
            raise ValueError("promote needs register_as (the registered model whose alias it moves)")
        return self


class VolcanoIn(Strict):
    queue: Name
    min_available: int | None = Field(None, ge=1, le=INT32)


class CheckpointsIn(Strict):
    dir: str | None = Field(None, description="shared storage for checkpoints (default: MLflow artifacts)")
    resume_on: list[Literal["infrastructure", "code"]] = ["infrastructure"]


class SlurmJobIn(Strict):
    """An experiment's Slurm placement (``expctl.slurm``); unset values come from expctl.yaml's ``slurm:``."""

    partition: Word | None = None
    account: Word | None = None
    qos: Word | None = None


class ReportIn(Strict):
    """``expctl.report``: what ``expctl report`` shows of the runs besides the gate metric."""

    metrics: list[Annotated[str, Field(min_length=1, max_length=250, pattern=r"^[^\x00-\x1f\x7f]*$")]] = Field(
        [], max_length=20)


class ExpctlBlock(Strict):
    """The ``expctl`` block of an experiment's composed config: how to run it."""

    kind: Literal["PyTorchJob", "TFJob", "MPIJob", "TrainJob", "local"] = "PyTorchJob"
    replicas: int = Field(1, ge=1, le=10000)
    image: Word | None = None
    command: list[Annotated[str, Field(pattern=r"^[^\x00]*$")]] = Field(
        ["python", "-m", "training.train"], min_length=1)
    resources: ResourcesIn = ResourcesIn()
    env: dict[Annotated[str, Field(pattern=ENV_NAME)], EnvValue] = {}
    queue: Name | None = None
    priority_class: Name | None = None
    volcano: VolcanoIn | None = None
    node_selector: dict[Annotated[str, Field(pattern=QUALIFIED)], Annotated[str, Field(max_length=63)]] = {}
    tolerations: list[TolerationIn] = []
    retries: RetriesIn = RetriesIn()
    timeout: int | None = Field(None, ge=1, le=INT32, description="seconds: the job's activeDeadlineSeconds")
    ttl_seconds_after_finished: int | None = Field(86400, ge=0, le=INT32)  # an int32 in every training job CRD
    validation: ValidationIn | None = None
    code_paths: list[RepoPath] | None = None
    namespace: Label | None = None
    runtime: Name | None = "torch-distributed"
    runtime_kind: Literal["ClusterTrainingRuntime", "TrainingRuntime"] = "ClusterTrainingRuntime"
    git_secret: Name | None = None
    operator_restarts: bool = False
    max_runs: int | None = Field(None, ge=1, le=MAX_RUNS)
    checkpoints: CheckpointsIn = CheckpointsIn()
    report: ReportIn | None = None
    slurm: SlurmJobIn = SlurmJobIn()
    inputs: dict[InputName, InputIn] = {}  # what it consumes (schema_inputs, docs/pipelines.md)
    outputs: OutputsIn | None = None  # the dataset its job writes (schema_inputs, docs/pipelines.md)


class TenantIn(Strict):
    path: Word
    namespace: Label
    queue: Name | None = None


class LogsIn(Strict):
    tail_bytes: int = Field(1_000_000, ge=1024, le=1 << 30,
                            description="per replica: the tail of its log kept in MLflow")


class ProjectSettings(Strict):
    """``expctl.yaml`` at the repository root: project-wide settings (all optional). ``Settings`` adds one block
    per registered backend (``kubernetes:``, ``local:``, ...): its model is the backend's own, declared in its
    folder and named by ``core.backend_registry`` (``BackendInfo.settings``); ``block`` reads one."""

    backend: BackendName = "local"
    # the repository's identity on a shared tracking server (default: its remote URL, else its directory name)
    project: ProjectId | None = None
    tracking_uri: Word | None = None
    code_paths: list[RepoPath] = []
    max_runs_per_experiment: int = Field(10000, ge=1, le=MAX_RUNS)
    allow_resolvers: list[Annotated[str, Field(pattern=r"^[A-Za-z_][\w.\-]*$")]] = []
    tenants: list[TenantIn] = []  # deprecated: teams (config.schema_teams)
    teams: list[TeamIn] = []
    logs: LogsIn = LogsIn()
    # the MLflow UI's address reviewers open (links in `expctl report`): http(s), no credentials in it
    ui_url: Annotated[str, Field(pattern=UI_URL, max_length=2048)] | None = None
    data_root: Text | None = None  # where relative dataset sources are (relative to the repo, absolute, or a URL)

    def tenant_for(self, source_file: str) -> TenantIn | None:
        matches = [t for t in self.tenants if source_file.startswith(t.path.rstrip("/") + "/")]
        return max(matches, key=lambda t: len(t.path)) if matches else None

    def team_for(self, source_file: str) -> TeamIn | None:
        """The team owning the experiment file ``source_file`` (None: no team declares it)."""
        return team_for(self.teams, source_file)

    def block(self, backend: str) -> BackendSettings | None:
        """The block of ``expctl.yaml`` that backend ``backend`` reads (None: the backend declares none)."""
        found = getattr(self, backend, None) if backend in backend_registry.BACKENDS else None
        return found if isinstance(found, BackendSettings) else None


def _with_backend_blocks(base: type[ProjectSettings]) -> type[ProjectSettings]:
    """``base`` with a field per backend that declares a settings model: ``<name>: Model = Model()``."""
    models = backend_registry.settings_models()
    clash = sorted(set(models) & set(base.model_fields))
    if clash:
        raise TypeError(f"backends named like a key of expctl.yaml: {', '.join(clash)}")
    fields: dict[str, Any] = {name: (model, model()) for name, model in models.items()}
    return create_model("Settings", __base__=base, __module__=__name__, __doc__=base.__doc__, **fields)


if TYPE_CHECKING:  # statically the project-wide keys: a backend reads its block through its own model's ``of``
    Settings = ProjectSettings
else:
    Settings = _with_backend_blocks(ProjectSettings)


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the (nested) model that ``loc`` points into."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or part.isdigit():  # an item of a list: the list's model
            continue
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


def _message(err: Any) -> str:
    pattern = (err.get("ctx") or {}).get("pattern")
    if err["type"] == "string_pattern_mismatch" and pattern in PATTERN_HINTS:
        return f"must be {PATTERN_HINTS[pattern]}"
    if err["type"] == "string_pattern_mismatch":
        return "must be one line without control characters"
    msg = str(err["msg"])
    return msg[0].lower() + msg[1:]


def _errors(exc: ValidationError, model: type[BaseModel], file: str, prefix: str) -> list[ConfigError]:
    """One error per key: the alternatives of a union (``str | int``) are folded into one message."""
    grouped: dict[tuple[str, ...], list[Any]] = {}
    for err in exc.errors():
        # drop pydantic's union-member tags ("constrained-str", "int", "[key]") from the location
        loc = tuple(str(p) for p in err["loc"] if isinstance(p, int) or p in _all_fields(model) or
                    not _is_tag(str(p)))
        grouped.setdefault(loc, []).append(err)
    errors: list[ConfigError] = []
    for loc, all_errs in grouped.items():
        errs = all_errs
        key = ".".join([prefix, *loc]) if prefix else ".".join(loc)
        first = errs[0]
        if first["type"] == "extra_forbidden":
            known = _fields_at(model, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(sorted(known))})"
            errors.append(ConfigError(f"unknown key{hint}", file=file, key=key))
            continue
        value = first.get("input")
        value = shown_uri(value) if isinstance(value, str) else value  # a URL's credentials are never echoed
        shown = f" (got {truncate(repr(value), 80)})" if isinstance(value, (int, float, str, bool)) or \
            value is None else ""
        what = "invalid name" if any(str(p) == "[key]" for p in first["loc"]) else ""
        if isinstance(value, str) and any(e["type"].startswith("string_") for e in errs):
            errs = [e for e in errs if e["type"].startswith("string_")]  # a string: say what the string lacks
        messages = list(dict.fromkeys(_message(e) for e in errs))
        if len(messages) > 1:
            alternatives = [m.removeprefix("input should be ") for m in messages]
            text = "input should be " + " or ".join(alternatives)
        else:
            text = messages[0]
        errors.append(ConfigError(f"{what + ': ' if what else ''}{text}{shown}", file=file, key=key))
    return errors


def _is_tag(part: str) -> bool:
    return part == "[key]" or part in ("str", "int", "float", "bool", "list", "dict", "none") or \
        part.startswith(("constrained-", "function-", "literal[", "list[", "dict[", "nullable[", "union["))


def _all_fields(model: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    todo: list[Any] = [model]
    while todo:
        current = todo.pop()
        for name, field in getattr(current, "model_fields", {}).items():
            if name in names:
                continue
            names.add(name)
            annotation = field.annotation
            todo.extend(c for c in [annotation, *getattr(annotation, "__args__", ())]
                        if isinstance(c, type) and issubclass(c, BaseModel))
    return names


_M = TypeVar("_M", bound=BaseModel)


def validated(model: type[_M], data: Mapping[str, Any], file: str, prefix: str) -> _M:
    """``model`` validated from ``data``; every error a ConfigError naming file and key (several: ConfigErrors)."""
    from expctl.core.errors import ConfigErrors

    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        errors = _errors(exc, model, file, prefix)
        raise (errors[0] if len(errors) == 1 else ConfigErrors(errors)) from None


def parse_block(data: Any, file: str) -> ExpctlBlock:
    """Validate an experiment's ``expctl`` block; raises ConfigError (several at once as ConfigErrors)."""

    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError("must be a mapping", file=file, key="expctl")
    block = validated(ExpctlBlock, data, file, "expctl")
    if not block.command[0].strip():
        raise ConfigError("the program to run (first element) is empty", file=file, key="expctl.command[0]")
    if block.kind == "TrainJob" and not block.runtime:
        raise ConfigError("a TrainJob needs a runtime (the name of its ClusterTrainingRuntime or "
                          "TrainingRuntime)", file=file, key="expctl.runtime")
    return block


def parse_settings(data: Any, file: str = "expctl.yaml") -> Settings:

    if data is None:
        return Settings()
    if not isinstance(data, Mapping):
        raise ConfigError("must be a mapping", file=file)
    settings = validated(Settings, data, file, "")
    paths = {"tenants": [t.path for t in settings.tenants]}
    for name in backend_registry.names():
        block = settings.block(name)
        paths[f"{name}.tenants"] = block.tenant_paths() if block is not None else []
    for where, listed in paths.items():
        seen: dict[str, int] = {}
        for i, path in enumerate(listed):  # two for one path: which one applies would be an accident of order
            first = seen.setdefault(path.rstrip("/"), i)
            if first != i:
                raise ConfigError(f"a second tenant for {path!r} (the first is {where}.{first})", file=file,
                                  key=f"{where}.{i}.path")
    check_teams(settings.teams, file, tenants=any(paths.values()))
    if any(paths.values()):
        warnings.warn(f"{file}: tenants are deprecated: declare teams instead (each tenant's path, namespace/queue "
                      "and slurm.tenants' partition/account/qos become one team's; docs/teams.md)",
                      FutureWarning, stacklevel=2)
    return settings


def scalar_text(value: str | int | float | bool) -> str:
    """A scalar of the config as the text an environment variable or a filter compares."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
