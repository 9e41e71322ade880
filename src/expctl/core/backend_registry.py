"""The backends expctl knows, by name, with what each declares it can do.

One entry per backend: the factory that opens it, the job kinds it runs, the apply lock it brings (or None:
the workspace's file lock), its block of ``expctl.yaml`` and the checks of desired runs it adds. Settings
validation, the CLI's ``--backend`` choices, ``workspace``, ``apply``, ``render`` and ``validate`` read this
table; adding a backend is its folder (``backends/<name>/``), one entry here and its test driver.

Pure data: factories are ``"module:function"`` strings imported only when a backend is opened, so that
``expctl --help`` and ``expctl validate`` never import Kubernetes or a scheduler's driver.

The layers: ``config`` sits below ``backends`` and never imports them; it reaches a backend's code only
through the references of this table (its settings model, its run checks), loaded when called. A backend's
settings model (``backends/<name>/settings.py``) is the one module of its folder that ``config.schema`` loads
at import, so it stays light: pydantic and ``config.schema_types`` only, never the backend's client. It imports
pydantic itself (the third-party contract lets ``expctl.backends.*.settings`` do so, as it lets
``config.schema``): a backend's keys, bounds and validators are the backend's to declare, in the one
vocabulary (``schema_types``) that makes every key's error read alike.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from expctl.core.errors import ConfigError
from expctl.core.model import JobKind, RunSpec


@dataclass(frozen=True)
class BackendInfo:
    """What a backend declares about itself.

    ``factory``: ``"module:function"``, called as ``function(settings, repo=..., state_dir=...)`` and returning
    an ``expctl.backends.base.Backend``. ``lock``: ``"module:function"``, called as ``function(settings,
    timeout)`` and returning a context manager that serialises applies, or None for the workspace's file lock.
    ``render``: ``"module:function"``, called as ``function(runs, settings, repo)`` and returning what ``apply``
    would submit, as text (``expctl render``), or None when there is nothing to show. ``settings_check``:
    ``"module:function"``, called as ``function(settings)``, raising ConfigError for settings the backend cannot
    open with (``expctl validate`` calls it, so it refuses what ``plan`` and ``apply`` would); None: nothing.
    ``run_checks``: ``"module:function"``, called as ``function(runs, settings)`` and returning the
    ConfigErrors of desired runs the backend would refuse (``run_errors`` calls every backend's, whatever the
    backend, so that a project's runs stay valid for each); None: nothing.
    ``settings``: ``"module:Model"``, the model of the backend's block of ``expctl.yaml`` (the key is its
    name), a ``config.schema_types.BackendSettings``; None: it has none. ``credentials_key``: the key of
    that block that names where jobs that do not inherit expctl's environment get the tracking credentials
    from (``workspace`` warns while it is unset and the tracking URI holds a password).
    ``inherits_env``: its jobs are processes that inherit expctl's own environment (the tracking URI's
    password reaches them through it, never through a file: ``workspace``).
    ``gates_inputs``: its scheduler holds a job until the upstream runs it consumes succeeded (Slurm's
    ``--dependency=afterok``; Kubernetes: created suspended or Kueue-gated, released by the apply that sees the
    upstream succeed): a consumer is submitted as soon as its upstream is, not once it succeeded
    (``core.pipeline.resolve``).
    ``outputs``: a producer's job (``outputs: {dataset: NAME}``) gets ``EXPCTL_OUTPUT_DIR``, in a directory the
    machine running ``expctl apply`` reads (its own, or a file system shared with the cluster: local, Slurm) or
    one whose files the job stores on its MLflow run (Kubernetes), so the apply that sees it succeed records the
    dataset (``engine.outputs``); elsewhere ``validate`` and ``plan`` refuse it.
    ``team_quota``: expctl decides who starts by the teams' GPU quotas (nothing on the backend enforces them;
    ``core.quota``); False where the cluster does (Kueue on Kubernetes). A backend that enforces some teams'
    quotas itself says which (``backends.base.EnforcesQuotas``: Slurm, by each team's QOS).
    """

    name: str
    summary: str
    factory: str
    kinds: frozenset[JobKind]
    lock: str | None = None
    render: str | None = None
    settings_check: str | None = None
    run_checks: str | None = None
    settings: str | None = None
    credentials_key: str | None = None
    inherits_env: bool = False
    gates_inputs: bool = False
    outputs: bool = False
    team_quota: bool = False

    def runs(self, kind: JobKind) -> bool:
        return kind in self.kinds

    def check(self, settings: Any) -> None:
        if self.settings_check is not None:
            load(self.settings_check)(settings)

    def open(self, settings: Any, **kw: Any) -> Any:
        return load(self.factory)(settings, **kw)


_ALL_KINDS = frozenset(JobKind)

BACKENDS: dict[str, BackendInfo] = {
    info.name: info
    for info in (
        BackendInfo("local", "subprocesses on this machine, in a checkout of the pinned commit",
                    "expctl.backends.local.backend:open_local", _ALL_KINDS, inherits_env=True,
                    settings="expctl.backends.local.settings:LocalIn",
                    settings_check="expctl.backends.local.gpus:check_settings", outputs=True,
                    team_quota=True),
        BackendInfo("kubernetes", "Kubeflow training jobs (PyTorchJob, TFJob, MPIJob, TrainJob)",
                    "expctl.backends.kubernetes.backend:open_kubernetes",
                    frozenset({JobKind.PYTORCH, JobKind.TF, JobKind.MPI, JobKind.TRAIN}),
                    lock="expctl.backends.kubernetes.backend:lease_lock",
                    render="expctl.backends.kubernetes.manifests:render_all",
                    run_checks="expctl.backends.kubernetes.manifests.checks:render_errors",
                    settings="expctl.backends.kubernetes.settings:KubernetesIn", credentials_key="tracking_secret",
                    gates_inputs=True, outputs=True),
        BackendInfo("slurm", "one sbatch job per attempt on a Slurm cluster, srun one task per node",
                    "expctl.backends.slurm.backend:open_slurm", frozenset({JobKind.PYTORCH, JobKind.LOCAL}),
                    lock="expctl.backends.slurm.backend:slurm_lock", render="expctl.backends.slurm.script:render_jobs",
                    settings="expctl.backends.slurm.settings:SlurmIn",
                    settings_check="expctl.backends.slurm.script:workdir_of", inherits_env=True,
                    gates_inputs=True, outputs=True,
                    team_quota=True),  # but not for a team whose QOS enforces it (slurm.qos_quota)
    )
}


def gates_inputs(name: str) -> bool:
    """Whether backend ``name``'s scheduler holds a consumer until its upstream succeeded (``BackendInfo``)."""
    info = BACKENDS.get(name)
    return info is not None and info.gates_inputs


def producing() -> list[str]:
    """The backends whose jobs can produce a dataset (``BackendInfo.outputs``)."""
    return [info.name for info in BACKENDS.values() if info.outputs]


def names() -> list[str]:
    return list(BACKENDS)


def lookup(name: str) -> BackendInfo:
    """The backend called ``name``; KeyError (with the known names) for anything else."""
    info = BACKENDS.get(name)
    if info is None:
        raise KeyError(f"unknown backend {name!r} (choose from {', '.join(names())})")
    return info


def unsupported(name: str, kinds: Iterable[JobKind]) -> list[JobKind]:
    """The kinds among ``kinds`` that backend ``name`` cannot run (sorted, unique)."""
    info = lookup(name)
    return sorted({k for k in kinds if not info.runs(k)}, key=lambda k: k.value)


def settings_models() -> dict[str, Any]:
    """``{backend name: the model of its block of expctl.yaml}`` for each backend that declares one (imported
    now: ``config.schema`` builds ``Settings`` from them)."""
    return {info.name: load(info.settings) for info in BACKENDS.values() if info.settings is not None}


def rendering_default() -> BackendInfo:
    """The backend whose jobs ``expctl render`` prints when the chosen one renders nothing (it starts processes
    here): the first of the table that renders."""
    return next(info for info in BACKENDS.values() if info.render is not None)


def run_errors(runs: Sequence[RunSpec], settings: Any) -> list[ConfigError]:
    """Every backend's ``run_checks`` of the desired runs, in the table's order (``load_desired`` reports them
    with its own errors: ``validate`` and ``plan`` refuse what ``apply`` or ``render`` would, on any backend)."""
    found: list[ConfigError] = []
    for info in BACKENDS.values():
        if info.run_checks is not None:
            found.extend(load(info.run_checks)(runs, settings))
    return found


def load(ref: str) -> Any:
    """The object a ``"module:function"`` reference names (imported now)."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)
