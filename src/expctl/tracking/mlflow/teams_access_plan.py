"""Pure: what MLflow's basic-auth app and workspaces must hold so that each team's runs and models are its own.

``plan_access(teams, live, stored, rotate, prune)`` pairs the desired teams (``MlflowTeam``) with what the
server listed (``LiveAccess``: workspaces, roles with their permissions, users with their roles) and returns the
changes in the order they must be made (workspace → role → permissions → users → assignments). No I/O here:
``teams_access`` reads the server and makes the changes.

Per team: a workspace (``MlflowTeam.workspace``); in it a role ``expctl-team-<team>`` granting ``USE`` on the
workspace and ``EDIT`` on every experiment and registered model (``ROLE_PERMISSIONS``); the team's users and its
job identity ``expctl-job-<team>`` as MLflow users, each assigned the role. What expctl owns is marked in MLflow
itself: a workspace or role it creates has the description ``expctl team <team>``; a job identity has the
``expctl-job-`` prefix. Only those are modified or deleted. A user who leaves the team loses the role at once (the
role is expctl's); deleting a team's workspace, role and job identity waits for ``prune`` (until then they are
``kept``). A member's MLflow user is never deleted (it may be used elsewhere): it only loses the role.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

ROLE_PREFIX = "expctl-team-"
JOB_PREFIX = "expctl-job-"
ROLE_PERMISSIONS: tuple[tuple[str, str, str], ...] = (
    ("workspace", "*", "USE"),
    ("experiment", "*", "EDIT"),
    ("registered_model", "*", "EDIT"),
)


def description_of(team: str) -> str:
    """The description expctl gives a team's workspace and role (how it knows them as its own)."""
    return f"expctl team {team}"


def _team_of(description: str) -> str | None:
    return description.removeprefix("expctl team ") if description.startswith("expctl team ") else None


def job_user(team: str) -> str:
    """The MLflow user a team's jobs log as."""
    return f"{JOB_PREFIX}{team}"


def role_name(team: str) -> str:
    return f"{ROLE_PREFIX}{team}"


@dataclass(frozen=True)
class MlflowTeam:
    """One team's MLflow side: its workspace and its members' MLflow user names (the job identity is added)."""

    name: str
    workspace: str
    users: tuple[str, ...] = ()

    @property
    def job_user(self) -> str:
        return job_user(self.name)


@dataclass(frozen=True)
class LiveRole:
    id: int
    name: str
    workspace: str
    description: str
    permissions: tuple[tuple[str, str, str, int], ...] = ()  # (resource type, pattern, permission, id)


@dataclass(frozen=True)
class LiveAccess:
    """What the server holds: workspace descriptions by name, roles, and each user's role ids."""

    workspaces: Mapping[str, str] = field(default_factory=dict)
    roles: tuple[LiveRole, ...] = ()
    users: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def role(self, workspace: str, name: str) -> LiveRole | None:
        return next((r for r in self.roles if r.workspace == workspace and r.name == name), None)


@dataclass(frozen=True)
class Change:
    """One change: ``action`` (create, delete, grant, revoke, assign, unassign, rotate), ``kind`` (workspace,
    role, permission, user, job-user), ``name``, the ``team`` it serves and a reason; ``args`` for the request."""

    action: str
    kind: str
    name: str
    team: str
    reason: str
    args: Mapping[str, str | int] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.action} {self.kind} {self.name}: {self.reason}"


@dataclass(frozen=True)
class AccessPlan:
    changes: tuple[Change, ...]
    kept: tuple[Change, ...]
    notes: tuple[str, ...]
    problems: tuple[str, ...]


def plan_access(teams: Sequence[MlflowTeam], live: LiveAccess, stored: frozenset[str], *, rotate: bool = False,
                prune: bool = False) -> AccessPlan:
    """The changes making ``live`` hold ``teams``. ``stored``: the job identities whose password the platform's
    secret store holds; ``rotate``: give every job identity a new password."""
    changes: list[Change] = []
    notes: list[str] = []
    problems: list[str] = []
    for team in teams:
        _plan_team(team, live, stored, rotate, changes, notes, problems)
    kept = _orphans(teams, live)
    if prune:
        changes += kept
        kept = []
    return AccessPlan(tuple(changes), tuple(kept), tuple(notes), tuple(problems))


def _plan_team(team: MlflowTeam, live: LiveAccess, stored: frozenset[str], rotate: bool, changes: list[Change],
               notes: list[str], problems: list[str]) -> None:
    ws, name, desc = team.workspace, role_name(team.name), description_of(team.name)
    if ws not in live.workspaces:
        changes.append(Change("create", "workspace", ws, team.name, f"team {team.name}'s runs and models",
                              {"description": desc}))
    elif live.workspaces[ws] != desc:
        notes.append(f"workspace {ws} exists and is not expctl's (description {live.workspaces[ws]!r}): "
                     f"team {team.name} uses it as it is")
    role = live.role(ws, name)
    if role is None:
        changes.append(Change("create", "role", name, team.name, f"in workspace {ws}",
                              {"workspace": ws, "description": desc}))
    elif role.description != desc:
        problems.append(f"role {name} in workspace {ws} is not expctl's (description {role.description!r}): "
                        "rename it or the team")
        return
    have = {(t, p, perm): pid for t, p, perm, pid in (role.permissions if role else ())}
    for rtype, pattern, perm in ROLE_PERMISSIONS:
        if (rtype, pattern, perm) not in have:
            changes.append(Change("grant", "permission", f"{rtype}:{pattern} {perm}", team.name, f"role {name}",
                                  {"workspace": ws, "role": name, "resource_type": rtype,
                                   "resource_pattern": pattern, "permission": perm}))
    for (rtype, pattern, perm), pid in have.items():
        if (rtype, pattern, perm) not in ROLE_PERMISSIONS:
            changes.append(Change("revoke", "permission", f"{rtype}:{pattern} {perm}", team.name,
                                  f"role {name} grants only {_granted()}", {"role_permission_id": pid}))
    job = team.job_user
    if job not in live.users:
        changes.append(Change("create", "job-user", job, team.name, "the identity team "
                              f"{team.name}'s jobs log as (password: the platform's secret store)"))
    elif rotate:
        changes.append(Change("rotate", "job-user", job, team.name, "a new password (--rotate)"))
    elif job not in stored:
        problems.append(f"job identity {job} exists but the platform's secret store has no password for it: "
                        "rerun with --rotate to give it a new one")
    for user in team.users:
        if user not in live.users:
            changes.append(Change("create", "user", user, team.name, f"member of team {team.name} (no password: "
                                  "an admin sets it, docs/teams.md)"))
    for user in dict.fromkeys((*team.users, job)):
        if role is None or role.id not in live.users.get(user, ()):
            changes.append(Change("assign", "role", f"{name} to {user}", team.name, f"member of team {team.name}",
                                  {"workspace": ws, "role": name, "username": user}))
    if role is not None:
        wanted = set(team.users) | {job}
        for user, ids in sorted(live.users.items()):
            if role.id in ids and user not in wanted:
                changes.append(Change("unassign", "role", f"{name} from {user}", team.name,
                                      f"not a member of team {team.name}",
                                      {"role_id": role.id, "username": user}))


def _granted() -> str:
    return ", ".join(f"{t}:{p} {perm}" for t, p, perm in ROLE_PERMISSIONS)


def _orphans(teams: Sequence[MlflowTeam], live: LiveAccess) -> list[Change]:
    """expctl's own objects no declared team uses: its roles, job identities and workspaces (in that order)."""
    names = {t.name for t in teams}
    used = {t.workspace for t in teams}
    out: list[Change] = []
    for role in live.roles:
        team = _team_of(role.description)
        if team is not None and role.name == role_name(team) and team not in names:
            out.append(Change("delete", "role", role.name, team, f"no team {team} is declared",
                              {"role_id": role.id, "workspace": role.workspace}))
    for user in sorted(live.users):
        team = user.removeprefix(JOB_PREFIX)
        if user.startswith(JOB_PREFIX) and team not in names:
            out.append(Change("delete", "job-user", user, team, f"no team {team} is declared"))
    for ws, desc in sorted(live.workspaces.items()):
        team = _team_of(desc)
        if team is not None and ws not in used:
            out.append(Change("delete", "workspace", ws, team, "no team uses it (its runs stay there until it "
                              "is empty; MLflow deletes only an empty workspace)"))
    return out
