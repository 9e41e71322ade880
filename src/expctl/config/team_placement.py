"""Where an experiment's runs go when ``expctl.yaml`` declares teams: its team's namespace, queue, priority
class, partition, account and qos are binding, and its runs' GPUs fit the team's per-run maximum and quota.

``placement`` returns what ``job_spec`` puts in the JobSpec, or raises one ConfigError naming the experiment file
and the key it chose (another team's namespace or account, more GPUs than the team may use).
"""

from __future__ import annotations

from dataclasses import dataclass

from expctl.config.schema import ExpctlBlock, Settings
from expctl.config.schema_teams import TeamIn
from expctl.core.errors import ConfigError


@dataclass(frozen=True)
class TeamPlacement:
    """A team's placement of one experiment (None: the experiment's own choice, else the backend default)."""

    team: str
    namespace: str | None
    queue: str | None
    priority_class: str | None
    slurm: dict[str, str | None]


def placement(block: ExpctlBlock, settings: Settings, source_file: str) -> TeamPlacement | None:
    """The experiment's team placement (None when no team is declared); raises ConfigError on a conflict."""
    if not settings.teams:
        return None
    team = settings.team_for(source_file)
    if team is None:
        owned = ", ".join(p for t in settings.teams for p in t.paths)
        raise ConfigError(f"belongs to no team (expctl.yaml's teams own {owned}): add its path to one team's paths",
                          file=source_file)
    kube = team.kubernetes
    namespace = _binding(team, settings, source_file, "namespace", block.namespace,
                         kube.namespace if kube else None, "kubernetes", "expctl.namespace")
    queue = _binding(team, settings, source_file, "queue", block.queue, kube.queue if kube else None,
                     None, "expctl.queue")
    priority = _binding(team, settings, source_file, "priority_class", block.priority_class,
                        kube.priority_class if kube else None, None, "expctl.priority_class")
    slurm: dict[str, str | None] = {}
    for key in ("partition", "account", "qos"):
        slurm[key] = _binding(team, settings, source_file, key, getattr(block.slurm, key),
                              getattr(team.slurm, key) if team.slurm else None,
                              "slurm" if key == "account" else None, f"expctl.slurm.{key}")
    _check_gpus(team, block, source_file)
    return TeamPlacement(team.name, namespace, queue, priority, slurm)


def _binding(team: TeamIn, settings: Settings, source_file: str, key: str, own: str | None, theirs: str | None,
             owned_in: str | None, at: str) -> str | None:
    """The team's value, else the experiment's own; refused when the experiment chooses another team's value
    (``owned_in``: the team block where one value belongs to one team) or differs from its team's."""
    if own and theirs and own != theirs:
        raise ConfigError(f"{key} {own!r} is not team {team.name}'s {key} {theirs!r} (experiments under "
                          f"{', '.join(team.paths)} use {theirs})", file=source_file, key=at)
    if own and owned_in is not None:
        other = next((t for t in settings.teams if t is not team and
                      getattr(getattr(t, owned_in), key, None) == own), None)
        if other is not None:
            raise ConfigError(f"{key} {own!r} is team {other.name}'s: experiments of team {team.name} cannot "
                              "run there", file=source_file, key=at)
    return theirs or own


def _check_gpus(team: TeamIn, block: ExpctlBlock, source_file: str) -> None:
    """A run's GPUs (per replica × replicas) within the team's per-run maximum and its whole quota."""
    asked = block.resources.gpus * block.replicas
    for limit, what in ((team.max_gpus_per_run, "per-run maximum"), (team.gpus, "whole quota")):
        if limit is not None and asked > limit:
            raise ConfigError(f"a run asks for {asked} GPUs ({block.resources.gpus} x {block.replicas} replicas), "
                              f"over team {team.name}'s {what} of {limit}", file=source_file,
                              key="expctl.resources.gpus")
