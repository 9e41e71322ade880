"""The operator commands' project on the Kubernetes backend: a git repository whose ``expctl.yaml`` selects the
test namespace (a 3-point sweep and a 3-replica run), and ``expctl`` run in-process on it as a fresh process
would run it (a new workspace, backend and tracker every time)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from expctl.cli import main
from expctl.engine.workspace import Workspace
from tests.support.gitrepo import GitRepo

CONFIG = """\
seed: 0
optimizer:
  lr: 0.1
expctl:
  kind: PyTorchJob
  image: python:3.11-slim
  command: [python, -m, train]
"""


SWEEP = "defaults:\n  - config\n  - _self_\nhydra:\n  sweeper:\n    params:\n      optimizer.lr: 0.1,0.2,0.3\n"


SINGLE = "defaults:\n  - config\n  - _self_\nexpctl:\n  replicas: {replicas}\n  resources:\n    gpus: 1\n"


def make_repo(path: Path, namespace: str) -> GitRepo:
    repo = GitRepo(path)
    files = {
        ".gitignore": ".expctl/\n",
        "expctl.yaml": (f"backend: kubernetes\ncode_paths: [train]\nkubernetes:\n  namespace: {namespace}\n"
                        "  repo_url: https://git.example.com/team/repo.git\n  qps: 50\n  burst: 50\n"),
        "train/__init__.py": "",
        "train/__main__.py": "print('training')\n",
        "conf/config.yaml": CONFIG,
        "experiments/sweep.yaml": SWEEP,
        "experiments/single.yaml": SINGLE.format(replicas=3),
    }
    for rel, text in files.items():
        repo.write(rel, text)
    repo.commit("kube examples")
    return repo


def invoke(repo: GitRepo, *args: str) -> Result:
    """One command, as a fresh expctl would run it (a new workspace, backend and tracker every time)."""
    return CliRunner().invoke(main, list(args), obj={"workspace": Workspace(repo.path)}, catch_exceptions=False)


def ok(repo: GitRepo, *args: str) -> str:
    result = invoke(repo, *args)
    assert result.exit_code == 0, f"expctl {' '.join(args)} exited {result.exit_code}:\n{result.output}"
    return result.stdout


def status(repo: GitRepo, *args: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(ok(repo, "status", "-o", "json", *args))
    return rows

