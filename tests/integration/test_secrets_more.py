"""Secrets in URLs that are not the run's config: a tracking URI's secret query value, a clone URL's token.

``test_secrets.py`` covers what composes into a run's config and a password in the tracking URI's user
information. Here: a ``?token=``/``?password=`` value of ``MLFLOW_TRACKING_URI`` in the addresses ``expctl ui``
prints and in the errors that quote the URI (``sanitize.shown_uri``), and a credential in
``kubernetes.repo_url``, which every manifest's git-sync init container would carry (refused by ``validate``,
and its value never echoed in the error); the traceback ``EXPCTL_DEBUG=1`` prints, whose chained exceptions
are MLflow's own (they quote the request URL with its user information).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from expctl.cli import main
from tests.faults.proxy import FaultProxy, Rule
from tests.gitrepo import minimal_repo
from tests.integration.e2e import expctl

pytestmark = pytest.mark.integration

SECRET = f"tok{uuid.uuid4().hex}"
BASE = "defaults:\n  - config\n  - _self_\n"
JOB = BASE + "expctl:\n  kind: PyTorchJob\n  command: [python, -c, pass]\n"


def run(repo: Path, *args: str, env: dict[str, str | None]) -> tuple[int, str]:
    old = os.getcwd()
    os.chdir(repo)
    try:
        result = CliRunner().invoke(main, list(args), env={"EXPCTL_BACKEND": None, **env})
    finally:
        os.chdir(old)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout + result.stderr


def test_ui_links_and_uri_errors_hide_a_secret_query_value(tmp_path: Path, mlflow_server: Any) -> None:
    """``expctl ui`` printed a tracking server's URI as the base of every link it shows, with ``?token=…``; an
    unparsable URI was quoted with its ``?password=…`` by every command that opens no backend."""
    repo = minimal_repo(tmp_path / "repo", {"experiments/e.yaml": JOB, ".gitignore": ".expctl/\n"})
    code, out = run(repo.path, "ui", env={"MLFLOW_TRACKING_URI": f"{mlflow_server.uri}/?token={SECRET}"})
    assert code == 0, out
    assert f"Training runs: {mlflow_server.uri}/?token=***/#/" in out  # the links are still printed
    assert SECRET not in out
    for command in ("ui", "history", "plan"):
        code, out = run(repo.path, command,
                        env={"MLFLOW_TRACKING_URI": f"postgresql://ml@[::1/mlflow?password={SECRET}"})
        assert code == 1, out
        assert "MLFLOW_TRACKING_URI: not a valid URI (Invalid IPv6 URL): postgresql://***@[::1/mlflow?password=***" \
            in out, (command, out)
        assert SECRET not in out, (command, out)


@pytest.mark.parametrize("url", [f"https://ci:{SECRET}@git.example.com/acme/vision.git",
                                 f"https://{SECRET}@git.example.com/acme/vision.git",
                                 f"ssh://git:{SECRET}@git.example.com/acme/vision.git",
                                 f"https://git.example.com/acme/vision.git?access_token={SECRET}"])
def test_a_credential_in_the_clone_url_is_refused_and_never_shown(tmp_path: Path, url: str) -> None:
    """``kubernetes.repo_url: https://ci:<token>@host/repo.git`` went into every manifest (the git-sync init
    container's ``EXPCTL_GIT_REPO``, echoed in its log too): refused, one line, the token not quoted."""
    settings = f"code_paths: [code]\nkubernetes: {{repo_url: '{url}', git_secret: vision-git}}\n"
    repo = minimal_repo(tmp_path / "repo", {"experiments/e.yaml": JOB, ".gitignore": ".expctl/\n",
                                             "expctl.yaml": settings})
    for args in (["validate"], ["render", "--backend", "kubernetes"], ["plan"]):
        code, out = run(repo.path, *args, env={"MLFLOW_TRACKING_URI": None})
        assert code == 1, out
        assert out.startswith("error: expctl.yaml: kubernetes.repo_url: value error, holds a credential"), out
        assert SECRET not in out


@pytest.mark.parametrize("url", ["ssh://git@git.example.com/acme/vision.git", "git@git.example.com:acme/vision.git",
                                 "https://git.example.com/acme/vision.git"])
def test_a_clone_url_without_a_credential_is_rendered(tmp_path: Path, url: str) -> None:
    settings = f"code_paths: [code]\nkubernetes: {{repo_url: '{url}', git_secret: vision-git}}\n"
    repo = minimal_repo(tmp_path / "repo", {"experiments/e.yaml": JOB, ".gitignore": ".expctl/\n",
                                             "expctl.yaml": settings})
    code, out = run(repo.path, "render", "--backend", "kubernetes", env={"MLFLOW_TRACKING_URI": None})
    assert code == 0, out
    assert f"- name: EXPCTL_GIT_REPO\n              value: {url}\n" in out


def test_a_debug_traceback_shows_no_password(tmp_path: Path, mlflow_server: Any) -> None:
    """``EXPCTL_DEBUG=1`` printed the traceback raw: MLflow's ``API request to http://ci:<password>@host/api/…
    failed`` (the cause of expctl's own one-line error) showed the password of the tracking URI."""
    repo = minimal_repo(tmp_path / "repo", {"experiments/e.yaml": JOB, ".gitignore": ".expctl/\n"})
    proxy = FaultProxy(upstream=mlflow_server.uri.removeprefix("http://")).start()
    try:
        proxy.add(Rule("*", r"/api/", "reset-before", times=-1))  # /health answers; every API call is dropped
        uri = proxy.url.replace("http://", f"http://ci:{SECRET}@")
        for command in ("plan", "history"):
            done = expctl(repo.path, command, tracking_uri=uri, timeout=300, EXPCTL_DEBUG="1")
            out = done.stdout + done.stderr
            assert done.returncode == 1, out
            assert "Traceback (most recent call last)" in out and "API request to http://***@127.0.0.1:" in out, out
            assert SECRET not in out
    finally:
        proxy.close()
