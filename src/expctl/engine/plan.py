"""Compute a plan end to end: desired runs from git, observed runs from a backend joined with the tracker.

I/O at the edge: it reads git, asks the backend and the tracker, then hands values to the pure core.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from expctl.backends.base import Backend, EnforcesQuotas
from expctl.config import source
from expctl.config.desired_state import Desired, load_desired
from expctl.config.schema_teams import team_of_experiment
from expctl.core import pipeline
from expctl.core.backend_registry import BACKENDS, gates_inputs
from expctl.core.diff import join_observed
from expctl.core.errors import ExpctlError
from expctl.core.inputs import ModelVersion
from expctl.core.model import ObservedRun, Plan, RunSpec
from expctl.core.plan_rules import PlanRefused, make_plan
from expctl.core.planfile import SavedPlan
from expctl.core.quota import Quotas
from expctl.core.team_platform import Team
from expctl.tracking.base import ResolvesModels, Tracker

T = TypeVar("T")


@dataclass(frozen=True)
class PlanOptions:
    rev: str = "HEAD"
    worktree: bool = False
    prune: bool = False
    replace_running: bool = False
    force_prune: bool = False


def observe_alongside(backend: Backend, read: Callable[[], T]) -> tuple[list[ObservedRun], T]:
    """The backend's objects, and ``read()`` (the tracker's records) at the same time: two servers, neither
    waits for the other. A failing backend is reported first (after ``read`` ended), as when they were read
    one after the other."""
    with ThreadPoolExecutor(1, thread_name_prefix="expctl-tracker") as pool:
        reading = pool.submit(read)
        live = backend.observe()
        return live, reading.result()


def observe(backend: Backend, tracker: Tracker | None) -> list[ObservedRun]:
    """One observation: one LIST per kind × namespace, one paginated search of the tracker (concurrently)."""
    if tracker is None:
        return join_observed(backend.observe(), [])
    live, records = observe_alongside(backend, tracker.records)
    return join_observed(live, records)


def model_versions(tracker: Tracker | None, runs: Sequence[RunSpec]) -> dict[str, ModelVersion | None]:
    """What each model input of the runs names in the registry now: one lookup per distinct input (none
    without a tracker with a registry: those inputs wait)."""
    decls = pipeline.model_inputs(runs)
    if not isinstance(tracker, ResolvesModels):
        return {d.wanted: None for d in decls}
    return {d.wanted: tracker.model_version(d) for d in decls}


def resolved_runs(runs: Sequence[RunSpec], observed: Sequence[ObservedRun],
                  models: Mapping[str, ModelVersion | None], backend: str) -> list[RunSpec]:
    """The desired runs with their inputs resolved (the identities the tracker's sync must match)."""
    return pipeline.resolve(runs, observed, models, gates_inputs(backend))[0]


def make_plan_of(desired: Desired, observed: list[ObservedRun], backend: Backend | str, opts: PlanOptions,
                 now: float | None = None, models: Mapping[str, ModelVersion | None] | None = None) -> Plan:
    """The plan (``backend``: the open backend, or only its name: then no scheduler is asked whose GPU quotas
    it enforces), with a note per team saying who holds its runs over its quota where the backend decides."""
    name = backend if isinstance(backend, str) else backend.name
    quotas, notes = quotas_of(desired, observed, backend)
    try:
        plan = make_plan(
            desired.runs, observed, models=models, commit=desired.snapshot.commit, backend=name,
            now=time.time() if now is None else now, prune=opts.prune,
            replace_running=opts.replace_running, force_prune=opts.force_prune, worktree=opts.worktree,
            quotas=quotas,
        )
    except PlanRefused as exc:
        raise ExpctlError(str(exc)) from exc
    return replace(plan, notes=notes) if notes else plan


def quotas_of(desired: Desired, observed: list[ObservedRun],
              backend: Backend | str) -> tuple[Quotas | None, tuple[str, ...]]:
    """The teams' GPU quotas when expctl decides who starts on ``backend`` (None: no team has a quota, or the
    backend's scheduler enforces them), with the team of each desired and observed experiment; and the notes
    of a backend that may enforce some itself (``EnforcesQuotas``: Slurm, by each team's QOS), whose teams
    are left out."""
    info = BACKENDS.get(backend if isinstance(backend, str) else backend.name)
    gpus = {t.name: t.gpus for t in desired.settings.teams if t.gpus is not None}
    if info is None or not info.team_quota or not gpus:
        return None, ()
    notes: tuple[str, ...] = ()
    if isinstance(backend, EnforcesQuotas):
        enforced = backend.enforced_quotas([Team(t.name, qos=t.slurm.qos if t.slurm else None, gpus=t.gpus)
                                            for t in desired.settings.teams])
        gpus = {team: n for team, n in gpus.items() if team not in enforced.teams}
        notes = enforced.notes
    if not gpus:
        return None, notes
    return Quotas(gpus, teams_of(desired, (r.experiment for r in observed))), notes


def teams_of(desired: Desired, experiments: Iterable[str]) -> dict[str, str]:
    """``{experiment: team}`` for the desired runs and ``experiments`` (by expctl.yaml's teams at the commit)."""
    found = {s.experiment: s.job.team for s in desired.runs if s.job.team is not None}
    for name in set(experiments) - found.keys():
        team = team_of_experiment(desired.settings.teams, name)
        if team is not None:
            found[name] = team
    return found


def compute_plan(desired: Desired, backend: Backend, tracker: Tracker | None, opts: PlanOptions,
                 now: float | None = None) -> tuple[Plan, list[ObservedRun]]:
    observed = observe(backend, tracker)
    models = model_versions(tracker, desired.runs)
    return make_plan_of(desired, observed, backend, opts, now, models), observed


def desired_state(repo: Path, opts: PlanOptions) -> Desired:
    return load_desired(source.snapshot(repo, opts.rev, worktree=opts.worktree))


def options_of(saved: SavedPlan) -> PlanOptions:
    """The options a saved plan was made with (it is recomputed at its commit, then checked for freshness)."""
    return PlanOptions(rev=saved.commit, prune=saved.prune, replace_running=saved.replace_running)
