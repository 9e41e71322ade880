"""Teams in MLflow on a real ``mlflow server --app-name basic-auth --enable-workspaces``: the reconcile
(``tracking.mlflow.teams_access``) as the platform's admin, idempotent, pruning only its own; its one-line errors;
and the isolation it buys, proven through MLflow's own REST API (not through expctl): team vision's member and
job identity read and write vision's runs, and every request of theirs for nlp's runs, models and aliases is
refused or answers nothing. No password reaches a report line, an error or the server's log.
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from expctl.core.errors import TrackingError
from expctl.tracking.mlflow.job_secrets import JobSecretStore, job_environment
from expctl.tracking.mlflow.teams_access import (
    MlflowTeam,
    MlflowTeamsReport,
    apply_mlflow_teams,
    plan_mlflow_teams,
)
from tests.support import e2e
from tests.support.mlflow_auth_server import MlflowAuthServer
from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration

TEAMS = [MlflowTeam("vision", "vision", ("alice",)), MlflowTeam("nlp", "language", ("bob",))]
User = tuple[str, str]


def no_password_in(report: MlflowTeamsReport, store: JobSecretStore, server: MlflowAuthServer) -> None:
    text = "\n".join(report.lines()) + repr(report) + server.log_path.read_text()
    for secret in (*store.read().values(), server.admin_password):
        assert secret not in text


def ok(answer: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    assert answer[0] == 200, answer
    return answer[1]


def refused_or_empty(answer: tuple[int, dict[str, Any]]) -> None:
    status, body = answer
    assert status in (401, 403, 404) or not any(body.values()), answer


@pytest.fixture(scope="module")
def reconciled(mlflow_auth_server: MlflowAuthServer, tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[JobSecretStore, MlflowTeamsReport]:
    store = JobSecretStore(tmp_path_factory.mktemp("store") / ".expctl" / "secrets" / "mlflow-jobs.json")
    report = apply_mlflow_teams(TEAMS, mlflow_auth_server.uri, store, env=mlflow_auth_server.admin_env())
    return store, report


@pytest.fixture(scope="module")
def users(mlflow_auth_server: MlflowAuthServer, reconciled: tuple[JobSecretStore, MlflowTeamsReport]
          ) -> dict[str, User]:
    """Each identity's credentials: the members' first passwords set by the admin (as docs/teams.md says), the
    job identities' from the platform's store."""
    store = reconciled[0]
    admin = ("admin", mlflow_auth_server.admin_password)
    out = {}
    for name in ("alice", "bob"):
        password = f"pw-{name}-{time.monotonic_ns()}"
        ok(mlflow_auth_server.rest("PATCH", "2.0/mlflow/users/update-password", admin,
                                   {"username": name, "password": password}))
        out[name] = (name, password)
    for team in ("vision", "nlp"):
        env = job_environment(team, "x", store)
        out[f"job-{team}"] = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
    return out


def test_apply_makes_each_teams_workspace_role_and_identities_then_plans_nothing(
        mlflow_auth_server: MlflowAuthServer, reconciled: tuple[JobSecretStore, MlflowTeamsReport]) -> None:
    store, report = reconciled
    assert report.failed == ()
    assert [line for line in report.lines() if "vision" in line] == [
        "mlflow: create workspace vision: team vision's runs and models",
        "mlflow: create role expctl-team-vision: in workspace vision",
        "mlflow: grant permission workspace:* USE: role expctl-team-vision",
        "mlflow: grant permission experiment:* EDIT: role expctl-team-vision",
        "mlflow: grant permission registered_model:* EDIT: role expctl-team-vision",
        "mlflow: create job-user expctl-job-vision: the identity team vision's jobs log as (password: the "
        "platform's secret store)",
        "mlflow: create user alice: member of team vision (no password: an admin sets it, docs/teams.md)",
        "mlflow: assign role expctl-team-vision to alice: member of team vision",
        "mlflow: assign role expctl-team-vision to expctl-job-vision: member of team vision"]
    assert "mlflow: create workspace language: team nlp's runs and models" in report.lines()
    assert sorted(store.read()) == ["expctl-job-nlp", "expctl-job-vision"]
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    again = apply_mlflow_teams(TEAMS, mlflow_auth_server.uri, store, env=mlflow_auth_server.admin_env())
    assert again.lines() == []
    no_password_in(report, store, mlflow_auth_server)


def test_each_team_reads_and_writes_its_own_runs_and_nothing_of_the_other(
        mlflow_auth_server: MlflowAuthServer, users: dict[str, User]) -> None:
    rest = mlflow_auth_server.rest
    made = {}
    for team, ws, member in (("vision", "vision", "alice"), ("nlp", "language", "bob")):
        me, job = users[member], users[f"job-{team}"]
        exp = ok(rest("POST", "2.0/mlflow/experiments/create", me, {"name": f"{team}/resnet"}, ws))["experiment_id"]
        run = ok(rest("POST", "2.0/mlflow/runs/create", job, {"experiment_id": exp}, ws))["run"]["info"]["run_id"]
        ok(rest("POST", "2.0/mlflow/runs/log-metric", job,
                {"run_id": run, "key": "loss", "value": 0.5, "timestamp": 1, "step": 0}, ws))
        ok(rest("POST", "2.0/mlflow/runs/set-tag", me, {"run_id": run, "key": "note", "value": "mine"}, ws))
        model = f"{team}-model"
        ok(rest("POST", "2.0/mlflow/registered-models/create", job, {"name": model}, ws))
        version = ok(rest("POST", "2.0/mlflow/model-versions/create", job,
                          {"name": model, "source": f"runs:/{run}/model", "run_id": run}, ws))["model_version"]
        ok(rest("POST", "2.0/mlflow/registered-models/alias", job,
                {"name": model, "alias": "champion", "version": version["version"]}, ws))
        got = ok(rest("GET", "2.0/mlflow/runs/get", me, {"run_id": run}, ws))["run"]
        assert got["data"]["metrics"][0]["key"] == "loss"
        found = ok(rest("POST", "2.0/mlflow/runs/search", job, {"experiment_ids": [exp]}, ws))
        assert [r["info"]["run_id"] for r in found["runs"]] == [run]
        made[team] = (ws, exp, run, model)
    for theirs, mine in (("vision", "nlp"), ("nlp", "vision")):
        ws, exp, run, model = made[theirs]
        own_ws = made[mine][0]
        for who in (users["alice" if mine == "vision" else "bob"], users[f"job-{mine}"]):
            for workspace in (ws, own_ws):  # their workspace, and a request for their run from one's own
                refused_or_empty(rest("GET", "2.0/mlflow/experiments/search", who, {"max_results": 100}, workspace)
                                 if workspace == ws else (404, {}))
                refused_or_empty(rest("GET", "2.0/mlflow/runs/get", who, {"run_id": run}, workspace))
                refused_or_empty(rest("POST", "2.0/mlflow/runs/search", who, {"experiment_ids": [exp]}, workspace))
                refused_or_empty(rest("GET", "2.0/mlflow/experiments/get", who, {"experiment_id": exp}, workspace))
                refused_or_empty(rest("POST", "2.0/mlflow/runs/set-tag", who,
                                      {"run_id": run, "key": "note", "value": "theirs"}, workspace))
                refused_or_empty(rest("POST", "2.0/mlflow/runs/delete", who, {"run_id": run}, workspace))
                refused_or_empty(rest("POST", "2.0/mlflow/runs/create", who, {"experiment_id": exp}, workspace))
                refused_or_empty(rest("GET", "2.0/mlflow/registered-models/get", who, {"name": model}, workspace))
                refused_or_empty(rest("GET", "2.0/mlflow/registered-models/search", who, {}, workspace)
                                 if workspace == ws else (404, {}))
                refused_or_empty(rest("GET", "2.0/mlflow/registered-models/alias", who,
                                      {"name": model, "alias": "champion"}, workspace))
                refused_or_empty(rest("POST", "2.0/mlflow/registered-models/alias", who,
                                      {"name": model, "alias": "champion", "version": "1"}, workspace))
                refused_or_empty(rest("DELETE", "2.0/mlflow/registered-models/alias", who,
                                      {"name": model, "alias": "champion"}, workspace))
        # what they tried changed nothing: the owner still sees its run, tag and alias as they were
        owner = users["alice" if theirs == "vision" else "bob"]
        run_now = ok(rest("GET", "2.0/mlflow/runs/get", owner, {"run_id": run}, ws))["run"]
        assert run_now["info"]["lifecycle_stage"] == "active"
        assert {"key": "note", "value": "mine"} in run_now["data"]["tags"]
        alias = ok(rest("GET", "2.0/mlflow/registered-models/alias", owner, {"name": model, "alias": "champion"}, ws))
        assert alias["model_version"]["version"] == "1"


def test_rotation_and_a_password_rotated_by_hand(mlflow_auth_server: MlflowAuthServer,
                                                 reconciled: tuple[JobSecretStore, MlflowTeamsReport]) -> None:
    store = reconciled[0]
    env = mlflow_auth_server.admin_env()
    old = store.get("expctl-job-vision")
    report = apply_mlflow_teams(TEAMS[:1], mlflow_auth_server.uri, store, rotate=True, env=env)
    assert report.lines()[0] == "mlflow: rotate job-user expctl-job-vision: a new password (--rotate)"
    new = store.get("expctl-job-vision")
    assert new and new != old
    assert mlflow_auth_server.rest("GET", "2.0/mlflow/users/current", ("expctl-job-vision", new))[0] == 200
    assert mlflow_auth_server.rest("GET", "2.0/mlflow/users/current", ("expctl-job-vision", str(old)))[0] == 401
    admin = ("admin", mlflow_auth_server.admin_password)
    ok(mlflow_auth_server.rest("PATCH", "2.0/mlflow/users/update-password", admin,
                               {"username": "expctl-job-vision", "password": "set-by-hand-123456"}))
    with pytest.raises(TrackingError) as exc:
        plan_mlflow_teams(TEAMS, mlflow_auth_server.uri, store, env=env)
    assert str(exc.value) == ("mlflow: job identity expctl-job-vision's password in the platform's secret store is "
                              "not the server's (rotated by hand?): rerun with --rotate to give it a new one")
    apply_mlflow_teams(TEAMS, mlflow_auth_server.uri, store, rotate=True, env=env)
    assert plan_mlflow_teams(TEAMS, mlflow_auth_server.uri, store, env=env).lines() == []
    no_password_in(report, store, mlflow_auth_server)


def test_a_team_gone_is_kept_then_pruned_and_a_refused_change_lets_the_rest_go_on(
        mlflow_auth_server: MlflowAuthServer, reconciled: tuple[JobSecretStore, MlflowTeamsReport],
        users: dict[str, User]) -> None:
    store = reconciled[0]
    env = mlflow_auth_server.admin_env()
    plan = plan_mlflow_teams(TEAMS[:1], mlflow_auth_server.uri, store, env=env)
    assert plan.lines() == [
        "mlflow: kept role expctl-team-nlp (no team nlp is declared; --prune deletes it)",
        "mlflow: kept job-user expctl-job-nlp (no team nlp is declared; --prune deletes it)",
        "mlflow: kept workspace language (no team uses it (its runs stay there until it is empty; MLflow deletes "
        "only an empty workspace); --prune deletes it)"]
    report = apply_mlflow_teams(TEAMS[:1], mlflow_auth_server.uri, store, prune=True, env=env)
    # the workspace holds nlp's runs: MLflow refuses to delete it, the role and job identity are deleted
    assert [str(c) for c in report.changes] == ["delete role expctl-team-nlp: no team nlp is declared",
                                                 "delete job-user expctl-job-nlp: no team nlp is declared"]
    assert len(report.failed) == 1
    assert report.failed[0].startswith("delete workspace language (team nlp): 500 Cannot delete workspace "
                                       "'language': table '")
    assert "still contains" in report.failed[0]
    assert "expctl-job-nlp" not in store.read()
    admin = ("admin", mlflow_auth_server.admin_password)
    # bob's team role is gone; what he created himself stays his (MLflow's creator-as-owner grant, docs/teams.md)
    admin_view = ok(mlflow_auth_server.rest("GET", "3.0/mlflow/users/roles/list", admin, {"username": "bob"}))
    assert [r["name"] for r in admin_view["roles"] if r["name"].startswith("expctl-")] == []
    # the member's user is not deleted (it may be used elsewhere), the admin's and others' untouched
    names = {u["username"] for u in ok(mlflow_auth_server.rest("GET", "2.0/mlflow/users/list", admin))["users"]}
    assert {"admin", "alice", "bob", "expctl-job-vision"} <= names and "expctl-job-nlp" not in names
    no_password_in(report, store, mlflow_auth_server)


def test_one_line_errors_before_any_change(mlflow_auth_server: MlflowAuthServer, mlflow_server: MlflowServer,
                                           tmp_path: Path) -> None:
    store = JobSecretStore(tmp_path / "s.json")
    cases = [
        (mlflow_auth_server.uri, {}, "teams in MLflow need the platform's MLflow admin: set MLFLOW_TRACKING_USERNAME "
         "and MLFLOW_TRACKING_PASSWORD (docs/teams.md#mlflow)"),
        (mlflow_auth_server.uri, {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "wrong"},
         f"MLflow server {mlflow_auth_server.uri} refused the admin credentials of MLFLOW_TRACKING_USERNAME 'admin'"),
        (mlflow_server.uri, {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "x"},
         f"MLflow server {mlflow_server.uri} has no authentication: teams need its permissions (start it with "
         "--app-name basic-auth, docs/teams.md#mlflow)"),
        ("sqlite:///x.db", {"MLFLOW_TRACKING_USERNAME": "a", "MLFLOW_TRACKING_PASSWORD": "b"},
         "teams in MLflow need a tracking server (http or https), not 'sqlite:///x.db'"),
    ]
    for uri, env, expected in cases:
        with pytest.raises(TrackingError) as exc:
            apply_mlflow_teams(TEAMS, uri, store, env=env)
        assert str(exc.value) == expected
    assert not store.path.exists()


def _speech_project(tmp_path: Path, teams: str) -> Any:
    repo = e2e.make_project(tmp_path / "repo", {"speech/a": e2e.experiment(quick=True)})
    repo.write("expctl.yaml", f"backend: local\ncode_paths: [training]\nteams:\n{teams}")
    repo.commit("teams")
    return repo


SPEECH = "  - name: speech\n    paths: [experiments/speech]\n    members: ['@carol']\n    mlflow: {workspace: voice}\n"
AUDIO = "  - name: audio\n    paths: [experiments/audio]\n    mlflow: {}\n"


def test_expctl_teams_plan_and_apply_reconcile_mlflow(mlflow_auth_server: MlflowAuthServer,
                                                      mlflow_server: MlflowServer, tmp_path: Path) -> None:
    """The CLI route on a local backend: a team declaring ``mlflow:`` makes ``teams plan`` list MLflow's changes
    and ``teams apply -y`` make them, each audited; a second apply is a no-op; a change MLflow refuses fails alone
    (exit 3) while the rest goes on; the one-line errors; no password in any output or audit record."""
    env, uri = mlflow_auth_server.admin_env(), mlflow_auth_server.uri
    repo = _speech_project(tmp_path, SPEECH)
    no_admin = e2e.expctl(repo.path, "teams", "plan", tracking_uri=uri)
    assert no_admin.returncode != 0 and no_admin.stderr.strip().splitlines() == [
        "error: teams in MLflow need the platform's MLflow admin: set MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD (docs/teams.md#mlflow)"], no_admin.stderr
    no_auth = e2e.expctl(repo.path, "teams", "plan", **{**env, "MLFLOW_TRACKING_URI": mlflow_server.uri})
    assert no_auth.returncode != 0 and no_auth.stderr.strip().splitlines() == [
        f"error: MLflow server {mlflow_server.uri} has no authentication: teams need its permissions (start it "
        "with --app-name basic-auth, docs/teams.md#mlflow)"], no_auth.stderr

    planned = e2e.expctl(repo.path, "teams", "plan", **env)
    assert planned.returncode == 0, planned.stderr
    assert "mlflow: create workspace voice: team speech's runs and models" in planned.stdout.splitlines()
    assert planned.stdout.splitlines()[-1] == "MLflow: 9 to change.", planned.stdout
    rows = json.loads(e2e.expctl(repo.path, "teams", "plan", "-o", "json", **env).stdout)
    assert {"action": "create", "kind": "mlflow-role", "name": "expctl-team-speech", "namespace": "voice",
            "team": "speech", "detail": "in workspace voice"} in rows, rows
    applied = e2e.expctl(repo.path, "teams", "apply", "-y", **env)
    assert applied.returncode == 0 and "Applied: 9 of 9 changes." in applied.stdout, applied.stdout + applied.stderr
    again = e2e.expctl(repo.path, "teams", "apply", "-y", **env)
    assert again.returncode == 0 and again.stdout.splitlines()[-1] == "MLflow: no changes.", again.stdout
    history = e2e.expctl(repo.path, "history", "--team", "speech", "-o", "json", **env)
    assert history.returncode == 0, history.stderr
    entries = json.loads(history.stdout)
    assert sorted(e["action"] for e in entries) == ["team-create"] * 4 + ["team-update"] * 5, history.stdout
    assert {"mlflow workspace voice", "mlflow job-user expctl-job-speech"} <= {e["run"] for e in entries}
    store = JobSecretStore(repo.path / ".expctl" / "secrets" / "mlflow-jobs.json")
    assert list(store.read()) == ["expctl-job-speech"]

    # speech's workspace holds an experiment: MLflow refuses to delete it; the role and job identity go
    admin = ("admin", mlflow_auth_server.admin_password)
    ok(mlflow_auth_server.rest("POST", "2.0/mlflow/experiments/create", admin, {"name": "speech/a"}, "voice"))
    repo = _speech_project(tmp_path / "renamed", AUDIO)
    pruned = e2e.expctl(repo.path, "teams", "apply", "-y", "--prune", **env)
    assert pruned.returncode == 3, pruned.stdout + pruned.stderr
    errors = [ln for ln in pruned.stderr.splitlines() if ln.startswith("error:")]
    assert any(e.startswith("error: mlflow: delete workspace voice (team speech): 500 ") for e in errors), errors
    assert "mlflow: delete role expctl-team-speech: no team speech is declared" in pruned.stdout.splitlines()
    users = ok(mlflow_auth_server.rest("GET", "2.0/mlflow/users/list", admin))["users"]
    assert "expctl-job-speech" not in {u["username"] for u in users} and "carol" in {u["username"] for u in users}
    history = e2e.expctl(repo.path, "history", "-o", "json", **env)  # speech is no team of this expctl.yaml
    assert history.returncode == 0, history.stderr
    assert {"mlflow role expctl-team-speech", "mlflow job-user expctl-job-speech"} <= {
        e["run"] for e in json.loads(history.stdout) if e["action"] == "team-delete" and e["team"] == "speech"}
    outputs = "".join(r.stdout + r.stderr for r in (planned, applied, again, pruned, history))
    for secret in (*store.read().values(), mlflow_auth_server.admin_password):
        assert secret not in outputs and secret not in mlflow_auth_server.log_path.read_text()
