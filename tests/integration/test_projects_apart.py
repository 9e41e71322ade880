"""Two repositories on one tracking server stay apart: each has an experiment of the same name, and neither's plan,
status or history sees the other's runs (``core.project``). The runs of an older expctl (no ``expctl.project``
tag) stay their repository's, and declaring ``project:`` later keeps every run."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.support import e2e
from tests.support.gitrepo import GitRepo, minimal_repo
from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration

QUICK = "expctl:\n  kind: local\n  command: [python, -c, 'pass']\n"


def project(path: Path, experiment: str, lr: str) -> GitRepo:
    sweep = f"hydra:\n  sweeper:\n    params:\n      optimizer.lr: {lr}\n"
    return minimal_repo(path, {f"experiments/{experiment}.yaml": "defaults:\n  - config\n  - _self_\n" + sweep + QUICK,
                               "expctl.yaml": "code_paths: [code]\nlocal:\n  parallelism: 2\n"})


def cli(repo: GitRepo, server: MlflowServer, *args: str) -> Any:
    done = e2e.expctl(repo.path, *args, tracking_uri=server.uri, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if "json" in args else done.stdout


def runs_of(server: MlflowServer, experiment: str, repo: GitRepo) -> dict[str, tuple[str, str]]:
    """``{run id: (status, spec hash)}`` of the runs whose source is ``repo`` (its directory name: no remote)."""
    return {r.info.run_id: (r.info.status, r.data.tags["expctl.spec_hash"])
            for r in e2e.mlflow_runs(server.uri, [experiment])
            if r.data.tags["mlflow.source.name"].startswith(f"{repo.path.name}#")}


def test_two_repositories_with_an_experiment_of_the_same_name_stay_apart(
        tmp_path: Path, mlflow_server: MlflowServer, repos: list[GitRepo]) -> None:
    name = f"shared-{secrets.token_hex(3)}"  # one MLflow experiment of the session's server, for both repositories
    # directories of their own names: a project without a remote is named after its directory, and the
    # session's server holds other tests' repositories too
    tag = secrets.token_hex(3)
    vision = project(tmp_path / f"vision-{tag}", name, "0.1,0.2")
    speech = project(tmp_path / f"speech-{tag}", name, "0.3,0.2")
    repos += [vision, speech]
    assert "Finished: 2 succeeded." in cli(vision, mlflow_server, "apply", "-y", "--wait", "--timeout", "120")
    theirs = runs_of(mlflow_server, name, vision)
    assert len(theirs) == 2
    # a run as an older expctl wrote it: no project tag, its source names the repository
    from mlflow import MlflowClient

    client, legacy = MlflowClient(tracking_uri=mlflow_server.uri), sorted(theirs)[0]
    if "expctl.project" in client.get_run(legacy).data.tags:  # (always, since expctl writes the tag)
        client.delete_tag(legacy, "expctl.project")

    # the second repository's first plan: creates only, though a run key (lr=0.2) is the other's too
    plan = cli(speech, mlflow_server, "plan", "-o", "json")
    assert sorted(c["action"] for c in plan["changes"]) == ["create", "create"]
    assert "Finished: 2 succeeded." in cli(speech, mlflow_server, "apply", "-y", "--wait", "--timeout", "120")
    assert runs_of(mlflow_server, name, vision) == theirs  # untouched
    mine = runs_of(mlflow_server, name, speech)
    assert len(mine) == 2 and not set(mine) & set(theirs)

    for repo, runs in ((vision, theirs), (speech, mine)):
        assert e2e.writes(cli(repo, mlflow_server, "plan", "-o", "json")) == []
        status = cli(repo, mlflow_server, "status", "--all", "-o", "json")
        # (the session's server also holds runs whose source names no repository, every project's by the rule)
        assert {row["mlflow_run"] for row in status if row["experiment"] == name} == set(runs)
        history = cli(repo, mlflow_server, "history", "--experiment", name, "-o", "json")
        assert {entry["commit"] for entry in history} == {repo.head} and len(history) == 2

    # declared later, the project keeps its runs (those tagged with the derived label, and the older one) and history
    applied = vision.head
    vision.write("expctl.yaml", "project: vision\ncode_paths: [code]\nlocal:\n  parallelism: 2\n")
    vision.commit("declare the project")
    assert e2e.writes(cli(vision, mlflow_server, "plan", "-o", "json")) == []
    assert {row["mlflow_run"] for row in cli(vision, mlflow_server, "status", "--all", "-o", "json")
            if row["experiment"] == name} == set(theirs)
    assert runs_of(mlflow_server, name, vision) == theirs
    history = cli(vision, mlflow_server, "history", "--experiment", name, "-o", "json")
    assert {entry["commit"] for entry in history} == {applied} and len(history) == 2
