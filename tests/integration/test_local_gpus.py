"""GPU allocation on the local backend with a declared inventory of 4 fake GPUs: gang, disjoint, durable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from expctl.backends.local.backend import LocalBackend
from expctl.backends.local.state import load
from expctl.core.model import JobKind, Launch, Phase, Resources
from tests.support import jobs
from tests.support.gitrepo import ROOT, GitRepo
from tests.support.local_driver import LocalDriver, wait_for

pytestmark = pytest.mark.integration

# Each replica writes which GPUs it sees, then works until its gate file exists.
RECORD = ("python", str(jobs.path("record_gpus")))


def test_gpu_runs_never_overlap_and_the_allocation_survives_restarts(tmp_path: Path, git_repo: GitRepo,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXPCTL_LOCAL_GPUS", raising=False)
    out = tmp_path / "out"
    out.mkdir()
    driver = LocalDriver(git_repo.path / ".expctl", git_repo, parallelism=4)

    def backend() -> LocalBackend:  # every call is a "restart" of expctl: no memory but the state files
        return LocalBackend(driver.state_dir, git_repo.path, parallelism=4, gpus=4)

    gate, open_gate = tmp_path / "big-may-end", tmp_path / "open"  # big holds its GPUs until the test says
    open_gate.touch()

    def launch(experiment: str, kind: JobKind, replicas: int, gpus: int, until: Path) -> Launch:
        return driver.launch("record", experiment=experiment, kind=kind, replicas=replicas,
                             command=RECORD, resources=Resources(gpus=gpus),
                             env=(("OUT", str(out)), ("GATE", str(until))))

    big = launch("two-by-two", JobKind.PYTORCH, 2, 2, gate)  # 2 replicas x 2 GPUs: the whole machine
    small = launch("three", JobKind.LOCAL, 1, 3, open_gate)
    cpu = launch("cpu-only", JobKind.LOCAL, 1, 0, open_gate)
    try:
        backend().create(big)
        backend().create(small)
        backend().create(cpu)
        runs = {r.name: r for r in backend().observe()}
        assert runs[big.name].phase is Phase.RUNNING
        waiting = runs[small.name]
        assert waiting.phase is Phase.PENDING and waiting.message == "waiting for 3 GPUs (0 of 4 free)"

        # A new expctl process sees the same allocation and says why the run waits.
        status = subprocess.run([sys.executable, "-m", "expctl", "status"], cwd=git_repo.path, text=True,
                                capture_output=True, env={**_env(), "EXPCTL_LOCAL_GPUS": "4"}, timeout=120,
                                check=False)
        assert status.returncode == 0, status.stderr
        line = next(x for x in status.stdout.splitlines() if x.startswith(small.name))
        assert "Pending" in line and "waiting for 3 GPUs" in line
        queued = load(driver.state_dir / "runs" / small.name)
        assert queued is not None and queued.status == "queued"
        gate.touch()

        done_small = wait_for(backend(), small.name, lambda r: r.phase.finished)
        done_big = wait_for(backend(), big.name, lambda r: r.phase.finished)
        assert done_small.phase is done_big.phase is Phase.SUCCEEDED
        big_state = load(driver.state_dir / "runs" / big.name)
        small_state = load(driver.state_dir / "runs" / small.name)
        assert big_state is not None and small_state is not None
        assert small_state.started_at is not None and big_state.finished_at is not None
        assert small_state.started_at >= big_state.finished_at  # the waiting run started when the first ended

        seen = {p.name: p.read_text() for p in out.iterdir()}
        master, worker = seen[f"{big.name}.master-0"], seen[f"{big.name}.worker-0"]
        assert len(master.split(",")) == len(worker.split(",")) == 2
        assert not set(master.split(",")) & set(worker.split(","))  # disjoint between the replicas
        assert sorted(master.split(",") + worker.split(",")) == ["0", "1", "2", "3"]
        assert len(seen[f"{small.name}.node-0"].split(",")) == 3
        assert seen[f"{cpu.name}.node-0"] == ""  # a CPU-only run sees no GPU
        assert small_state.gpu_devices == [seen[f"{small.name}.node-0"].split(",")]
    finally:
        for run in backend().observe():
            backend().delete(run.name)


def test_a_run_that_can_never_fit_fails_at_once(git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPCTL_LOCAL_GPUS", "0,1")  # the environment wins over the setting
    driver = LocalDriver(git_repo.path / ".expctl", git_repo)
    backend = LocalBackend(driver.state_dir, git_repo.path, gpus=8)
    huge = driver.launch("succeed", kind=JobKind.PYTORCH, replicas=2, resources=Resources(gpus=2))
    backend.create(huge)
    run = next(r for r in backend.observe() if r.name == huge.name)
    assert run.phase is Phase.FAILED and "needs 4 GPUs (2 x 2) but this machine has 2" in run.message


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def test_a_create_starts_a_gpu_run_whose_gpus_a_finished_run_freed(git_repo: GitRepo,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """No observe in between: the create that follows finds the finished run (its exit file) and starts the
    waiting one, as a full read of every run would."""
    import time

    monkeypatch.delenv("EXPCTL_LOCAL_GPUS", raising=False)
    driver = LocalDriver(git_repo.path / ".expctl", git_repo, parallelism=4)
    backend = LocalBackend(driver.state_dir, git_repo.path, parallelism=4, gpus=1)
    gate = git_repo.path.parent / "first-may-end"  # the first run holds its GPU until the test opens this gate
    first = driver.launch("first", experiment="first", resources=Resources(gpus=1),
                          command=("sh", "-c", f"while [ ! -e '{gate}' ]; do sleep 0.05; done"))
    second = driver.launch("succeed", experiment="second", resources=Resources(gpus=1))
    backend.create(first)
    backend.create(second)
    assert {r.name: r.phase for r in backend.observe()}[second.name] is Phase.PENDING
    gate.touch()
    deadline = time.monotonic() + 30
    while not (driver.state_dir / "runs" / first.name / "node-0.exit").exists():
        assert time.monotonic() < deadline, "the first run did not end"
        time.sleep(0.05)
    backend.create(driver.launch("succeed", experiment="cpu"))
    state = load(driver.state_dir / "runs" / second.name)
    assert state is not None and state.status != "queued"
