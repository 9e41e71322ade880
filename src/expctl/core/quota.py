"""Team GPU quotas where expctl decides who starts (the local backend; on Slurm, each team whose QOS does not
hold its quota — ``EnforcedQuotas`` names the others, ``backends.slurm.qos_quota``): a run whose
start would take its team over its quota waits — ``waiting (quota: vision 8/8 GPUs)`` — and starts on a later
apply (or ``--wait`` poll) once the team's running and queued runs free their GPUs.

Pure: the plan's changes and the observed runs in, the changes out; nothing here performs I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from expctl.core.model import Action, Change, ObservedRun, Reason

_STARTS = (Action.CREATE, Action.RETRY, Action.REPLACE)
_QUOTA = "quota: "  # how a held start's detail begins


@dataclass(frozen=True)
class Quotas:
    """The teams' GPU quotas (``{team: GPUs}``; a team without one is absent) and the team owning each
    experiment (``{experiment: team}``), for the observed runs as for the desired ones."""

    gpus: Mapping[str, int]
    teams: Mapping[str, str]


@dataclass(frozen=True)
class EnforcedQuotas:
    """The teams whose GPU quota the backend's scheduler enforces itself (Slurm with accounting: the team's QOS
    holds ``GrpTRES=gres/gpu=N``): their runs are submitted and wait there, the plan does not hold them; and
    one note per team with a quota saying which applies (shown under the plan)."""

    teams: frozenset[str] = frozenset()
    notes: tuple[str, ...] = ()


def run_gpus(gpus_per_replica: int, replicas: int) -> int:
    """The GPUs one run holds: per replica × replicas (what validate checks against the team's maximum)."""
    return max(gpus_per_replica, 0) * max(replicas, 1)


def in_use(observed: Iterable[ObservedRun], quotas: Quotas, freed: Iterable[str] = ()) -> dict[str, int]:
    """``{team: GPUs}`` held by each team's unfinished runs (running, or queued to start), leaving out the
    objects named in ``freed`` (the plan deletes them before it starts anything)."""
    gone = set(freed)
    used: dict[str, int] = {}
    for run in observed:
        team = quotas.teams.get(run.experiment)
        if team is None or not run.live or run.phase.finished or run.cancelled or run.name in gone:
            continue
        used[team] = used.get(team, 0) + run_gpus(run.gpus, run.replicas)
    return used


def hold_over_quota(changes: Sequence[Change], observed: Sequence[ObservedRun], quotas: Quotas) -> list[Change]:
    """The changes, with each start (create, retry, replace) that would take its team over its GPU quota
    turned into ``waiting (quota: T used/quota GPUs)``. Starts are admitted in plan order; a run asking for
    no GPU always starts. A held run keeps later runs of its team waiting too (no starvation of a big run)."""
    used = in_use(observed, quotas, (name for c in changes if c.action is Action.DELETE for name in c.deletes))
    holding = {r.name: run_gpus(r.gpus, r.replicas) for r in observed
               if r.live and not r.phase.finished and not r.cancelled}
    blocked: set[str] = set()
    out: list[Change] = []
    for change in changes:
        spec = change.desired
        team = spec.job.team if spec is not None else None
        limit = quotas.gpus.get(team) if team is not None else None
        if spec is None or team is None or limit is None or change.action not in _STARTS:
            out.append(change)
            continue
        need = run_gpus(spec.job.resources.gpus, spec.job.replicas)
        have = used.get(team, 0)
        freed = sum(holding.get(name, 0) for name in change.deletes)  # a replace stops its old run first
        if need and (team in blocked or have - freed + need > limit):
            blocked.add(team)
            out.append(_waiting(change, f"{_QUOTA}{team} {have}/{limit} GPUs"))
            continue
        used[team] = have - freed + need
        out.append(change)
    return out


def waits_for_quota(change: Change) -> bool:
    """Whether the plan holds ``change``'s start back for its team's GPU quota."""
    return change.action is Action.NOOP and change.reason is Reason.WAITING and change.detail.startswith(_QUOTA)


def _waiting(change: Change, detail: str) -> Change:
    """A start held back: nothing is written now, the run is named as it will be when it starts."""
    return replace(change, action=Action.NOOP, reason=Reason.WAITING, detail=detail, deletes=())
