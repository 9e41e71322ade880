"""``expctl teams plan/apply`` on Slurm: the accounting reconcile (``accounting``) behind the teams engine's seam.

The engine (``engine/team_platform``) diffs desired against observed platform objects and writes one change at a
time, auditing each. Slurm's accounting plan (``accounting_plan.plan_accounting``) already is that diff, read
from ``sacctmgr``; here each of its commands becomes one platform object: a create is desired only, a modify is
desired and observed with other digests, a delete (an account or QOS expctl made that no team declares) is
observed only — so the engine's rules hold as on Kubernetes: deletes only with ``--prune``, each write audited,
a failing ``sacctmgr`` fails that change and the others still run. Objects of the same name that expctl did not
create are never touched (the accounting plan leaves them and says so in a note).

Where the cluster has no accounting (no slurmdbd), nothing is written: the plan says so in a note, and checks
that the declared partitions exist. A declared partition that does not exist refuses the plan (one line).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from expctl.backends.slurm.accounting import (
    NO_ACCOUNTING_NOTE,
    missing_partitions,
    read_live,
    unix_users,
)
from expctl.backends.slurm.accounting_plan import Change, SlurmTeam, plan_accounting
from expctl.core.errors import BackendError, ExpctlError
from expctl.core.naming import canonical_json, sha256_hex
from expctl.core.sanitize import one_line
from expctl.core.team_platform import PlatformChange, PlatformObject, Team

KINDS = {"qos": "QOS", "account": "Account", "association": "Association"}


def slurm_teams(teams: Sequence[Team]) -> list[SlurmTeam]:
    """The teams' Slurm side (``users``: the members, of whom those that are Unix users here get an
    association, with the user running expctl — ``accounting.unix_users``)."""
    return [SlurmTeam(t.name, t.account, t.partition, t.qos, t.gpus, t.max_gpus_per_run, t.members)
            for t in teams if t.account or t.qos or t.partition]


def _object(change: Change) -> PlatformObject:
    return PlatformObject(KINDS.get(change.kind, change.kind), change.name, "", change.team or "",
                          sha256_hex(canonical_json(list(change.argv)))[:16], {"argv": list(change.argv)})


class SlurmTeams:
    backend_name = "slurm"
    order = ("QOS", "Account", "Association")

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = env
        self.notes: list[str] = []
        self._changes: dict[tuple[str, str, str], Change] = {}
        self._observed: list[PlatformObject] = []

    def desired(self, teams: Sequence[Team]) -> list[PlatformObject]:
        wanted = slurm_teams(teams)
        missing = missing_partitions(wanted, self.env)
        if missing:
            raise ExpctlError(f"expctl.yaml: teams: {missing[0]}"
                              + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        live = read_live(self.env)
        self.notes, self._changes, self._observed = [], {}, []
        if live is None:
            self.notes.append(NO_ACCOUNTING_NOTE)
            return []
        users, user_notes = unix_users([t for t in wanted if t.account])
        plan = plan_accounting(wanted, live, users, prune=True)  # deletes become observed-only objects
        self.notes += [*plan.notes, *user_notes]
        desired: list[PlatformObject] = []
        for change in plan.changes:
            obj = _object(change)
            self._changes[obj.key] = change
            if change.action == "create":
                desired.append(obj)
            elif change.action == "modify":
                desired.append(obj)
                self._observed.append(PlatformObject(obj.kind, obj.name, "", obj.team, "live"))
            else:
                self._observed.append(obj)
        return desired

    def observe(self, desired: Sequence[PlatformObject]) -> tuple[list[PlatformObject],
                                                                   dict[tuple[str, str, str], str]]:
        return list(self._observed), {}

    def write(self, change: PlatformChange) -> None:
        planned = self._changes.get(change.obj.key)
        if planned is None:
            raise BackendError(f"slurm: no sacctmgr command planned for {change.obj.shown}")
        try:
            proc = subprocess.run(["sacctmgr", "-i", *planned.argv], capture_output=True, text=True, env=self.env,
                                  check=False, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendError(f"sacctmgr failed to {planned}: {one_line(str(exc))}") from None
        if proc.returncode != 0:
            why = one_line((proc.stderr or proc.stdout).strip().splitlines()[-1] if (proc.stderr or proc.stdout)
                           .strip() else f"exit {proc.returncode}")
            raise BackendError(f"sacctmgr failed to {planned}: {why}")


def open_teams(settings: Any) -> SlurmTeams:
    return SlurmTeams()
