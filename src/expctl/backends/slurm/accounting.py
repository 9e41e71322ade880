"""Teams on Slurm: the declared partitions exist, and where the cluster has accounting (slurmdbd), each team's
account, QOS (its GPU limit) and user associations are reconciled with ``sacctmgr``.

The interface for ``expctl teams plan/apply`` is two functions on plain data (``SlurmTeam``, from
``slurm.accounting_plan``):

- ``plan_slurm_teams(teams, prune=False, env=None) -> SlurmTeamsReport``: reads ``sinfo`` and ``sacctmgr``
  and changes nothing;
- ``apply_slurm_teams(teams, prune=False, env=None) -> SlurmTeamsReport``: the same plan, then its
  ``sacctmgr -i`` commands one by one; its ``changes`` are the ones made. A second apply plans nothing.

Both raise ``BackendError`` with one line: a declared partition ``sinfo`` does not list (apply, before any
change; ``plan`` reports it in ``problems``), or a ``sacctmgr`` command that failed (its stderr, and how many
changes were made before it — those are real, a rerun finishes the rest). A cluster without accounting
(``sacctmgr``: "not running a supported accounting_storage plugin") is not an error: the report says in one
note that only the partitions were checked (Slurm without slurmdbd knows no accounts or QOS, and accepts any
``--account``). ``env`` is the environment of the commands (``SLURM_CONF``), by default this process's.

Users: each team's ``users`` that are Unix users here, and always the user running expctl (the CI identity that
submits the team's jobs), get an association with the team's account; other names are skipped with a note.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from expctl.backends.slurm.accounting_plan import (
    AccountingPlan,
    Change,
    LiveAccounting,
    SlurmTeam,
    parse_live,
    plan_accounting,
)
from expctl.core.errors import BackendError, truncate

__all__ = ["SlurmTeam", "SlurmTeamsReport", "apply_slurm_teams", "plan_slurm_teams"]

_NO_ACCOUNTING = ("not running a supported accounting_storage plugin", "accounting storage is disabled")
NO_ACCOUNTING_NOTE = ("Slurm accounting is off on this cluster (no slurmdbd): only that the partitions exist "
                      "was checked; accounts, QOS and GPU limits are not Slurm's to enforce here")


@dataclass(frozen=True)
class SlurmTeamsReport:
    """What the reconcile found and did: ``accounting`` (whether the cluster has it), ``changes`` (planned, or
    made by apply), ``kept`` (deletes held back without prune), ``notes`` and ``problems`` (one line each)."""

    accounting: bool
    changes: tuple[Change, ...]
    kept: tuple[Change, ...]
    notes: tuple[str, ...]
    problems: tuple[str, ...]

    def lines(self) -> list[str]:
        """The report as lines a person reads (what ``expctl teams plan`` prints for Slurm)."""
        out = [f"slurm: {c}" for c in self.changes]
        out += [f"slurm: kept {c.kind} {c.name} ({c.detail}; --prune deletes it)" for c in self.kept]
        return out + [f"slurm: {n}" for n in (*self.problems, *self.notes)]


def _run(argv: Sequence[str], env: Mapping[str, str] | None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False,
                              env=None if env is None else {**os.environ, **env})
    except FileNotFoundError as exc:
        raise BackendError(f"{argv[0]} not found: is this a Slurm login node (slurm-client)?") from exc
    except subprocess.TimeoutExpired as exc:
        raise BackendError(f"{' '.join(argv)} did not answer within 60 s") from exc


def _stderr_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
    first = next((ln for ln in lines if "error" in ln.lower()), lines[0] if lines else f"exit {proc.returncode}")
    return truncate(first.removeprefix("sacctmgr: error: ").removeprefix("sinfo: error: "))


def sacctmgr_show(what: str, fmt: str, env: Mapping[str, str] | None) -> str | None:
    """``sacctmgr -P -n show WHAT format=FMT``; None when the cluster has no accounting."""
    argv = ["sacctmgr", "-P", "-n", "show", what, f"format={fmt}"]
    proc = _run(argv, env)
    if proc.returncode != 0:
        text = f"{proc.stdout}\n{proc.stderr}".lower()
        if any(marker in text for marker in _NO_ACCOUNTING):
            return None
        raise BackendError(f"{' '.join(argv)} failed: {_stderr_line(proc)}")
    return proc.stdout


def read_live(env: Mapping[str, str] | None = None) -> LiveAccounting | None:
    """What Slurm's accounting holds, or None when the cluster has no accounting."""
    qos = sacctmgr_show("qos", "name,description,grptres,maxtresperjob", env)
    if qos is None:
        return None
    accounts = sacctmgr_show("account", "account,description,organization", env) or ""
    assocs = sacctmgr_show("assoc", "account,user,qos,defaultqos", env) or ""
    return parse_live(qos, accounts, assocs)


def missing_partitions(teams: Sequence[SlurmTeam], env: Mapping[str, str] | None = None) -> list[str]:
    """One line per declared partition ``sinfo`` does not list."""
    wanted = [(t.name, t.partition) for t in teams if t.partition]
    if not wanted:
        return []
    proc = _run(["sinfo", "-h", "-o", "%R"], env)
    if proc.returncode != 0:
        raise BackendError(f"sinfo -h -o %R failed: {_stderr_line(proc)}")
    present = sorted({p.strip() for p in proc.stdout.splitlines() if p.strip()})
    return [f"partition {part} of team {team} does not exist (sinfo lists: {', '.join(present) or 'none'})"
            for team, part in wanted if part not in present]


def unix_users(teams: Sequence[SlurmTeam]) -> tuple[dict[str, list[str]], list[str]]:
    """Per team, the users to associate: its ``users`` present here plus the user running expctl; and one
    note per name skipped."""
    me = pwd.getpwuid(os.getuid()).pw_name
    users: dict[str, list[str]] = {}
    notes: list[str] = []
    for team in teams:
        present = []
        for name in dict.fromkeys((*team.users, me)):
            try:
                pwd.getpwnam(name)
            except KeyError:
                notes.append(f"user {name} of team {team.name} is not a Unix user here: no association")
                continue
            present.append(name)
        users[team.name] = present
    return users, notes


def _plan(teams: Sequence[SlurmTeam], prune: bool,
          env: Mapping[str, str] | None) -> tuple[SlurmTeamsReport, AccountingPlan | None]:
    problems = tuple(missing_partitions(teams, env))
    live = read_live(env)
    if live is None:
        return SlurmTeamsReport(False, (), (), (NO_ACCOUNTING_NOTE,), problems), None
    users, user_notes = unix_users([t for t in teams if t.account])
    plan = plan_accounting(teams, live, users, prune=prune)
    return SlurmTeamsReport(True, plan.changes, plan.kept, (*plan.notes, *user_notes), problems), plan


def plan_slurm_teams(teams: Sequence[SlurmTeam], *, prune: bool = False,
                     env: Mapping[str, str] | None = None) -> SlurmTeamsReport:
    """What ``apply_slurm_teams`` would do; changes nothing."""
    return _plan(teams, prune, env)[0]


def apply_slurm_teams(teams: Sequence[SlurmTeam], *, prune: bool = False,
                      env: Mapping[str, str] | None = None) -> SlurmTeamsReport:
    """Make Slurm's accounting hold ``teams``; the report's ``changes`` are those made. Nothing is changed when
    a declared partition is missing; a failing ``sacctmgr`` stops at that command (``BackendError``)."""
    report, plan = _plan(teams, prune, env)
    if report.problems:
        raise BackendError(f"slurm: {report.problems[0]}"
                           + (f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""))
    if plan is None:
        return report
    for done, change in enumerate(plan.changes):
        argv = ["sacctmgr", "-i", *change.argv]
        proc = _run(argv, env)
        if proc.returncode != 0:
            raise BackendError(f"sacctmgr failed to {change}: {_stderr_line(proc)} ({done} of "
                               f"{len(plan.changes)} changes made before it; rerun to finish)")
    return report
