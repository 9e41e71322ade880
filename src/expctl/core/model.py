"""Domain values of expctl: what a run should be, what a backend observed, and what a plan does.

Pure: frozen dataclasses and enums only. No I/O, no clock, no third-party imports.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from expctl.core.inputs import InputDecl, ResolvedInput

JSON = Any  # a value that json.dumps accepts


class JobKind(enum.StrEnum):
    """The kinds of job an experiment can run as."""

    PYTORCH = "PyTorchJob"
    TF = "TFJob"
    MPI = "MPIJob"
    TRAIN = "TrainJob"
    LOCAL = "local"


class Phase(enum.StrEnum):
    """Where an observed run is in its life, ordered from not started to finished."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)


class FailureClass(enum.StrEnum):
    """Why a failed run failed: the platform (retried by policy) or the user's code (opt-in)."""

    INFRASTRUCTURE = "infrastructure"
    CODE = "code"


@dataclass(frozen=True)
class Resources:
    cpu: str | None = None
    memory: str | None = None
    gpus: int = 0
    gpu_resource: str = "nvidia.com/gpu"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    on: tuple[FailureClass, ...] = (FailureClass.INFRASTRUCTURE,)
    backoff_seconds: float = 30.0
    backoff_factor: float = 2.0
    max_backoff_seconds: float = 3600.0

    def backoff_after(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt ``failed_attempt`` (1-based) failed.

        Grown step by step up to the maximum: ``factor ** attempt`` overflows (an OverflowError, not inf) for a
        large factor long before the attempts run out."""
        delay = float(self.backoff_seconds)
        for _ in range(max(0, failed_attempt - 1)):
            if delay >= self.max_backoff_seconds:
                break
            delay *= self.backoff_factor
        return float(min(delay, self.max_backoff_seconds))


@dataclass(frozen=True)
class ValidationGate:
    metric: str
    threshold: float
    mode: str = "max"  # "max": higher passes (>=), "min": lower passes (<=)
    register_as: str | None = None
    alias: str | None = None  # moved to the best passing version of the current points (``alias_to``)
    alias_to: str = "best"  # "best": the best of the experiment's current points; "latest": every passing version
    # validation by the platform: a job of its own evaluates the logged model on a held-out split
    split: str | None = None
    command: tuple[str, ...] = ()  # the evaluation command (default: expctl's evaluator for pytorch/sklearn)
    promote_alias: str | None = None  # promotion rule: this alias moves only ...
    promote_when: str = "better_than_current"  # ... when the new version beats its holder ("always": it moves)
    promote_unmeasured: str = "keep"  # a holder with no gate metric to compare keeps the alias ("replace")

    def passes(self, value: float) -> bool:
        return value >= self.threshold if self.mode == "max" else value <= self.threshold

    @property
    def by_platform(self) -> bool:
        """Whether a validation job of expctl's (not the training's own metrics) decides the gate."""
        return self.split is not None or bool(self.command)

    @property
    def gate_metric(self) -> str:
        """The metric the gate reads: the validation job's (``validation.<metric>``) when the platform validates."""
        if self.by_platform and not self.metric.startswith(VALIDATION_PREFIX):
            return VALIDATION_PREFIX + self.metric
        return self.metric

    def better(self, value: float, than: float) -> bool:
        """Strictly better by the gate's mode: a tie is not better (the holder keeps the alias)."""
        return value > than if self.mode == "max" else value < than


VALIDATION_PREFIX = "validation."


@dataclass(frozen=True)
class Scheduling:
    queue: str | None = None  # Kueue LocalQueue name
    priority_class: str | None = None
    volcano_queue: str | None = None  # set to use Volcano gang scheduling
    min_available: int | None = None
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Mapping[str, JSON], ...] = ()
    partition: str | None = None  # Slurm placement (partition, account, qos)
    account: str | None = None
    qos: str | None = None


@dataclass(frozen=True)
class CheckpointPolicy:
    """Where attempts keep checkpoints (None: the MLflow run's artifacts) and which failures resume from them."""

    dir: str | None = None  # shared storage every attempt sees; each attempt writes under <dir>/<object name>
    resume_on: tuple[FailureClass, ...] = (FailureClass.INFRASTRUCTURE,)


@dataclass(frozen=True)
class Checkpoint:
    """The latest checkpoint an attempt left: a URI or path the job can read, and the epoch it ended."""

    uri: str
    epoch: int | None = None


@dataclass(frozen=True)
class ResumeFrom:
    """What a retried attempt starts from: the previous attempt's latest checkpoint."""

    uri: str
    attempt: int
    run_id: str
    epoch: int | None = None


@dataclass(frozen=True)
class JobSpec:
    """How to run an experiment: the validated ``expctl`` block of its composed config."""

    kind: JobKind
    replicas: int
    image: str | None
    command: tuple[str, ...]
    resources: Resources = field(default_factory=Resources)
    env: tuple[tuple[str, str], ...] = ()
    scheduling: Scheduling = field(default_factory=Scheduling)
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_seconds: int | None = None
    ttl_seconds_after_finished: int | None = 86400
    validation: ValidationGate | None = None
    code_paths: tuple[str, ...] = ()
    namespace: str | None = None
    runtime: str | None = None  # TrainJob: (Cluster)TrainingRuntime name
    runtime_kind: str = "ClusterTrainingRuntime"
    git_secret: str | None = None
    operator_restarts: bool = False
    checkpoints: CheckpointPolicy = field(default_factory=CheckpointPolicy)
    team: str | None = None  # the team owning the experiment (expctl.yaml's teams:), not in the spec hash
    inputs: tuple[InputDecl, ...] = ()  # what it consumes (core.pipeline); their resolution is in the spec hash
    outputs: str | None = None  # the dataset its job's output directory becomes (``outputs: {dataset: NAME}``)

    def shape(self) -> dict[str, JSON]:
        """The parts of the job that change what it computes, as canonical JSON data."""
        shape: dict[str, JSON] = {
            "kind": self.kind.value,
            "replicas": self.replicas,
            "image": self.image,
            "command": list(self.command),
            "gpus": self.resources.gpus,
            "env": [list(pair) for pair in self.env],
        }
        if self.outputs:  # only when declared: every other run keeps its spec hash
            shape["outputs"] = self.outputs
        return shape


@dataclass(frozen=True)
class DatasetRef:
    """A dataset a run uses, materialized: its manifest digest, its batches, and where the manifest is here."""

    name: str
    digest: str
    manifest_file: str  # this machine's copy of the manifest (.expctl/manifests/<digest>.json)
    batches: tuple[tuple[str, str, int], ...] = ()  # (batch name, batch digest, items)
    splits: tuple[tuple[str, int], ...] = ()  # (split, items)


@dataclass(frozen=True)
class RunSpec:
    """One desired training run: a sweep point of an experiment at a commit."""

    experiment: str  # experiment name, e.g. "team-a/resnet-sweep"
    source_file: str  # path of the experiment file in the repository
    overrides: tuple[str, ...]  # the sweep point's overrides, sorted
    run_key: str  # hex digest identifying (experiment, overrides)
    name: str  # base object name (RFC 1035), attempt 1
    spec_hash: str
    commit: str
    code_digest: str
    job: JobSpec
    config: Mapping[str, JSON]  # resolved composed config (without the hydra block)
    datasets: tuple[DatasetRef, ...] = ()  # the materialized datasets of its ``data:`` block
    data_digest: str = ""  # one digest of all its datasets' manifests ("" when it declares none)
    validates: str = ""  # a validation job: the run key of the training run it evaluates
    target_run_id: str = ""  # ... and that run's MLflow run id, once it succeeded (set by the plan)
    upstream: tuple[tuple[str, str], ...] = ()  # an ``each`` input: (input name, the upstream point's run key)
    inputs: tuple[ResolvedInput, ...] = ()  # its inputs, resolved (set by the plan: core.pipeline)

    def name_for(self, attempt: int) -> str:
        from expctl.core.naming import attempt_name

        return attempt_name(self.name, attempt)


@dataclass(frozen=True)
class ObservedRun:
    """One run as a backend (joined with the tracker's records) sees it: its latest attempt."""

    run_key: str
    name: str
    experiment: str
    attempt: int
    spec_hash: str
    phase: Phase
    backend: str
    kind: str = ""
    namespace: str | None = None
    failure: FailureClass | None = None
    message: str = ""
    created_at: float | None = None
    finished_at: float | None = None
    cancelled: bool = False
    managed: bool = True
    mlflow_run_id: str | None = None
    overrides: tuple[str, ...] = ()
    commit: str | None = None
    replicas: int = 1
    gpus: int = 0
    user: str | None = None
    live: bool = True  # False when only the tracker remembers it (object garbage-collected)
    resumed_from: ResumeFrom | None = None  # known from the tracker's records
    data_digest: str | None = None  # the datasets' digest it was launched with (None: unknown)
    inputs: tuple[tuple[str, str], ...] | None = None  # (input name, label) it was launched with (None: unknown)
    after_failed: bool = False  # never started: the upstream attempt its scheduler waited on failed (Slurm afterok)
    held_by: tuple[str, ...] = ()  # upstream attempts a gate holds it for, not started yet (Kubernetes suspension)
    metrics: tuple[tuple[str, float], ...] = ()  # its latest metrics, from the tracker's records (inputs' best)
    output_digest: str | None = None  # the manifest digest of the dataset it produced, once recorded (tracker)

    @property
    def state(self) -> str:
        """What people are shown (``status``, ``describe``): the phase, or ``Cancelled`` for a cancelled run."""
        return Phase.CANCELLED.value if self.cancelled else self.phase.value


class Action(enum.StrEnum):
    CREATE = "create"
    RETRY = "retry"
    REPLACE = "replace"
    DELETE = "delete"
    BLOCKED = "blocked"
    GAVE_UP = "gave-up"
    NOOP = "noop"

    @property
    def writes(self) -> bool:
        return self in (Action.CREATE, Action.RETRY, Action.REPLACE, Action.DELETE)


class Reason(enum.StrEnum):
    """Why a plan line says what it says: code branches on these, people read them."""

    MISSING = "missing"  # desired, nothing observed: create
    SPEC_CHANGED = "spec-changed"  # replace (or blocked while pending/running)
    DATA_CHANGED = "data-changed"  # replace: the digest of the run's datasets' manifests changed
    WAITING = "waiting"  # a validation job whose training run has not succeeded yet, or an input not resolvable
    UPSTREAM_CHANGED = "upstream-changed"  # replace: an input resolves to another upstream (core.pipeline)
    UPSTREAM_FAILED = "upstream-failed"  # blocked: an input's upstream run failed for good
    SKIPPED = "skipped"  # a validation job whose training run finished without succeeding
    FAILED = "failed"  # the latest attempt failed and a retry is due
    BACKOFF = "backoff"  # failed, retry not due yet
    GAVE_UP = "gave-up"  # failed, retries exhausted or not enabled
    CANCELLED = "cancelled"  # cancelled by an operator; not relaunched
    UNCHANGED = "unchanged"
    REMOVED = "removed"  # no longer desired, pruned
    WOULD_PRUNE = "would-prune"  # no longer desired, --prune not given


@dataclass(frozen=True)
class Change:
    """One line of a plan: what happens to one run and why."""

    action: Action
    reason: Reason
    experiment: str
    run_key: str
    name: str  # the object name the action produces (or deletes)
    overrides: tuple[str, ...]
    spec_hash: str | None
    attempt: int
    desired: RunSpec | None = None
    observed: ObservedRun | None = None
    detail: str = ""
    deletes: tuple[str, ...] = ()  # names of the objects this change removes first


@dataclass(frozen=True)
class Plan:
    """A plan is data: the changes, the commit they come from, and a fingerprint of what was observed."""

    commit: str
    backend: str
    changes: tuple[Change, ...]
    fingerprint: str
    worktree: bool = False
    prune: bool = False
    replace_running: bool = False
    notes: tuple[str, ...] = ()  # one line each, shown under the plan (who holds runs over a team's GPU quota)

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action is action)

    @property
    def has_writes(self) -> bool:
        return any(c.action.writes for c in self.changes)


@dataclass(frozen=True)
class TrackingRef:
    """The MLflow run a job logs into (``jobenv.tracking_env`` hands it to the job).

    ``tracking_uri`` is expctl's own (it may hold a password); jobs are handed ``sanitize.job_uri`` of it, which
    holds none: a job's environment is written into manifests, state files and batch scripts."""

    tracking_uri: str
    run_id: str
    experiment_name: str


@dataclass(frozen=True)
class Launch:
    """Everything a backend needs to create one attempt of a run."""

    spec: RunSpec
    attempt: int
    name: str
    tracking: TrackingRef
    applied_by: str = ""
    repo_url: str | None = None  # where jobs clone the code from (Kubernetes)
    resume: ResumeFrom | None = None  # the previous attempt's checkpoint (a retry after a failure)



DATASET_ARTIFACT_DIR = "expctl/datasets"  # a run's copy of each dataset manifest: <dir>/<dataset name>.json
