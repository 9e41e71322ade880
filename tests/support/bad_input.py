"""The table of hostile input and how each case is checked: a real git repository, the real ``expctl`` command
line run in-process (click's runner), and the promise — one error line naming the file or variable and the
key, the right exit code, no traceback, nothing written."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from expctl.backends.local import state as local_state
from expctl.cli import main
from tests.support.gitrepo import GitRepo, minimal_repo

BASE = "defaults:\n  - config\n  - _self_\n"


Setup = Callable[[GitRepo], None]


@dataclass
class Case:
    id: str
    files: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ("validate",)
    expected: str = ""  # a fragment of the one error line
    code: int = 1
    setup: Setup | None = None
    env: dict[str, str] = field(default_factory=dict)
    also_apply: bool = True  # config errors: apply must refuse the same way, before any write
    server: bool = False  # track in the session's MLflow server (no embedded store written into the repo)


def run_state(name: str, **changes: object) -> local_state.RunState:
    """A finished local run's state (``state.json``), with ``changes``."""
    fields: dict[str, object] = {
        "name": name, "run_key": "k" * 32, "experiment": "good", "attempt": 1, "spec_hash": "h" * 64,
        "kind": "PyTorchJob", "replicas": 1, "gpus": 0, "commit": "0" * 40, "overrides": [],
        "mlflow_run_id": "", "applied_by": "test", "command": ["python", "-c", "pass"], "env": {},
        "timeout_seconds": None, "created_at": time.time(), "status": "finished", "phase": "Succeeded",
        "finished_at": time.time(),
    }
    fields.update(changes)
    return local_state.RunState(**fields)  # type: ignore[arg-type]


# a lock, who holds it (backends/locks.py), the mark its last holder left (backends/local/table.py)
LOCK_FILES = (".lock", ".lock.holder", "local.epoch")


def tree(path: Path) -> dict[str, int]:
    """Every file (not .git, not the locks' own files) with its size."""
    return {str(p.relative_to(path)): p.stat().st_size for p in path.rglob("*")
            if ".git" not in p.relative_to(path).parts and p.is_file() and not p.name.endswith(LOCK_FILES)}


JOB_CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "PGPASSWORD")


def invoke(repo: Path, args: tuple[str, ...], env: dict[str, str]) -> tuple[int, str, str]:
    """``expctl ARGS`` in ``repo``, in-process, with only ``env`` of the variables expctl reads; (code, out, err)."""
    old = os.getcwd()
    os.chdir(repo)  # relative paths (plan files, KUBECONFIG) as a user would type them
    try:
        # the credentials expctl hands its jobs through its environment (a URI's password) are undone after
        result = CliRunner().invoke(main, list(args), env={"MLFLOW_TRACKING_URI": None, "EXPCTL_BACKEND": None,
                                                           "KUBECONFIG": None, **dict.fromkeys(JOB_CREDENTIALS), **env})
    finally:
        os.chdir(old)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        raise AssertionError("".join(traceback.format_exception(result.exception)))
    return result.exit_code, result.stdout, result.stderr


def check(tmp_path: Path, case: Case, request: pytest.FixtureRequest) -> str:
    """Run ``case`` (and apply, for a config error); its stderr (the last command's)."""
    repo = minimal_repo(tmp_path / "repo", {"experiments/good.yaml": BASE, ".gitignore": ".expctl/\n",
                                             **case.files})
    if case.setup:
        case.setup(repo)
    env = dict(case.env)
    if case.server:
        env["MLFLOW_TRACKING_URI"] = request.getfixturevalue("mlflow_server").uri
    before = tree(repo.path)
    commands = [case.args] + ([("apply", "-y")] if case.also_apply and case.args == ("validate",) else [])
    for args in commands:
        code, out, err = invoke(repo.path, args, env)
        assert code == case.code, (code, out, err)
        assert "Traceback" not in err
        lines = err.strip().splitlines()
        errors = [ln for ln in lines if ln.startswith("error: ")]
        assert len(errors) == 1, lines  # one error line; anything else is a one-line warning
        assert all(ln.startswith("warning: ") for ln in lines if ln not in errors), lines
        assert case.expected in errors[0], errors[0]
        assert out == "" or args[0] == "apply", out
    assert tree(repo.path) == before  # nothing written: no .expctl/, no MLflow store, no worktree
    return err

