"""Secrets never enter a composed config: every place Hydra/OmegaConf can resolve is tried with a secret in the
environment, and the secret's value is then searched for in everything expctl wrote or printed.

Searched: stdout and stderr of validate, plan (human, JSON, Markdown), render, apply, status; every file under
the repository (``.expctl/``: run state, config files, logs, the plan file); the whole working directory of the
real MLflow server (its database holds params, tags and audit entries; its artifact store the config
artifacts). A positive control (the resolver allow-listed) proves the search finds the value when it leaks.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from expctl.cli import main
from tests.support import jobs
from tests.support.gitrepo import minimal_repo

pytestmark = pytest.mark.integration

SECRET = f"expctl-secret-{uuid.uuid4().hex}"
BASE = "defaults:\n  - config\n  - _self_\n"
LOCAL = "expctl:\n  kind: local\n  command: [python, -c, pass]\n"


def sweep(params: str, body: str = "") -> str:
    return BASE + body + LOCAL + "hydra:\n  sweeper:\n    params:\n" + params


ROUTES: dict[str, dict[str, str]] = {
    "experiment body": {"experiments/leak.yaml": BASE + LOCAL + "token: ${oc.env:SECRET}\n"},
    "environment default": {"experiments/leak.yaml": BASE + LOCAL + "token: ${oc.env:NOPE,${oc.env:SECRET}}\n"},
    "conf group": {"experiments/leak.yaml": "defaults:\n  - config\n  - override /model: leak\n  - _self_\n" + LOCAL,
                   "conf/model/leak.yaml": "name: ${oc.env:SECRET}\n"},
    "conf primary config": {"experiments/leak.yaml": BASE + LOCAL,
                            "conf/config.yaml": "seed: 0\noptimizer: {lr: 0.1}\nuser: ${oc.env:SECRET}\n"},
    "defaults list": {"experiments/leak.yaml": "defaults:\n  - config\n  - override /model: ${oc.env:SECRET}\n"
                                               "  - _self_\n" + LOCAL},
    "sweep value": {"experiments/leak.yaml": sweep("      seed: ${oc.env:SECRET}\n")},
    "sweep choice": {"experiments/leak.yaml": sweep("      seed: choice(1,${oc.env:SECRET})\n")},
    "sweep list value": {"experiments/leak.yaml": sweep("      +tags: '[${oc.env:SECRET}]'\n")},
    "sweep added key": {"experiments/leak.yaml": sweep("      +leak: ${oc.env:SECRET}\n")},
    "sweep group option": {"experiments/leak.yaml": sweep("      model: small,${oc.env:SECRET}\n")},
    "sweep params in conf": {"experiments/leak.yaml": BASE + LOCAL,
                             "conf/config.yaml": "seed: 0\noptimizer: {lr: 0.1}\nhydra:\n  sweeper:\n    params:\n"
                                                 "      seed: ${oc.env:SECRET}\n"},
    "job environment": {"experiments/leak.yaml": BASE + "expctl:\n  kind: local\n  command: [python, -c, pass]\n"
                                                        "  env:\n    TOKEN: ${oc.env:SECRET}\n"},
    "job command": {"experiments/leak.yaml": BASE + "expctl:\n  kind: local\n"
                                                    "  command: [python, -c, pass, '${oc.env:SECRET}']\n"},
    "decoded": {"experiments/leak.yaml": BASE + LOCAL + "x: ${oc.decode:${oc.env:SECRET}}\n"},
    "assembled at resolution time": {"experiments/leak.yaml": BASE + LOCAL + "d: $\nz: '{oc.env:SECRET}'\n"
                                                                             "w: ${oc.decode:${d}${z}}\n"},
    "swept value assembled at resolution time": {
        "experiments/leak.yaml": sweep("      +w: ${oc.decode:${d}${z}}\n", body="d: $\nz: '{oc.env:SECRET}'\n")},
    "hydra resolver": {"experiments/leak.yaml": BASE + LOCAL + "cwd: ${hydra:runtime.cwd}\n"},
}


def run(repo: Path, *args: str, tracking: str) -> tuple[int, str]:
    old = os.getcwd()
    os.chdir(repo)
    try:
        result = CliRunner().invoke(main, list(args), env={"MLFLOW_TRACKING_URI": tracking, "EXPCTL_BACKEND": None})
    finally:
        os.chdir(old)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout + result.stderr


def found_in(paths: list[Path], needle: bytes) -> list[str]:
    hits = []
    for root in paths:
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file() and needle in path.read_bytes():
                hits.append(str(path))
    return hits


def everything(repo: Path, server: Any, tmp: Path) -> tuple[int, str]:
    """Every command a user would run, all output concatenated; the exit code of validate."""
    out = []
    code, text = run(repo, "validate", tracking=server.uri)
    out.append(text)
    for args in (("plan",), ("plan", "-o", "json", "--out", str(tmp / "saved.plan")), ("plan", "-o", "markdown"),
                 ("render",), ("apply", "-y", "--wait", "--timeout", "60"), ("status",), ("history",)):
        out.append(run(repo, *args, tracking=server.uri)[1])
    return code, "\n".join(out)


@pytest.mark.parametrize("route", list(ROUTES))
def test_no_secret_reaches_anything_expctl_writes(tmp_path: Path, route: str, mlflow_server: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET", SECRET)
    repo = minimal_repo(tmp_path / "repo", {"experiments/good.yaml": BASE + LOCAL, ".gitignore": ".expctl/\n",
                                             **ROUTES[route]})
    code, output = everything(repo.path, mlflow_server, tmp_path)
    assert code == 1, output
    assert "is not allowed in committed configs" in output
    assert SECRET not in output
    assert found_in([repo.path, tmp_path, mlflow_server.workdir], SECRET.encode()) == []


def test_positive_control_an_allow_listed_resolver_does_resolve(tmp_path: Path, mlflow_server: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The search above can fail: allow-listing oc.env lets the value through, and it is found."""
    monkeypatch.setenv("SECRET", SECRET)
    repo = minimal_repo(tmp_path / "repo", {"experiments/leak.yaml": sweep("      +leak: ${oc.env:SECRET}\n"),
                                             ".gitignore": ".expctl/\n",
                                             "expctl.yaml": "code_paths: [code]\nallow_resolvers: [oc.env]\n"})
    code, output = everything(repo.path, mlflow_server, tmp_path)
    assert code == 0, output
    assert SECRET in output
    assert found_in([repo.path / ".expctl"], SECRET.encode())
    assert found_in([mlflow_server.workdir], SECRET.encode())


PASSWORD = f"pw-{uuid.uuid4().hex}"
CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "PGPASSWORD")
# the job succeeds only when it was handed the password (in its environment) and a URI without it
CHECKS_ITS_CREDENTIALS = BASE + f"expctl:\n  kind: PyTorchJob\n  command: [python, {jobs.path('check_credentials')}]\n"


def test_a_password_in_the_tracking_uri_reaches_the_job_and_nothing_expctl_writes(
        tmp_path: Path, mlflow_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``tracking_uri: http://ci:<password>@host``: local jobs get the password through their environment only;
    it is in no file under ``.expctl/``, no MLflow tag or param (the server's database), no output, no
    Kubernetes manifest and no Slurm batch script (``expctl render``)."""
    for name in CREDENTIALS:  # whatever expctl hands its jobs through its environment is undone after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    uri = mlflow_server.uri.replace("http://", f"http://ci:{PASSWORD}@")
    settings = f"code_paths: [code]\ntracking_uri: {uri}\nslurm: {{workdir: {tmp_path / 'slurm'}}}\n"
    repo = minimal_repo(tmp_path / "repo", {"experiments/creds.yaml": CHECKS_ITS_CREDENTIALS,
                                             ".gitignore": ".expctl/\n", "expctl.yaml": settings})
    old, out = os.getcwd(), []
    os.chdir(repo.path)
    try:
        for args in (["apply", "-y", "--wait", "--timeout", "90"], ["status", "-o", "json"],
                     ["render", "--backend", "kubernetes"], ["render", "--backend", "slurm"]):
            result = CliRunner().invoke(main, args, env={"MLFLOW_TRACKING_URI": None, "EXPCTL_BACKEND": None})
            out.append(result.stdout + result.stderr)
            assert result.exit_code == 0, out[-1]
    finally:
        os.chdir(old)
    assert json.loads(out[1])[0]["state"] == "Succeeded", out[1]  # the job had the password and a URI without it
    assert f"value: {mlflow_server.uri}\n" in out[2]  # the Kubernetes manifest's MLFLOW_TRACKING_URI
    assert f"export MLFLOW_TRACKING_URI={mlflow_server.uri}" in out[3]
    assert PASSWORD not in "\n".join(out)
    assert found_in([repo.path / ".expctl", mlflow_server.workdir], PASSWORD.encode()) == []


JOB_PASSWORD = f"job-pw-{uuid.uuid4().hex}"
TEAM_SETTINGS = ("code_paths: [code]\nteams:\n  - name: speech\n    paths: [experiments/speech]\n"
                 "    mlflow: {workspace: voice}\n    kubernetes: {namespace: speech}\n")


def test_a_teams_job_identity_reaches_its_job_and_nothing_expctl_writes(
        tmp_path: Path, mlflow_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A team that declares ``mlflow:``: its local job gets the team's job identity and workspace (from the
    platform's secret store) through its process environment only; the password is in no file under
    ``.expctl/`` (run state, logs), no MLflow value or audit record, no output, no rendered manifest or script."""
    for name in CREDENTIALS:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    store = tmp_path / "store" / "mlflow-jobs.json"
    store.parent.mkdir()
    store.write_text(json.dumps({"expctl-job-speech": JOB_PASSWORD}))
    monkeypatch.setenv("EXPCTL_SECRET_STORE", str(store))
    job = BASE + f"expctl:\n  kind: PyTorchJob\n  command: [python, {jobs.path('check_team_identity')}]\n"
    settings = TEAM_SETTINGS + f"slurm: {{workdir: {tmp_path / 'slurm'}}}\n"
    repo = minimal_repo(tmp_path / "repo", {"experiments/speech/who.yaml": job, ".gitignore": ".expctl/\n",
                                             "expctl.yaml": settings})
    out = [run(repo.path, *args, tracking=mlflow_server.uri) for args in (
        ("apply", "-y", "--wait", "--timeout", "90"), ("status", "-o", "json"), ("history",),
        ("render", "--backend", "kubernetes"), ("render", "--backend", "slurm"))]
    assert all(code == 0 for code, _ in out), out
    assert json.loads(out[1][1])[0]["state"] == "Succeeded", out[1]  # the job had the team's identity
    assert "- secretRef:\n" in out[3][1] and "name: expctl-mlflow-job\n" in out[3][1]  # Kubernetes: the team's Secret
    assert JOB_PASSWORD not in "\n".join(text for _, text in out)
    assert found_in([repo.path / ".expctl", mlflow_server.workdir], JOB_PASSWORD.encode()) == []
