"""Whose GPU quota Slurm enforces: a team whose QOS exists in Slurm's accounting with ``GrpTRES=gres/gpu=N``
equal to its quota (what ``expctl teams apply`` reconciles). Its runs are submitted and Slurm holds those over
the quota (reason ``QOSGrpGRES``, shown by ``expctl status``); the plan does not hold them. For every other team
with a quota — no accounting (no slurmdbd), no QOS declared, a QOS missing or with another limit, or
``sacctmgr`` failing — expctl holds its runs over the quota itself, as without accounting
(``waiting (quota: vision 2/2 GPUs)``). The plan says in one note per team which applies.

``enforced_by_qos`` is the pure decision; ``read_gpu_limits`` the one ``sacctmgr -P -n show qos`` it needs;
``QosQuotas`` asks it once (per command: the backend holds one) and only when some team has a GPU quota.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from expctl.backends.slurm.accounting import sacctmgr_show
from expctl.backends.slurm.accounting_plan import GPU_TRES, parse_tres
from expctl.core.errors import BackendError
from expctl.core.quota import EnforcedQuotas
from expctl.core.team_platform import Team

HELD = "expctl holds its runs over its GPU quota"
HELD_ALL = "expctl holds runs over the teams' GPU quotas"
NO_ACCOUNTING = f"Slurm accounting is off on this cluster (no slurmdbd): {HELD_ALL}"

Limits = Mapping[str, str | None]  # {qos: its GrpTRES gres/gpu limit, None: none}; the mapping None: no accounting


def parse_gpu_limits(text: str) -> dict[str, str | None]:
    """``{qos: GPU limit}`` from ``sacctmgr -P -n show qos format=name,grptres`` (names in lower case)."""
    out: dict[str, str | None] = {}
    for line in text.splitlines():
        name, _, tres = line.partition("|")
        if name.strip():
            out[name.strip().lower()] = parse_tres(tres).get(GPU_TRES)
    return out


def read_gpu_limits(env: Mapping[str, str] | None = None) -> dict[str, str | None] | None:
    """Each QOS's GPU limit, or None when the cluster has no accounting; ``BackendError`` when sacctmgr fails."""
    text = sacctmgr_show("qos", "name,grptres", env)
    return None if text is None else parse_gpu_limits(text)


def enforced_by_qos(teams: Sequence[Team], limits: Limits | None, failure: str | None = None) -> EnforcedQuotas:
    """Pure: the teams with a GPU quota whose QOS Slurm enforces it with (``limits``: ``read_gpu_limits``; None:
    no accounting; ``failure``: why sacctmgr could not say — then no team), and one note per team."""
    quota_teams = [t for t in teams if t.gpus is not None]
    if not quota_teams:
        return EnforcedQuotas()
    if failure is not None:
        return EnforcedQuotas(notes=(f"{failure}; {HELD_ALL}",))
    if limits is None:
        return EnforcedQuotas(notes=(NO_ACCOUNTING,))
    enforced: set[str] = set()
    notes = []
    for team in quota_teams:
        qos = (team.qos or "").lower()
        limit = limits.get(qos) if qos else None
        if not qos:
            notes.append(f"team {team.name} declares no Slurm qos: {HELD}")
        elif qos not in limits:
            notes.append(f"qos {qos} of team {team.name} is not in Slurm's accounting (expctl teams apply makes "
                         f"it): {HELD}")
        elif limit != str(team.gpus):
            notes.append(f"qos {qos} of team {team.name} limits {GPU_TRES} to {limit or 'nothing'}, not its "
                         f"quota {team.gpus} (expctl teams apply sets it): {HELD}")
        else:
            enforced.add(team.name)
            notes.append(f"team {team.name}'s GPU quota is Slurm's to enforce (qos {qos}, GrpTRES={GPU_TRES}="
                         f"{limit}): its runs are submitted and those over it wait in Slurm (QOSGrpGRES)")
    return EnforcedQuotas(frozenset(enforced), tuple(notes))


class QosQuotas:
    """``enforced_by_qos`` with the limits read once (``read``: ``read_gpu_limits`` by default; tests inject
    another), and not at all while no team has a GPU quota."""

    def __init__(self, read: Callable[[], Limits | None] = read_gpu_limits) -> None:
        self._read = read
        self._limits: tuple[Limits | None, str | None] | None = None

    def of(self, teams: Sequence[Team]) -> EnforcedQuotas:
        if all(t.gpus is None for t in teams):
            return EnforcedQuotas()
        if self._limits is None:
            try:
                self._limits = (self._read(), None)
            except BackendError as exc:
                self._limits = (None, str(exc))
        return enforced_by_qos(teams, *self._limits)
