"""The local backend's test driver: launches of real subprocesses in a real git worktree, settled as the
machine would settle them (the contract suite's ``driver``), and a bounded wait on what the backend observes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from expctl.backends.local.backend import LocalBackend
from expctl.backends.local.state import load
from expctl.core.model import JobKind, Launch, ObservedRun, Phase
from tests.support.factories import make_job, make_launch, make_spec
from tests.support.gitrepo import GitRepo

COMMANDS = {
    "succeed": ("sh", "-c", "exit 0"),
    "fail": ("sh", "-c", "exit 3"),
    "run": ("python", "-c", "import time; time.sleep(60)"),
    "infra": ("python", "-c", "import time; time.sleep(60)"),
}


def wait_for(backend: LocalBackend, name: str, until: Any, timeout: float = 30.0) -> ObservedRun:
    """Observe until ``until(run)`` holds (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = {r.name: r for r in backend.observe()}
        run = runs.get(name)
        if run is not None and until(run):
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} did not reach the expected state in {timeout}s: {run}")
        time.sleep(0.1)


class LocalDriver:
    def __init__(self, state_dir: Path, repo: GitRepo, parallelism: int = 4) -> None:
        self.state_dir = state_dir
        self.repo = repo
        self.parallelism = parallelism

    def launch(self, outcome: str, attempt: int = 1, experiment: str = "contract", **job: Any) -> Launch:
        job.setdefault("command", COMMANDS.get(outcome, ("sh", "-c", outcome)))
        job.setdefault("kind", JobKind.LOCAL)
        spec = make_spec(experiment, overrides=("lr=0.1",), job=make_job(**job), commit=self.repo.head)
        return make_launch(spec, attempt=attempt)

    def settle(self, launch: Launch, outcome: str) -> None:
        if outcome == "infra":  # the machine loses the process: no exit code is ever written
            wait_for(self.reopen(), launch.name, lambda r: r.phase is Phase.RUNNING)
            state = load(self.state_dir / "runs" / launch.name)
            assert state is not None
            for proc in state.processes:
                os.killpg(proc.pid, signal.SIGKILL)
        wait_for(self.reopen(), launch.name, lambda r: r.phase.finished)

    def reopen(self) -> LocalBackend:
        return LocalBackend(self.state_dir, self.repo.path, parallelism=self.parallelism)

