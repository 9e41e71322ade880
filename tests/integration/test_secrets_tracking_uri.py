"""A secret in the tracking URI outside the run's config: a ``?token=``/``?password=`` value of
``MLFLOW_TRACKING_URI`` in the addresses ``expctl ui`` prints and in the errors that quote the URI
(``sanitize.shown_uri``), and a password in its user information in the traceback ``EXPCTL_DEBUG=1`` prints,
whose chained exceptions are MLflow's own (they quote the request URL with its user information).

``test_secrets.py`` covers what composes into a run's config and a password in the tracking URI's user
information that jobs are handed; ``test_secrets_clone_url.py`` a credential in the clone URL.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_cli
from tests.support.e2e import expctl
from tests.support.gitrepo import minimal_repo
from tests.support.proxy import FaultProxy, Rule

pytestmark = pytest.mark.integration

SECRET = f"tok{uuid.uuid4().hex}"
BASE = "defaults:\n  - config\n  - _self_\n"
JOB = BASE + "expctl:\n  kind: PyTorchJob\n  command: [python, -c, pass]\n"


def test_ui_links_and_uri_errors_hide_a_secret_query_value(tmp_path: Path, mlflow_server: Any) -> None:
    """``expctl ui`` printed a tracking server's URI as the base of every link it shows, with ``?token=…``; an
    unparsable URI was quoted with its ``?password=…`` by every command that opens no backend."""
    repo = minimal_repo(tmp_path / "repo", {"experiments/e.yaml": JOB, ".gitignore": ".expctl/\n"})
    code, out = run_cli(repo.path, "ui", env={"MLFLOW_TRACKING_URI": f"{mlflow_server.uri}/?token={SECRET}"})
    assert code == 0, out
    assert f"Training runs: {mlflow_server.uri}/?token=***/#/" in out  # the links are still printed
    assert SECRET not in out
    for command in ("ui", "history", "plan"):
        code, out = run_cli(repo.path, command,
                        env={"MLFLOW_TRACKING_URI": f"postgresql://ml@[::1/mlflow?password={SECRET}"})
        assert code == 1, out
        assert "MLFLOW_TRACKING_URI: not a valid URI (Invalid IPv6 URL): postgresql://***@[::1/mlflow?password=***" \
            in out, (command, out)
        assert SECRET not in out, (command, out)


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
