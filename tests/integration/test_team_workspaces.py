"""Each team's runs in its own MLflow workspace, end to end on a real ``mlflow server --app-name basic-auth
--enable-workspaces`` (real git, real local jobs, every command its own ``expctl`` process as the platform's CI
identity): ``teams apply`` makes the workspaces, ``apply`` creates each team's runs in its team's workspace, each
job logs into its run as its team's job identity, the gate registers the model in the team's workspace, and
plan, status, describe, history and lineage read every workspace. Checked through MLflow's own REST API: nothing
of a team is in the default workspace or visible to the other team's member. On the server's two stores: sqlite,
and PostgreSQL (Debian's, started here) as deployed.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import jobs
from tests.support.gitrepo import GitRepo
from tests.support.mlflow_auth_server import ADMIN, MlflowAuthServer
from tests.support.postgres import Postgres
from tests.support.teams_project import expctl

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

SETTINGS = """\
code_paths: [code]
teams:
  - name: vision
    paths: [experiments/vision]
    members: ["@alice"]
    mlflow: {}
  - name: nlp
    paths: [experiments/nlp]
    members: ["@bob"]
    mlflow: {workspace: language}
"""
JOB = "score: 0.9\nexpctl:\n  kind: PyTorchJob\n  command: [python, code/job.py]\n"
GATED = JOB + ("  validation: {metric: val_accuracy, threshold: 0.5, mode: max, register_as: vision-clf, "
               "alias: champion}\n")
BOB = ("bob", secrets.token_urlsafe(12))  # nlp's member: its password set by the admin, generated here


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def mlflow_auth_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                       ) -> Iterator[MlflowAuthServer]:
    """The server with workspaces and basic auth, on its sqlite store or on PostgreSQL."""
    with contextlib.ExitStack() as stack:
        uri = stack.enter_context(Postgres()).uri if request.param == "postgresql" else None
        server = MlflowAuthServer(tmp_path_factory.mktemp("mlflow-auth"), uri)
        server.start(timeout=180)
        stack.callback(server.stop)
        yield server


@pytest.fixture(scope="module")
def applied(mlflow_auth_server: MlflowAuthServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[GitRepo, dict[str, str]]]:
    base = tmp_path_factory.mktemp("team-workspaces")
    env = {**mlflow_auth_server.admin_env(), "EXPCTL_SECRET_STORE": str(base / "store" / "mlflow-jobs.json")}
    repo = GitRepo(base / "repo")
    for rel, text in {".gitignore": ".expctl/\n", "expctl.yaml": SETTINGS, "code/job.py": jobs.source("log_as_team"),
                      "experiments/vision/resnet.yaml": GATED, "experiments/nlp/bert.yaml": JOB}.items():
        repo.write(rel, text)
    repo.commit("two teams, each in its MLflow workspace")
    expctl(repo, "teams", "apply", "-y", env=env)
    admin = (ADMIN, mlflow_auth_server.admin_password)
    status, _ = mlflow_auth_server.rest("PATCH", "2.0/mlflow/users/update-password", admin,
                                        {"username": BOB[0], "password": BOB[1]})
    assert status == 200
    expctl(repo, "apply", "-y", "--wait", "--timeout", "120", env=env)
    yield repo, env


def runs_in(server: MlflowAuthServer, workspace: str | None, user: tuple[str, str] | None = None
            ) -> dict[str, dict[str, Any]]:
    """``{experiment name: its runs}`` of expctl's experiments in ``workspace``, as ``user`` (default: admin)."""
    who = user or (ADMIN, server.admin_password)
    status, found = server.rest("POST", "2.0/mlflow/experiments/search", who, {"max_results": 100},
                                workspace=workspace)
    if status != 200:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for exp in found.get("experiments", []):
        status, runs = server.rest("POST", "2.0/mlflow/runs/search", who,
                                   {"experiment_ids": [exp["experiment_id"]], "max_results": 100},
                                   workspace=workspace)
        out[exp["name"]] = runs.get("runs", []) if status == 200 else []
    return out


def test_each_teams_runs_are_in_its_workspace_and_logged_by_its_job(
        applied: tuple[GitRepo, dict[str, str]], mlflow_auth_server: MlflowAuthServer) -> None:
    vision, language = runs_in(mlflow_auth_server, "vision"), runs_in(mlflow_auth_server, "language")
    assert [r["data"]["metrics"][0]["value"] for r in vision["vision/resnet"]] == [0.9]  # the job logged it
    assert [r["data"]["metrics"][0]["value"] for r in language["nlp/bert"]] == [0.9]
    assert "nlp/bert" not in vision and "vision/resnet" not in language
    default = runs_in(mlflow_auth_server, None)
    assert not {"vision/resnet", "nlp/bert"} & set(default), default  # the default workspace: the audit trail only
    assert "vision/resnet" not in runs_in(mlflow_auth_server, "vision", BOB)  # nlp's member sees nothing of vision's


def test_the_gate_registers_in_the_teams_workspace(applied: tuple[GitRepo, dict[str, str]],
                                                  mlflow_auth_server: MlflowAuthServer) -> None:
    admin = (ADMIN, mlflow_auth_server.admin_password)

    def models(workspace: str | None) -> list[str]:
        _, found = mlflow_auth_server.rest("GET", "2.0/mlflow/registered-models/search", admin, {"max_results": 100},
                                           workspace=workspace)
        return [m["name"] for m in found.get("registered_models", [])]

    assert models("vision") == ["vision-clf"]
    assert "vision-clf" not in models(None) and "vision-clf" not in models("language")
    status, _ = mlflow_auth_server.rest("GET", "2.0/mlflow/registered-models/alias", BOB,
                                        {"name": "vision-clf", "alias": "champion"}, workspace="vision")
    assert status in (401, 403, 404)
    repo, env = applied
    lineage = json.loads(expctl(repo, "lineage", "vision-clf@champion", "-o", "json", env=env).stdout)
    assert lineage["run"]["experiment"] == "vision/resnet", lineage


def test_plan_status_describe_and_history_read_every_workspace(applied: tuple[GitRepo, dict[str, str]]) -> None:
    repo, env = applied
    plan = json.loads(expctl(repo, "plan", "-o", "json", env=env).stdout)
    assert {c["action"] for c in plan["changes"]} == {"noop"}, plan  # a rerun finds both runs: nothing new
    rows = json.loads(expctl(repo, "status", "-o", "json", env=env).stdout)
    assert sorted((r["experiment"], r["state"]) for r in rows) == [("nlp/bert", "Succeeded"),
                                                                   ("vision/resnet", "Succeeded")]
    vision = next(r for r in rows if r["experiment"] == "vision/resnet")
    described = expctl(repo, "describe", vision["run"], env=env).stdout
    assert "workspace=vision" in described, described  # its links open the team's workspace
    shown = expctl(repo, "ui", env=env).stdout  # a tracking server: its links, each experiment in its workspace
    links = dict(ln.split() for ln in shown.splitlines() if ln.startswith("  "))
    assert "workspace=vision" in links["vision/resnet"] and "workspace=language" in links["nlp/bert"], shown
    one = expctl(repo, "ui", "--experiment", "nlp/bert", env=env).stdout
    assert all("workspace=language" in ln for ln in one.splitlines() if "http" in ln and "#/" in ln), one
    usage = json.loads(expctl(repo, "teams", "status", "-o", "json", env=env).stdout)
    assert [(u["team"], u["workspace"], u["runs"]) for u in usage] == [("vision", "vision", 1), ("nlp", "language", 1)]
    history = expctl(repo, "history", env=env).stdout
    assert "vision/resnet" in history and "nlp/bert" in history, history
    assert env["MLFLOW_TRACKING_PASSWORD"] not in described + history


def test_a_workspace_not_made_yet_is_one_line(applied: tuple[GitRepo, dict[str, str]], tmp_path: Path) -> None:
    repo, env = applied
    repo.write("expctl.yaml", SETTINGS + "  - name: audio\n    paths: [experiments/audio]\n    mlflow: {}\n")
    repo.write("experiments/audio/wav.yaml", JOB)
    repo.commit("a third team, before teams apply")
    try:
        failed = expctl(repo, "apply", "-y", code=1, env=env)  # read before any write: nothing applied
        lines = [ln for ln in failed.stderr.splitlines() if ln.startswith("error")]
        assert len(lines) == 1 and "has no workspace 'audio'" in lines[0] and "teams apply" in lines[0], failed.stderr
    finally:
        repo.git("revert", "--no-edit", "HEAD")


def test_a_renamed_workspace_leaves_the_runs_where_they_are_and_the_plan_says_so(
        applied: tuple[GitRepo, dict[str, str]], mlflow_auth_server: MlflowAuthServer) -> None:
    repo, env = applied
    repo.write("expctl.yaml", SETTINGS.replace("workspace: language", "workspace: words"))
    repo.commit("nlp's runs go to a new workspace")
    try:
        expctl(repo, "teams", "apply", "-y", env=env)
        plan = expctl(repo, "plan", env=env)
        said = [ln for ln in plan.stderr.splitlines() if "stay in workspace" in ln]
        assert len(said) == 1 and "nlp/bert" in said[0] and "'language'" in said[0] and "'words'" in said[0], \
            plan.stderr
        assert "nlp/bert" in runs_in(mlflow_auth_server, "language")  # the old runs stay
    finally:
        repo.git("revert", "--no-edit", "HEAD")


@pytest.mark.timeout(600)
def test_the_printed_links_open_the_run_in_its_teams_workspace(
        applied: tuple[GitRepo, dict[str, str]], mlflow_auth_server: MlflowAuthServer,
        request: pytest.FixtureRequest) -> None:
    """Debian's chromium, driven by Playwright, follows ``describe``'s links as the admin: the run's page and its
    experiment's training runs open in vision's workspace (in the default one the UI would find no such run)."""
    if "postgresql" in request.node.callspec.id:
        pytest.skip("the browser's view does not depend on the server's store: checked once, on sqlite")
    from playwright.sync_api import expect, sync_playwright

    repo, env = applied
    row = next(r for r in json.loads(expctl(repo, "status", "-o", "json", env=env).stdout)
               if r["experiment"] == "vision/resnet")
    described = json.loads(expctl(repo, "describe", row["run"], "-o", "json", env=env).stdout)
    run_link, experiment_link = described["mlflow_ui_run"], described["mlflow_ui_experiment"]
    assert "workspace=vision" in run_link and "workspace=vision" in experiment_link
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(http_credentials={"username": ADMIN,
                                                            "password": mlflow_auth_server.admin_password})
            page = context.new_page()
            page.set_default_timeout(120_000)
            expect.set_options(timeout=120_000)
            page.goto(run_link, wait_until="domcontentloaded")
            expect(page.get_by_text("expctl.run_key", exact=True)).to_be_visible()  # the run's own page
            expect(page.get_by_text(row["run"]).first).to_be_visible()
            page.goto(experiment_link, wait_until="domcontentloaded")
            expect(page.get_by_text("vision/resnet").first).to_be_visible()
            expect(page.get_by_role("columnheader", name="Run Name").first).to_be_visible()  # training runs
        finally:
            browser.close()


def test_aliases_are_moved_as_the_teams_job_identity(applied: tuple[GitRepo, dict[str, str]],
                                                     mlflow_auth_server: MlflowAuthServer) -> None:
    """The reconciler registers; the alias move goes as the store's job identity: as vision's, it moves; as
    nlp's member (no right in vision's workspace), the same move is refused, though the process is the admin."""
    from expctl.core.errors import TrackingError
    from expctl.tracking.mlflow.job_secrets import JobSecretStore
    from expctl.tracking.mlflow.store import MlflowStore

    _, env = applied
    secrets = JobSecretStore(Path(env["EXPCTL_SECRET_STORE"])).read()
    admin = {k: v for k, v in env.items() if k.startswith("MLFLOW_TRACKING_")}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in admin.items():
            mp.setenv(name, value)
        store = MlflowStore(mlflow_auth_server.uri, "local", workspace="vision")
        store.alias_identity = lambda: BOB
        with pytest.raises(TrackingError, match=r"move alias vision-clf@moved \(as bob\).*403"):
            store.registry_client().set_registered_model_alias("vision-clf", "moved", "1")
        store.alias_identity = lambda: ("expctl-job-vision", secrets["expctl-job-vision"])
        store.registry_client().set_registered_model_alias("vision-clf", "moved", "1")
    status, found = mlflow_auth_server.rest("GET", "2.0/mlflow/registered-models/alias",
                                            (ADMIN, mlflow_auth_server.admin_password),
                                            {"name": "vision-clf", "alias": "moved"}, workspace="vision")
    assert status == 200 and found["model_version"]["version"] == "1", found


def test_the_kube_uploader_stores_outputs_as_the_teams_identity_in_its_workspace(
        applied: tuple[GitRepo, dict[str, str]], mlflow_auth_server: MlflowAuthServer, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    """The uploader a producer's pod runs (no expctl in it) authenticates as the identity and workspace the pod
    was handed: as vision's job identity it stores the files on vision's run; as nlp's member it cannot."""
    if "postgresql" in request.node.callspec.id:
        pytest.skip("the uploader's requests do not depend on the server's store: checked once, on sqlite")
    import subprocess
    import sys

    from expctl.backends.kubernetes.manifests.outputs import UPLOADER
    from expctl.tracking.mlflow.job_secrets import JobSecretStore

    _, env = applied
    run_id = runs_in(mlflow_auth_server, "vision")["vision/resnet"][0]["info"]["run_id"]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"write": {"rows": 2}}))
    password = JobSecretStore(Path(env["EXPCTL_SECRET_STORE"])).read()["expctl-job-vision"]

    def upload(user: tuple[str, str], dataset: str) -> subprocess.CompletedProcess[str]:
        pod = {"PATH": "/usr/bin:/bin", "MLFLOW_TRACKING_URI": mlflow_auth_server.uri, "MLFLOW_RUN_ID": run_id,
               "MLFLOW_TRACKING_USERNAME": user[0], "MLFLOW_TRACKING_PASSWORD": user[1],
               "MLFLOW_WORKSPACE": "vision", "EXPCTL_OUTPUT_DIR": str(tmp_path / dataset),
               "EXPCTL_OUTPUT_DATASET": dataset, "EXPCTL_CONFIG_FILE": str(config)}
        return subprocess.run([sys.executable, str(UPLOADER), sys.executable, str(jobs.path("write_outputs"))],
                              env=pod, capture_output=True, text=True, timeout=60, check=False)

    stored = upload(("expctl-job-vision", password), "vision-raw")
    assert stored.returncode == 0, stored.stdout + stored.stderr
    refused = upload(BOB, "stolen")
    assert refused.returncode != 0 and password not in refused.stdout + refused.stderr

    def listed(dataset: str) -> list[str]:
        admin = (ADMIN, mlflow_auth_server.admin_password)
        _, found = mlflow_auth_server.rest("GET", "2.0/mlflow/artifacts/list", admin,
                                           {"run_id": run_id, "path": f"expctl/outputs/{dataset}"}, workspace="vision")
        return sorted(f["path"] for f in found.get("files", []))

    assert listed("vision-raw") == ["expctl/outputs/vision-raw/readme.txt", "expctl/outputs/vision-raw/rows"]
    assert listed("stolen") == []


def test_a_dataset_one_team_run_produces_is_recorded_and_consumed_in_its_workspace(
        applied: tuple[GitRepo, dict[str, str]], mlflow_auth_server: MlflowAuthServer, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    """``outputs:`` with runs in team workspaces: the apply records the importer's files on its run in vision's
    workspace, and the consumer (vision's too) gets them as its input, logging as vision's job identity."""
    if "postgresql" in request.node.callspec.id:
        pytest.skip("recording a dataset does not depend on the server's store: checked once, on sqlite")
    _, env = applied
    repo = GitRepo(tmp_path / "repo")
    importer = ("write: {rows: 2}\nexpctl:\n  kind: PyTorchJob\n  command: [python, code/write.py]\n"
                "  outputs: {dataset: vision-raw}\n")
    train = JOB + "  inputs:\n    raw: {dataset: vision-raw}\n"
    for rel, text in {".gitignore": ".expctl/\n", "expctl.yaml": "project: vision-data\n" + SETTINGS,
                      "code/job.py": jobs.source("log_as_team"), "code/write.py": jobs.source("write_outputs"),
                      "experiments/vision/import.yaml": importer, "experiments/vision/train.yaml": train}.items():
        repo.write(rel, text)
    repo.commit("vision imports, then trains on what it imported")
    expctl(repo, "apply", "-y", "--wait", "--timeout", "120", env=env)
    vision = runs_in(mlflow_auth_server, "vision")
    (produced,), (consumer,) = vision["vision/import"], vision["vision/train"]
    tags = {t["key"]: t["value"] for t in produced["data"]["tags"]}
    assert tags["expctl.output.dataset"] == "vision-raw" and tags["expctl.output.digest"], tags
    consumed = {t["key"]: t["value"] for t in consumer["data"]["tags"]}
    assert consumed["expctl.input.raw.digest"] == tags["expctl.output.digest"], consumed
    assert consumed["expctl.input.raw.uri"] == f"runs:/{produced['info']['run_id']}/expctl/outputs/vision-raw"
    assert [m["value"] for m in consumer["data"]["metrics"]] == [0.9]  # logged as vision's job identity
    assert not {"vision/import", "vision/train"} & set(runs_in(mlflow_auth_server, None))
