"""A credential in ``kubernetes.repo_url``, which every manifest's git-sync init container would carry: refused
by ``validate``, ``render`` and ``plan`` in one line that never echoes its value; a clone URL without one is
rendered as given."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.gitrepo import minimal_repo

pytestmark = pytest.mark.integration

SECRET = f"tok{uuid.uuid4().hex}"
BASE = "defaults:\n  - config\n  - _self_\n"
JOB = BASE + "expctl:\n  kind: PyTorchJob\n  command: [python, -c, pass]\n"


@pytest.mark.parametrize("url", [f"https://ci:{SECRET}@git.example.com/acme/vision.git",
                                 f"https://{SECRET}@git.example.com/acme/vision.git",
                                 f"ssh://git:{SECRET}@git.example.com/acme/vision.git",
                                 f"https://git.example.com/acme/vision.git?access_token={SECRET}"],
                         ids=["user-and-token", "token-as-user", "ssh-password", "access-token-query"])
def test_a_credential_in_the_clone_url_is_refused_and_never_shown(tmp_path: Path, url: str) -> None:
    """``kubernetes.repo_url: https://ci:<token>@host/repo.git`` went into every manifest (the git-sync init
    container's ``EXPCTL_GIT_REPO``, echoed in its log too): refused, one line, the token not quoted."""
    settings = f"code_paths: [code]\nkubernetes: {{repo_url: '{url}', git_secret: vision-git}}\n"
    repo = minimal_repo(tmp_path / "repo", {"experiments/e.yaml": JOB, ".gitignore": ".expctl/\n",
                                             "expctl.yaml": settings})
    for args in (["validate"], ["render", "--backend", "kubernetes"], ["plan"]):
        code, out = run_cli(repo.path, *args, env={"MLFLOW_TRACKING_URI": None})
        assert code == 1, out
        assert out.startswith("error: expctl.yaml: kubernetes.repo_url: value error, holds a credential"), out
        assert SECRET not in out


@pytest.mark.parametrize("url", ["ssh://git@git.example.com/acme/vision.git", "git@git.example.com:acme/vision.git",
                                 "https://git.example.com/acme/vision.git"])
def test_a_clone_url_without_a_credential_is_rendered(tmp_path: Path, url: str) -> None:
    settings = f"code_paths: [code]\nkubernetes: {{repo_url: '{url}', git_secret: vision-git}}\n"
    repo = minimal_repo(tmp_path / "repo", {"experiments/e.yaml": JOB, ".gitignore": ".expctl/\n",
                                             "expctl.yaml": settings})
    code, out = run_cli(repo.path, "render", "--backend", "kubernetes", env={"MLFLOW_TRACKING_URI": None})
    assert code == 0, out
    assert f"- name: EXPCTL_GIT_REPO\n              value: {url}\n" in out
