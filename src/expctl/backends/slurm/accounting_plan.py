"""Pure: what ``sacctmgr`` must do so that Slurm's accounting holds each team's account, QOS and associations.

``plan_accounting(teams, live, users, prune)`` pairs the desired teams (``SlurmTeam``) with what
``sacctmgr -P -n show qos/account/assoc`` listed (``LiveAccounting``, parsed by ``parse_live``) and returns the
changes, each with the ``sacctmgr -i`` command that makes it. No I/O here: ``slurm.accounting`` runs the
commands.

What expctl owns is marked in Slurm itself: an account it creates has ``Organization=expctl`` and the
description ``expctl team NAME``; a QOS it creates has that description. Only those are modified or deleted
(deletes only with ``prune``); an account or QOS of the same name made by someone else is left alone, with a
note. Per team with an account: the account (parent root) with its QOS as the only allowed and default QOS, and
one user association per user (the caller passes the Unix users present). Per team with a QOS: its GPU limits,
``GrpTRES=gres/gpu=N`` (the team's ``gpus``: GPUs in use at once) and ``MaxTRESPerJob=gres/gpu=M`` (its
``max_gpus_per_run``); no limit is ``-1``, Slurm's "unset". Account and QOS names are lower case (Slurm
lowers them: ``Vision`` is ``vision``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

MARK_ORG = "expctl"
GPU_TRES = "gres/gpu"


def description_of(team: str) -> str:
    """The description expctl gives the account and QOS of ``team`` (how it knows them as its own)."""
    return f"expctl team {team}"


def _ours(description: str) -> bool:
    return description.startswith("expctl team ")


@dataclass(frozen=True)
class SlurmTeam:
    """One team's Slurm side. ``account``/``qos``/``partition`` may be None (not declared: nothing to make);
    ``gpus`` is the team's GPU quota (GPUs in use at once), ``max_gpus_per_run`` the most one job may ask for
    (None: no limit); ``users`` the Unix user names to associate with the account."""

    name: str
    account: str | None = None
    partition: str | None = None
    qos: str | None = None
    gpus: int | None = None
    max_gpus_per_run: int | None = None
    users: tuple[str, ...] = ()


@dataclass(frozen=True)
class LiveQos:
    description: str
    grp_tres: Mapping[str, str]
    max_tres_per_job: Mapping[str, str]


@dataclass(frozen=True)
class LiveAccount:
    description: str
    organization: str
    qos: tuple[str, ...] = ()  # the account association's allowed QOS
    default_qos: str = ""
    users: tuple[str, ...] = ()  # users associated with the account

    @property
    def ours(self) -> bool:
        return self.organization == MARK_ORG and _ours(self.description)


@dataclass(frozen=True)
class LiveAccounting:
    """What Slurm's accounting holds: QOS and accounts by name."""

    qos: Mapping[str, LiveQos] = field(default_factory=dict)
    accounts: Mapping[str, LiveAccount] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """One ``sacctmgr -i`` command: ``action`` create/modify/delete of ``kind`` qos/account/association."""

    action: str
    kind: str
    name: str
    team: str | None
    detail: str
    argv: tuple[str, ...]

    def __str__(self) -> str:
        team = f" (team {self.team})" if self.team else ""
        return f"{self.action} {self.kind} {self.name}{team}" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class AccountingPlan:
    """The changes in the order they must run, the deletes held back without ``prune``, and notes."""

    changes: tuple[Change, ...]
    kept: tuple[Change, ...]
    notes: tuple[str, ...]


def parse_tres(text: str) -> dict[str, str]:
    """``cpu=4,gres/gpu=2`` as a mapping."""
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _rows(text: str, width: int) -> list[list[str]]:
    rows = [line.split("|") for line in text.splitlines() if line.strip()]
    return [(r + [""] * width)[:width] for r in rows]


def parse_live(qos_text: str, account_text: str, assoc_text: str) -> LiveAccounting:
    """``LiveAccounting`` from ``sacctmgr -P -n show`` of ``qos format=name,description,grptres,maxtresperjob``,
    ``account format=account,description,organization`` and ``assoc format=account,user,qos,defaultqos``."""
    qos = {r[0]: LiveQos(r[1], parse_tres(r[2]), parse_tres(r[3])) for r in _rows(qos_text, 4)}
    users: dict[str, list[str]] = {}
    assoc_qos: dict[str, tuple[tuple[str, ...], str]] = {}
    for account, user, qos_list, default in _rows(assoc_text, 4):
        if user:
            users.setdefault(account, []).append(user)
        else:
            assoc_qos[account] = (tuple(q for q in qos_list.split(",") if q), default)
    accounts = {}
    for name, description, organization in _rows(account_text, 3):
        allowed, default_qos = assoc_qos.get(name, ((), ""))
        accounts[name] = LiveAccount(description, organization, allowed, default_qos,
                                     tuple(sorted(set(users.get(name, [])))))
    return LiveAccounting(qos, accounts)


def _limit(value: int | None) -> str:
    return f"{GPU_TRES}={value if value is not None else -1}"


def _live_limit(tres: Mapping[str, str]) -> str:
    return f"{GPU_TRES}={tres.get(GPU_TRES, '-1')}"


def _plan_qos(team: SlurmTeam, qos: str, live: LiveAccounting, notes: list[str]) -> list[Change]:
    want = {"GrpTRES": _limit(team.gpus), "MaxTRESPerJob": _limit(team.max_gpus_per_run)}
    current = live.qos.get(qos)
    if current is None:
        settings = [f"{k}={v}" for k, v in want.items() if not v.endswith("=-1")]
        return [Change("create", "qos", qos, team.name, ", ".join(settings),
                       ("add", "qos", qos, f"Description={description_of(team.name)}", *settings))]
    if not _ours(current.description):
        notes.append(f"qos {qos} (team {team.name}) exists and is not expctl's "
                     f"(description {current.description!r}): left as it is")
        return []
    have = {"GrpTRES": _live_limit(current.grp_tres), "MaxTRESPerJob": _live_limit(current.max_tres_per_job)}
    differ = [k for k in want if want[k] != have[k]]
    if current.description != description_of(team.name):
        differ.append("Description")
        want["Description"] = description_of(team.name)
        have["Description"] = current.description
    if not differ:
        return []
    detail = ", ".join(f"{k} {have[k]} -> {want[k]}" for k in differ)
    return [Change("modify", "qos", qos, team.name, detail,
                   ("modify", "qos", "where", f"name={qos}", "set", *(f"{k}={want[k]}" for k in differ)))]


def _plan_account(team: SlurmTeam, account: str, live: LiveAccounting, users: Sequence[str],
                  notes: list[str]) -> tuple[list[Change], list[Change]]:
    """The changes for ``account`` and its user associations, and the associations to delete with prune."""
    current = live.accounts.get(account)
    qos_settings = [f"QOS={team.qos}", f"DefaultQOS={team.qos}"] if team.qos else []
    if current is None:
        changes = [Change("create", "account", account, team.name, ", ".join(qos_settings),
                          ("add", "account", account, f"Description={description_of(team.name)}",
                           f"Organization={MARK_ORG}", *qos_settings))]
        return changes + [_add_user(team, account, u) for u in users], []
    if not current.ours:
        notes.append(f"account {account} (team {team.name}) exists and is not expctl's "
                     f"(organization {current.organization!r}): left as it is")
        return [], []
    changes = []
    settings = []
    if current.description != description_of(team.name):
        settings.append(f"Description={description_of(team.name)}")
    if team.qos and (current.qos != (team.qos,) or current.default_qos != team.qos):
        settings += qos_settings
    if settings:
        detail = ", ".join(settings)
        changes.append(Change("modify", "account", account, team.name, detail,
                              ("modify", "account", "where", f"name={account}", "set", *settings)))
    changes += [_add_user(team, account, u) for u in users if u not in current.users]
    gone = [Change("delete", "association", f"{account}/{u}", team.name, f"user {u} is no longer a member",
                   ("delete", "user", "where", f"name={u}", f"account={account}"))
            for u in current.users if u not in users]
    return changes, gone


def _add_user(team: SlurmTeam, account: str, user: str) -> Change:
    return Change("create", "association", f"{account}/{user}", team.name, f"user {user}",
                  ("add", "user", user, f"account={account}"))


def plan_accounting(teams: Sequence[SlurmTeam], live: LiveAccounting, users: Mapping[str, Sequence[str]],
                    *, prune: bool = False) -> AccountingPlan:
    """The changes that make ``live`` hold ``teams``: QOS first (accounts name them), then accounts and their
    user associations, then deletes of expctl's own objects no team declares any more (accounts before the
    QOS they use). ``users[team]`` are the users to associate (present on this machine: the caller checks).
    Without ``prune`` deletes are returned as ``kept``. Names are compared in lower case: Slurm stores them so."""
    teams = [replace(t, account=t.account and t.account.lower(), qos=t.qos and t.qos.lower()) for t in teams]
    notes: list[str] = []
    qos_changes: list[Change] = []
    account_changes: list[Change] = []
    deletes: list[Change] = []
    for team in teams:
        if team.qos:
            qos_changes += _plan_qos(team, team.qos, live, notes)
        if team.account:
            changes, gone = _plan_account(team, team.account, live, users.get(team.name, ()), notes)
            account_changes += changes
            deletes += gone
    accounts = {t.account for t in teams if t.account}
    qos_names = {t.qos for t in teams if t.qos}
    deletes += [Change("delete", "account", name, None, "no team declares it", ("delete", "account", name))
                for name, acc in sorted(live.accounts.items()) if acc.ours and name not in accounts]
    deletes += [Change("delete", "qos", name, None, "no team declares it", ("delete", "qos", name))
                for name, q in sorted(live.qos.items()) if _ours(q.description) and name not in qos_names]
    changes = qos_changes + account_changes + (deletes if prune else [])
    return AccountingPlan(tuple(changes), () if prune else tuple(deletes), tuple(notes))
