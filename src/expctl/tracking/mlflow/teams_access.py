"""Teams in MLflow: each team's workspace, its role, its members and its job identity, reconciled through the
REST API of ``mlflow server --app-name basic-auth --enable-workspaces`` as the platform's admin (plain JSON, no
MLflow import). What to change is decided in ``teams_access_plan`` (pure); here the server is read and changed.

The interface for ``expctl teams plan/apply`` is two functions on plain data (``MlflowTeam``):

- ``plan_mlflow_teams(teams, tracking_uri, store, prune=False, rotate=False, env=None) -> MlflowTeamsReport``:
  reads the server (and checks each stored job password) and changes nothing;
- ``apply_mlflow_teams(...)``: the same plan, then its changes one by one. A change the server refuses (a 403,
  a 4xx) is one line in ``failed`` and the rest go on: the caller exits 3 when ``failed`` is not empty. A second
  apply plans nothing.

The admin is ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` of ``env`` (by default this process's):
the platform's CI identity, never a job's. Raised as one ``TrackingError`` line, before any change: no admin
credentials, credentials refused or not an admin's, a server without authentication or without workspaces, a
problem of the plan (a job identity whose stored password the server refuses, a role of expctl's name that is not
expctl's). Job identities' passwords live in ``job_secrets.JobSecretStore``, written before the server is told.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from expctl.core.errors import TrackingError, truncate
from expctl.tracking.mlflow.job_secrets import JobSecretStore, new_password
from expctl.tracking.mlflow.teams_access_plan import (
    AccessPlan,
    Change,
    LiveAccess,
    LiveRole,
    MlflowTeam,
    plan_access,
)

__all__ = ["MlflowTeam", "MlflowTeamsReport", "apply_mlflow_teams", "plan_mlflow_teams"]

_TIMEOUT = 30.0


class RequestRefused(Exception):
    """The server answered one request with an HTTP error (its status and message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class MlflowTeamsReport:
    """What the reconcile found and did: ``changes`` (planned, or made by apply), ``kept`` (deletes held back
    without prune), ``failed`` (the changes the server refused, one line each), ``notes``."""

    changes: tuple[Change, ...]
    kept: tuple[Change, ...]
    failed: tuple[str, ...]
    notes: tuple[str, ...]

    def lines(self) -> list[str]:
        """The report as lines a person reads (what ``expctl teams plan`` prints for MLflow)."""
        out = [f"mlflow: {c}" for c in self.changes]
        out += [f"mlflow: kept {c.kind} {c.name} ({c.reason}; --prune deletes it)" for c in self.kept]
        out += [f"mlflow: failed: {f}" for f in self.failed]
        return out + [f"mlflow: {n}" for n in self.notes]


class _Api:
    """One user's requests to the server: basic auth, JSON in and out, one line per failure."""

    def __init__(self, uri: str, user: str, password: str) -> None:
        self.uri = uri.rstrip("/")
        self.user = user
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self.uri}/api/{path}"
        data = None
        if body is not None and method == "GET":
            url += "?" + urllib.parse.urlencode(body)
        elif body is not None:
            data = json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Authorization": self._auth})
        try:
            with urllib.request.urlopen(req, timeout=_TIMEOUT) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise RequestRefused(exc.code, _message(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(f"MLflow server {self.uri} unreachable: {truncate(str(reason))}") from None
        try:
            value = json.loads(raw or b"{}")
        except ValueError:
            raise TrackingError(f"MLflow server {self.uri}: {path} answered no JSON") from None
        return value if isinstance(value, dict) else {}


def _message(exc: urllib.error.HTTPError) -> str:
    raw = exc.read().decode(errors="replace")
    try:
        value = json.loads(raw)
        text = str(value.get("message", raw)) if isinstance(value, dict) else raw
    except ValueError:
        text = raw if not raw.lstrip().startswith("<") else exc.reason
    return f"{exc.code} {truncate(' '.join(str(text).split()), 200)}"


def _admin(tracking_uri: str, env: Mapping[str, str] | None) -> _Api:
    env = os.environ if env is None else env
    user, password = env.get("MLFLOW_TRACKING_USERNAME"), env.get("MLFLOW_TRACKING_PASSWORD")
    if not user or not password:
        raise TrackingError("teams in MLflow need the platform's MLflow admin: set MLFLOW_TRACKING_USERNAME and "
                            "MLFLOW_TRACKING_PASSWORD (docs/teams.md#mlflow)")
    if not tracking_uri.startswith(("http://", "https://")):
        raise TrackingError(f"teams in MLflow need a tracking server (http or https), not {tracking_uri!r}")
    return _Api(tracking_uri, user, password)


def _preflight(api: _Api) -> None:
    """The server has authentication and workspaces, and the credentials are an admin's."""
    try:
        me = api.call("GET", "2.0/mlflow/users/current")
    except RequestRefused as exc:
        if exc.status == 404:
            raise TrackingError(f"MLflow server {api.uri} has no authentication: teams need its permissions "
                                "(start it with --app-name basic-auth, docs/teams.md#mlflow)") from None
        if exc.status == 401:
            raise TrackingError(f"MLflow server {api.uri} refused the admin credentials of "
                                f"MLFLOW_TRACKING_USERNAME {api.user!r}") from None
        raise TrackingError(f"MLflow server {api.uri}: users/current answered {exc.message}") from None
    if not (me.get("user") or {}).get("is_admin"):
        raise TrackingError(f"MLflow user {api.user!r} (MLFLOW_TRACKING_USERNAME) is not an admin: teams apply "
                            "needs the platform's admin identity")
    try:
        api.call("GET", "3.0/mlflow/workspaces")
    except RequestRefused as exc:
        if exc.status in (404, 503):
            raise TrackingError(f"MLflow server {api.uri} has no workspaces: each team's runs need one (start it "
                                "with --enable-workspaces, docs/teams.md#mlflow)") from None
        raise TrackingError(f"MLflow server {api.uri}: workspaces answered {exc.message}") from None


def read_live(api: _Api) -> LiveAccess:
    """The workspaces, roles (with permissions) and users (with their role ids) the server holds."""
    try:
        workspaces = api.call("GET", "3.0/mlflow/workspaces").get("workspaces", [])
        roles = api.call("GET", "3.0/mlflow/roles/list").get("roles", [])
        users = api.call("GET", "2.0/mlflow/users/list").get("users", [])
    except RequestRefused as exc:
        raise TrackingError(f"MLflow server {api.uri}: reading workspaces, roles and users: {exc.message}") from None
    return LiveAccess(
        workspaces={w["name"]: w.get("description") or "" for w in workspaces},
        roles=tuple(LiveRole(int(r["id"]), r["name"], r.get("workspace") or "", r.get("description") or "",
                             tuple((p["resource_type"], p["resource_pattern"], p["permission"], int(p["id"]))
                                   for p in r.get("permissions", [])))
                    for r in roles),
        users={u["username"]: tuple(int(r["id"]) for r in u.get("roles", [])) for u in users},
    )


def _refused_passwords(api: _Api, teams: Sequence[MlflowTeam], live: LiveAccess, stored: Mapping[str, str],
                       rotate: bool) -> list[str]:
    """One line per job identity whose stored password the server does not take (rotated by hand)."""
    out = []
    for team in teams:
        user = team.job_user
        if rotate or user not in live.users or user not in stored:
            continue
        try:
            _Api(api.uri, user, stored[user]).call("GET", "2.0/mlflow/users/current")
        except RequestRefused as exc:
            if exc.status != 401:
                raise TrackingError(f"MLflow server {api.uri}: checking job identity {user}: {exc.message}") from None
            out.append(f"job identity {user}'s password in the platform's secret store is not the server's "
                       "(rotated by hand?): rerun with --rotate to give it a new one")
    return out


def _plan(teams: Sequence[MlflowTeam], tracking_uri: str, store: JobSecretStore, prune: bool, rotate: bool,
          env: Mapping[str, str] | None) -> tuple[_Api, LiveAccess, AccessPlan]:
    api = _admin(tracking_uri, env)
    _preflight(api)
    live = read_live(api)
    stored = store.read()
    plan = plan_access(teams, live, frozenset(stored), rotate=rotate, prune=prune)
    problems = [*plan.problems, *_refused_passwords(api, teams, live, stored, rotate)]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise TrackingError(f"mlflow: {problems[0]}{more}")
    return api, live, plan


def plan_mlflow_teams(teams: Sequence[MlflowTeam], tracking_uri: str, store: JobSecretStore, *,
                      prune: bool = False, rotate: bool = False,
                      env: Mapping[str, str] | None = None) -> MlflowTeamsReport:
    """What ``apply_mlflow_teams`` would do; changes nothing."""
    plan = _plan(teams, tracking_uri, store, prune, rotate, env)[2]
    return MlflowTeamsReport(plan.changes, plan.kept, (), plan.notes)


def apply_mlflow_teams(teams: Sequence[MlflowTeam], tracking_uri: str, store: JobSecretStore, *,
                       prune: bool = False, rotate: bool = False, env: Mapping[str, str] | None = None,
                       journal: Callable[[Change], Callable[[str | None], None]] | None = None
                       ) -> MlflowTeamsReport:
    """Make the server hold ``teams``; the report's ``changes`` are those made, ``failed`` those refused.

    ``journal``: called before each change is made (the caller audits it), and what it returns after, with
    None when the change was made or the line saying why not."""
    api, live, plan = _plan(teams, tracking_uri, store, prune, rotate, env)
    role_ids = {(r.workspace, r.name): r.id for r in live.roles}
    made: list[Change] = []
    failed: list[str] = []
    for change in plan.changes:
        done = journal(change) if journal is not None else None
        try:
            _make(api, change, role_ids, store)
        except RequestRefused as exc:
            failed.append(f"{change.action} {change.kind} {change.name} (team {change.team}): {exc.message}")
            if done is not None:
                done(failed[-1])
            continue
        made.append(change)
        if done is not None:
            done(None)
    return MlflowTeamsReport(tuple(made), plan.kept, tuple(failed), plan.notes)


def _make(api: _Api, change: Change, role_ids: dict[tuple[str, str], int], store: JobSecretStore) -> None:
    a = change.args
    match (change.action, change.kind):
        case ("create", "workspace"):
            api.call("POST", "3.0/mlflow/workspaces", {"name": change.name, "description": a["description"]})
        case ("delete", "workspace"):
            api.call("DELETE", f"3.0/mlflow/workspaces/{urllib.parse.quote(change.name)}")
        case ("create", "role"):
            role = api.call("POST", "3.0/mlflow/roles/create", {"workspace": a["workspace"], "name": change.name,
                                                                "description": a["description"]})
            role_ids[(str(a["workspace"]), change.name)] = int(role["role"]["id"])
        case ("delete", "role"):
            api.call("DELETE", "3.0/mlflow/roles/delete", {"role_id": a["role_id"]})
        case ("grant", "permission"):
            api.call("POST", "3.0/mlflow/roles/permissions/add", {
                "role_id": _role_id(role_ids, a), "resource_type": a["resource_type"],
                "resource_pattern": a["resource_pattern"], "permission": a["permission"]})
        case ("revoke", "permission"):
            api.call("DELETE", "3.0/mlflow/roles/permissions/remove", {"role_permission_id": a["role_permission_id"]})
        case ("create", "user"):
            # a member: a password nobody knows until an admin sets one (docs/teams.md#mlflow)
            api.call("POST", "2.0/mlflow/users/create", {"username": change.name, "password": new_password()})
        case ("create", "job-user"):
            password = store.get(change.name) or new_password()
            store.put(change.name, password)  # first: a crash after it creates the user with this password
            api.call("POST", "2.0/mlflow/users/create", {"username": change.name, "password": password})
        case ("rotate", "job-user"):
            password = new_password()
            store.put(change.name, password)
            api.call("PATCH", "2.0/mlflow/users/update-password", {"username": change.name, "password": password})
        case ("delete", "job-user"):
            api.call("DELETE", "2.0/mlflow/users/delete", {"username": change.name})
            store.remove(change.name)
        case ("assign", "role"):
            api.call("POST", "3.0/mlflow/roles/assign", {"username": a["username"],
                                                         "role_id": _role_id(role_ids, a)})
        case ("unassign", "role"):
            api.call("DELETE", "3.0/mlflow/roles/unassign", {"username": a["username"], "role_id": a["role_id"]})
        case _:
            raise AssertionError(f"no request makes {change}")


def _role_id(role_ids: Mapping[tuple[str, str], int], args: Mapping[str, str | int]) -> int:
    key = (str(args["workspace"]), str(args["role"]))
    if key not in role_ids:
        raise RequestRefused(0, f"role {key[1]} was not created in workspace {key[0]}")
    return role_ids[key]
