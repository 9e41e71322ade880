"""The pure planning of the teams' MLflow access (``tracking.mlflow.teams_access_plan``), the job secret store
and what a job gets from it, and the ``mlflow:`` key of a team: golden pairs of live state and changes."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from expctl.config.schema import parse_settings
from expctl.core.errors import ConfigError, ConfigErrors, TrackingError
from expctl.tracking.mlflow.job_secrets import (
    JobSecretStore,
    job_environment,
    job_secret_manifest,
    store_path,
)
from expctl.tracking.mlflow.teams_access_plan import (
    ROLE_PERMISSIONS,
    Change,
    LiveAccess,
    LiveRole,
    MlflowTeam,
    plan_access,
)

VISION = MlflowTeam("vision", "vision", ("alice",))
OUR_ROLE = LiveRole(7, "expctl-team-vision", "vision", "expctl team vision",
                    tuple((t, p, perm, i) for i, (t, p, perm) in enumerate(ROLE_PERMISSIONS)))
CONVERGED = LiveAccess({"default": "Default", "vision": "expctl team vision"}, (OUR_ROLE,),
                       {"admin": (), "alice": (7,), "expctl-job-vision": (7,)})


def lines(changes: tuple[Change, ...]) -> list[str]:
    return [f"{c.action} {c.kind} {c.name}" for c in changes]


def test_an_empty_server_gets_workspace_role_permissions_users_then_assignments() -> None:
    plan = plan_access([VISION], LiveAccess({"default": "Default"}, (), {"admin": ()}), frozenset())
    assert lines(plan.changes) == [
        "create workspace vision", "create role expctl-team-vision",
        "grant permission workspace:* USE", "grant permission experiment:* EDIT",
        "grant permission registered_model:* EDIT",
        "create job-user expctl-job-vision", "create user alice",
        "assign role expctl-team-vision to alice", "assign role expctl-team-vision to expctl-job-vision"]
    assert plan.problems == () and plan.kept == ()


def test_a_converged_server_plans_nothing() -> None:
    plan = plan_access([VISION], CONVERGED, frozenset({"expctl-job-vision"}))
    assert plan == plan_access([VISION], CONVERGED, frozenset({"expctl-job-vision"}))
    assert plan.changes == () and plan.kept == () and plan.notes == () and plan.problems == ()


def test_a_member_who_left_loses_the_role_and_an_extra_permission_is_revoked() -> None:
    extra = ("run", "*", "MANAGE", 9)
    role = LiveRole(7, OUR_ROLE.name, "vision", OUR_ROLE.description, (*OUR_ROLE.permissions, extra))
    live = LiveAccess(CONVERGED.workspaces, (role,), {**CONVERGED.users, "mallory": (7,)})
    plan = plan_access([VISION], live, frozenset({"expctl-job-vision"}))
    assert lines(plan.changes) == ["revoke permission run:* MANAGE", "unassign role expctl-team-vision from mallory"]
    assert plan.changes[0].args == {"role_permission_id": 9}


def test_a_job_identity_without_a_stored_password_is_a_problem_unless_rotated() -> None:
    plan = plan_access([VISION], CONVERGED, frozenset())
    assert plan.problems == ("job identity expctl-job-vision exists but the platform's secret store has no password "
                             "for it: rerun with --rotate to give it a new one",)
    assert lines(plan_access([VISION], CONVERGED, frozenset(), rotate=True).changes) == [
        "rotate job-user expctl-job-vision"]


def test_a_workspace_and_role_not_expctls() -> None:
    live = LiveAccess({"vision": "made by hand"}, (LiveRole(3, "expctl-team-vision", "vision", "mine"),), {})
    plan = plan_access([VISION], live, frozenset())
    assert plan.notes == ("workspace vision exists and is not expctl's (description 'made by hand'): team vision "
                          "uses it as it is",)
    assert plan.problems == ("role expctl-team-vision in workspace vision is not expctl's (description 'mine'): "
                             "rename it or the team",)


def test_a_renamed_team_gets_a_new_workspace_and_keeps_the_old_until_prune() -> None:
    renamed = MlflowTeam("cv", "cv", ("alice",))
    plan = plan_access([renamed], CONVERGED, frozenset({"expctl-job-vision"}))
    assert "create workspace cv" in lines(plan.changes)
    assert lines(plan.kept) == ["delete role expctl-team-vision", "delete job-user expctl-job-vision",
                                "delete workspace vision"]
    assert "its runs stay there" in plan.kept[2].reason
    pruned = plan_access([renamed], CONVERGED, frozenset({"expctl-job-vision"}), prune=True)
    assert lines(pruned.changes)[-3:] == lines(plan.kept) and pruned.kept == ()


def test_prune_never_touches_what_expctl_did_not_make() -> None:
    live = LiveAccess({"default": "Default", "lab": "made by hand"}, (LiveRole(1, "admin", "lab", "Full"),),
                      {"admin": (), "bob": (1,)})
    assert plan_access([], live, frozenset(), prune=True).changes == ()


def test_the_secret_store_is_private_and_a_job_gets_its_own_identity(tmp_path: Path) -> None:
    store = JobSecretStore(store_path(tmp_path, {}))
    assert store.path == tmp_path / ".expctl" / "secrets" / "mlflow-jobs.json"
    with pytest.raises(TrackingError, match=r"expctl-job-vision has no password in .*: run `expctl teams apply`"):
        job_environment("vision", "vision", store)
    store.put("expctl-job-vision", "pw-1")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert job_environment("vision", "vision", store) == {
        "MLFLOW_TRACKING_USERNAME": "expctl-job-vision", "MLFLOW_TRACKING_PASSWORD": "pw-1",
        "MLFLOW_WORKSPACE": "vision"}
    secret = job_secret_manifest("vision", "team-vision", "vision", store)
    assert secret["metadata"] == {"name": "expctl-mlflow-job", "namespace": "team-vision", "labels": {
        "app.kubernetes.io/managed-by": "expctl", "expctl.io/team": "vision"}}
    assert secret["stringData"]["MLFLOW_WORKSPACE"] == "vision"
    store.remove("expctl-job-vision")
    assert store.read() == {}
    assert store_path(None, {"EXPCTL_SECRET_STORE": str(tmp_path / "s.json")}) == tmp_path / "s.json"
    store.path.write_text("[1]")
    with pytest.raises(TrackingError, match="not a map of user to password"):
        store.read()


TEAMS = [{"name": "vision", "paths": ["experiments/vision"], "members": ["@alice", "@org/vision", "c@example.com"]},
         {"name": "nlp", "paths": ["experiments/nlp"], "members": ["@bob"],
          "mlflow": {"workspace": "language", "users": ["bob", "bob", "dan"]}}]


def test_a_teams_mlflow_workspace_and_users() -> None:
    vision, nlp = parse_settings({"teams": TEAMS}).teams
    assert (vision.mlflow_workspace(), vision.mlflow_users()) == ("vision", ["alice", "c@example.com"])
    assert (nlp.mlflow_workspace(), nlp.mlflow_users()) == ("language", ["bob", "dan"])


@pytest.mark.parametrize(("mlflow", "expected"), [
    ({"workspace": "vision"}, "expctl.yaml: teams.1.mlflow.workspace: MLflow workspace 'vision' is team vision's "
     "already: each team has its own"),
    ({"workspace": "Vision Team"}, "expctl.yaml: teams.1.mlflow.workspace: must be a lowercase RFC 1123 label"),
    ({"workspaces": "x"}, "expctl.yaml: teams.1.mlflow.workspaces: unknown key (did you mean 'workspace'?)"),
])
def test_bad_mlflow_keys(mlflow: dict[str, str], expected: str) -> None:
    with pytest.raises((ConfigError, ConfigErrors)) as exc:
        parse_settings({"teams": [TEAMS[0], {**TEAMS[1], "mlflow": mlflow}]})
    assert str(exc.value).startswith(expected)
