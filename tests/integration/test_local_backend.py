"""The local backend against real git worktrees and real subprocesses: the contract suite and more."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from expctl.backends.local.backend import LocalBackend
from expctl.backends.local.state import load
from expctl.core.errors import BackendError
from expctl.core.model import FailureClass, JobKind, Phase
from tests.contract.backend_suite import BackendContract
from tests.support import jobs
from tests.support.gitrepo import GitRepo
from tests.support.local_driver import LocalDriver, wait_for

pytestmark = pytest.mark.integration

PRINT_ENV = ("python", str(jobs.path("print_replica_env")))


@pytest.fixture
def driver(tmp_path: Path, git_repo: GitRepo) -> LocalDriver:
    return LocalDriver(git_repo.path / ".expctl", git_repo)


@pytest.fixture
def backend(driver: LocalDriver) -> Iterator[LocalBackend]:
    backend = driver.reopen()
    yield backend
    for run in backend.observe():  # never leave processes behind
        backend.delete(run.name)


class TestLocalContract(BackendContract):
    pass


def replica_output(backend: LocalBackend, name: str, replica: str) -> dict[str, Any]:
    lines = list(backend.logs(name, replica))
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def test_replicas_get_the_pod_environment(backend: LocalBackend, driver: LocalDriver) -> None:
    launch = driver.launch("env", command=PRINT_ENV, kind=JobKind.PYTORCH, replicas=2,
                           env=(("GREETING", "hi"),))
    backend.create(launch)
    run = wait_for(backend, launch.name, lambda r: r.phase.finished)
    assert run.phase is Phase.SUCCEEDED, run.message
    master = replica_output(backend, launch.name, "master-0")
    worker = replica_output(backend, launch.name, "worker-0")
    assert (master["RANK"], worker["RANK"]) == ("0", "1")
    assert master["WORLD_SIZE"] == worker["WORLD_SIZE"] == "2"
    assert master["MASTER_ADDR"] == "127.0.0.1" and master["MASTER_PORT"] == worker["MASTER_PORT"]
    assert int(master["MASTER_PORT"]) > 0 and master["TF_CONFIG"] is None
    assert master["MLFLOW_RUN_ID"] == launch.tracking.run_id
    assert master["MLFLOW_TRACKING_URI"] == launch.tracking.tracking_uri
    assert master["MLFLOW_EXPERIMENT_NAME"] == "contract"
    assert master["EXPCTL_RUN_NAME"] == launch.name and master["EXPCTL_ATTEMPT"] == "1"
    assert master["GREETING"] == "hi"
    assert master["config"] == dict(launch.spec.config)
    assert Path(master["cwd"]) == driver.state_dir / "worktrees" / launch.spec.commit
    both = list(backend.logs(launch.name))
    assert any(line.startswith("[master-0] ") for line in both)
    assert any(line.startswith("[worker-0] ") for line in both)


def test_tfjob_replicas_get_tf_config(backend: LocalBackend, driver: LocalDriver) -> None:
    launch = driver.launch("env", command=PRINT_ENV, kind=JobKind.TF, replicas=3)
    backend.create(launch)
    assert wait_for(backend, launch.name, lambda r: r.phase.finished).phase is Phase.SUCCEEDED
    chief = json.loads(replica_output(backend, launch.name, "chief-0")["TF_CONFIG"])
    worker = json.loads(replica_output(backend, launch.name, "worker-1")["TF_CONFIG"])
    assert chief["task"] == {"type": "chief", "index": 0}
    assert worker["task"] == {"type": "worker", "index": 1}
    assert chief["cluster"] == worker["cluster"]
    assert len(chief["cluster"]["chief"]) == 1 and len(chief["cluster"]["worker"]) == 2
    assert all(addr.startswith("127.0.0.1:") for addr in chief["cluster"]["worker"])


def test_runs_at_the_pinned_commit_not_the_dirty_tree(backend: LocalBackend, driver: LocalDriver,
                                                      git_repo: GitRepo) -> None:
    git_repo.write("marker.txt", "pinned\n")
    pinned = git_repo.commit("pinned")
    launch = driver.launch("cat marker.txt")
    git_repo.write("marker.txt", "moved on\n")
    git_repo.commit("later")
    git_repo.write("marker.txt", "dirty\n")
    assert launch.spec.commit == pinned != git_repo.head
    backend.create(launch)
    run = wait_for(backend, launch.name, lambda r: r.phase.finished)
    assert run.phase is Phase.SUCCEEDED, run.message
    assert list(backend.logs(launch.name)) == ["pinned"]
    assert not (driver.state_dir / "worktrees" / pinned).exists(), "worktree kept after its runs finished"
    assert "worktrees" not in git_repo.git("worktree", "list")


def _child_pids(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def test_vanished_process_is_an_infrastructure_failure(backend: LocalBackend, driver: LocalDriver) -> None:
    launch = driver.launch("run")
    backend.create(launch)
    assert wait_for(backend, launch.name, lambda r: r.phase is Phase.RUNNING)
    state = load(driver.state_dir / "runs" / launch.name)
    assert state is not None
    os.killpg(state.processes[0].pid, signal.SIGKILL)  # the wrapper and the job die together: no exit code
    (driver.state_dir / "runs" / launch.name / "node-0.exit").unlink(missing_ok=True)
    run = wait_for(driver.reopen(), launch.name, lambda r: r.phase.finished)
    assert run.phase is Phase.FAILED and run.failure is FailureClass.INFRASTRUCTURE
    assert "vanished" in run.message


def test_signal_nobody_sent_is_an_infrastructure_failure(backend: LocalBackend, driver: LocalDriver) -> None:
    launch = driver.launch("run")
    backend.create(launch)
    wait_for(backend, launch.name, lambda r: r.phase is Phase.RUNNING)
    state = load(driver.state_dir / "runs" / launch.name)
    assert state is not None
    deadline = time.monotonic() + 10
    while not (children := _child_pids(state.processes[0].pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(children[0], signal.SIGKILL)  # e.g. the kernel's OOM killer
    run = wait_for(backend, launch.name, lambda r: r.phase.finished)
    assert run.phase is Phase.FAILED and run.failure is FailureClass.INFRASTRUCTURE
    assert "SIGKILL" in run.message


def test_parallelism_queues_runs_until_a_slot_frees(tmp_path: Path, git_repo: GitRepo) -> None:
    driver = LocalDriver(git_repo.path / ".expctl", git_repo, parallelism=1)
    backend = driver.reopen()
    gate = tmp_path / "first-may-end"  # the first run holds the slot until the test opens this gate
    first = driver.launch(f"while [ ! -e '{gate}' ]; do sleep 0.05; done", experiment="first")
    second = driver.launch("succeed", experiment="second")
    backend.create(first)
    backend.create(second)
    runs = {r.name: r for r in backend.observe()}
    assert runs[first.name].phase is Phase.RUNNING
    assert runs[second.name].phase is Phase.PENDING and "queued" in runs[second.name].message
    gate.touch()
    run = wait_for(backend, second.name, lambda r: r.phase.finished)
    assert run.phase is Phase.SUCCEEDED
    first_run = {r.name: r for r in backend.observe()}[first.name]
    assert first_run.finished_at is not None and run.finished_at is not None
    assert first_run.finished_at <= run.finished_at


def test_create_with_another_spec_under_the_same_name_is_refused(backend: LocalBackend,
                                                                 driver: LocalDriver) -> None:
    launch = driver.launch("succeed")
    backend.create(launch)
    other = replace(launch, spec=replace(launch.spec, spec_hash="0" * 20))
    with pytest.raises(BackendError, match="already exists"):
        backend.create(other)


def test_one_failing_replica_fails_the_run_and_stops_the_others(backend: LocalBackend,
                                                               driver: LocalDriver) -> None:
    script = "import os, sys, time; time.sleep(60) if os.environ['RANK'] == '0' else sys.exit(4)"
    launch = driver.launch("mixed", command=("python", "-c", script), kind=JobKind.PYTORCH, replicas=2)
    backend.create(launch)
    run = wait_for(backend, launch.name, lambda r: r.phase.finished)
    assert run.phase is Phase.FAILED and run.failure is FailureClass.CODE
    assert "worker-0 exited with code 4" in run.message
    state = load(driver.state_dir / "runs" / launch.name)
    assert state is not None
    assert not any(Path(f"/proc/{p.pid}").exists() and _running(p.pid) for p in state.processes)


def _running(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2] not in "ZX"


def test_logs_follow_until_the_process_ends(backend: LocalBackend, driver: LocalDriver) -> None:
    launch = driver.launch("follow", command=("python", str(jobs.path("print_lines"))))
    backend.create(launch)
    assert list(backend.logs(launch.name, follow=True)) == ["line 0", "line 1", "line 2"]
    with pytest.raises(BackendError, match="no replica"):
        backend.logs(launch.name, replica="worker-7")


def test_timeout_fails_the_run(backend: LocalBackend, driver: LocalDriver) -> None:
    launch = driver.launch("run", timeout_seconds=1)
    backend.create(launch)
    run = wait_for(backend, launch.name, lambda r: r.phase.finished)
    assert run.phase is Phase.FAILED and "timeout" in run.message


def test_training_fails_its_first_attempts_on_request(backend: LocalBackend, driver: LocalDriver,
                                                      git_repo: GitRepo) -> None:
    """``trainer.fail_first_attempts`` drives the retry demo: a code failure, classified as such."""
    git_repo.add_training()
    launch = driver.launch("train", command=("python", "-m", "training.train"))
    config = {"trainer": {"fail_first_attempts": 1, "epochs": 1}}
    launch = replace(launch, spec=replace(launch.spec, config=config))
    backend.create(launch)
    run = wait_for(backend, launch.name, lambda r: r.phase.finished, timeout=120)
    assert run.phase is Phase.FAILED and run.failure is FailureClass.CODE
    assert any("failing attempt 1 on purpose" in line for line in backend.logs(launch.name))


def test_two_expctl_processes_share_the_state_safely(driver: LocalDriver, git_repo: GitRepo) -> None:
    """The file lock serialises two expctl processes: parallelism holds across them, no state is lost."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    creator = [sys.executable, "-m", "tests.support.local_creator", str(driver.state_dir), str(git_repo.path)]
    procs = [subprocess.Popen([*creator, git_repo.head, who], cwd=root) for who in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    backend = LocalBackend(driver.state_dir, git_repo.path, parallelism=1)
    deadline = time.monotonic() + 60
    runs = backend.observe()
    while not all(r.phase.finished for r in runs) and time.monotonic() < deadline:
        time.sleep(0.2)
        runs = backend.observe()
    assert len(runs) == 6 and all(r.phase is Phase.SUCCEEDED for r in runs)
    states = sorted((s for r in runs if (s := load(driver.state_dir / "runs" / r.name))),
                    key=lambda s: s.started_at or 0.0)
    for before, after in itertools.pairwise(states):
        assert before.finished_at is not None and after.started_at is not None
        assert after.started_at >= before.finished_at, "two runs ran at once with parallelism 1"


def test_following_a_queued_run_starts_it_when_a_slot_frees(tmp_path: Path, git_repo: GitRepo) -> None:
    driver = LocalDriver(git_repo.path / ".expctl", git_repo, parallelism=1)
    backend = driver.reopen()
    gate = tmp_path / "first-may-end"
    first = driver.launch(f"while [ ! -e '{gate}' ]; do sleep 0.05; done", experiment="first")
    second = driver.launch("echo started", experiment="second")
    backend.create(first)
    backend.create(second)
    assert {r.name: r.phase for r in backend.observe()}[second.name] is Phase.PENDING
    gate.touch()
    assert list(driver.reopen().logs(second.name, follow=True)) == ["started"]


@pytest.mark.parametrize(
    ("ended", "running", "phase", "failure", "message"),
    [
        ({"a": {"returncode": 0, "finished_at": 2.0}, "b": {"returncode": 0, "finished_at": 3.0}}, set(),
         Phase.SUCCEEDED, None, ""),
        ({"a": {"returncode": 0, "finished_at": 2.0}, "b": None}, {"b"}, Phase.RUNNING, None, ""),
        ({"a": {"returncode": 3, "finished_at": 2.0}, "b": None}, {"b"}, Phase.FAILED, FailureClass.CODE,
         "a exited with code 3"),
        ({"a": {"returncode": -9, "finished_at": 2.0}}, set(), Phase.FAILED, FailureClass.INFRASTRUCTURE,
         "a killed by SIGKILL"),
        ({"a": None, "b": None}, {"b"}, Phase.FAILED, FailureClass.INFRASTRUCTURE,
         "process vanished without an exit code: a"),
    ],
)
def test_judge(ended: dict[str, Any], running: set[str], phase: Phase, failure: FailureClass | None,
               message: str) -> None:
    from expctl.backends.local.state import judge

    verdict = judge(ended, running)
    assert (verdict.phase, verdict.failure, verdict.message) == (phase, failure, message)


class ReadCounter:
    """Counts which runs' ``state.json`` the backend reads (wraps the real ``local_state.load``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from expctl.backends.local import state as local_state

        self.reads: list[str] = []
        real = local_state.load

        def counting(run_dir: Path) -> Any:
            self.reads.append(Path(run_dir).name)
            return real(run_dir)

        monkeypatch.setattr(local_state, "load", counting)

    def take(self) -> list[str]:
        reads, self.reads = self.reads, []
        return reads


def test_create_reads_no_other_runs_state(driver: LocalDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    """Creating a run costs the same with 1 or 100 runs: it reads its own state only (no quadratic apply)."""
    backend = LocalBackend(driver.state_dir, driver.repo.path, parallelism=100)
    launches = [driver.launch("succeed", experiment=f"e{i}") for i in range(12)]
    counter = ReadCounter(monkeypatch)
    backend.observe()
    for launch in launches:
        counter.take()
        backend.create(launch)
        assert counter.take() == [launch.name]
    backend.create(launches[0])  # idempotent: still one object, and still only its own state read
    assert counter.take() == [launches[0].name]
    runs = backend.observe()
    assert sorted(r.name for r in runs) == sorted(x.name for x in launches)
    assert all(r.phase in (Phase.RUNNING, Phase.SUCCEEDED) for r in runs)


def test_a_create_after_another_holder_of_the_lock_reads_every_run(driver: LocalDriver,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Two backends on one state (two expctl processes): once the other one took the lock, a create reads
    every run again, so parallelism holds across them."""
    first = LocalBackend(driver.state_dir, driver.repo.path, parallelism=1)
    second = LocalBackend(driver.state_dir, driver.repo.path, parallelism=1)
    a, b, c = (driver.launch("run", experiment=name) for name in ("a", "b", "c"))
    counter = ReadCounter(monkeypatch)
    first.create(a)
    second.create(b)  # its table was never filled: it reads every run, sees a running, queues b
    counter.take()
    first.create(c)  # the second backend held the lock since: the first one's table is stale
    assert set(counter.take()) >= {a.name, b.name, c.name}
    phases = {r.name: r.phase for r in first.observe()}
    assert phases == {a.name: Phase.RUNNING, b.name: Phase.PENDING, c.name: Phase.PENDING}
    for launch in (a, b, c):
        first.delete(launch.name)


def test_concurrent_creates_from_threads_start_each_run_once(driver: LocalDriver) -> None:
    """An apply's pool creates from several threads, some of them the same run twice: every run gets exactly
    one process, and never more than ``parallelism`` run at once."""
    from concurrent.futures import ThreadPoolExecutor

    backend = LocalBackend(driver.state_dir, driver.repo.path, parallelism=3)
    launches = [driver.launch("sleep 0.2", experiment=f"t{i}") for i in range(12)]
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(backend.create, launches + launches[:6]))
    deadline = time.monotonic() + 60
    runs = backend.observe()
    while not all(r.phase.finished for r in runs) and time.monotonic() < deadline:
        time.sleep(0.1)
        runs = backend.observe()
    assert sorted(r.name for r in runs) == sorted(x.name for x in launches)
    assert all(r.phase is Phase.SUCCEEDED for r in runs)
    states = [s for r in runs if (s := load(driver.state_dir / "runs" / r.name))]
    assert all(len(s.processes) == 1 for s in states)
    for state in states:  # at any run's start, at most parallelism - 1 others were running
        assert state.started_at is not None
        overlapping = [o for o in states if o is not state and o.started_at is not None and o.finished_at
                       and o.started_at <= state.started_at < o.finished_at]
        assert len(overlapping) < backend.parallelism


def test_the_job_gets_default_signal_dispositions(backend: LocalBackend, driver: LocalDriver) -> None:
    """The replica's wrapper is Python, which ignores SIGPIPE: the job must not inherit that."""
    launch = driver.launch("sigs", command=("sh", "-c", "grep SigIgn /proc/self/status"))
    backend.create(launch)
    wait_for(backend, launch.name, lambda r: r.phase.finished)
    ignored = int(list(backend.logs(launch.name))[-1].split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))
    assert not ignored & (1 << (signal.SIGXFSZ - 1))


def test_a_command_that_does_not_exist_fails_the_run_as_code(backend: LocalBackend, driver: LocalDriver) -> None:
    launch = driver.launch("missing", command=("no-such-command-expctl",))
    backend.create(launch)
    run = wait_for(backend, launch.name, lambda r: r.phase.finished)
    assert run.phase is Phase.FAILED and run.failure is FailureClass.CODE
    assert "exited with code 127" in run.message
    assert any("cannot start 'no-such-command-expctl'" in line for line in backend.logs(launch.name))


def test_a_password_an_older_expctl_left_in_a_run_state_is_removed(backend: LocalBackend,
                                                                   driver: LocalDriver) -> None:
    """Older expctl versions wrote the tracking URI with its password into ``state.json``: the next read of
    every run (any observe or apply) rewrites it without, and leaves the rest of the state alone."""
    launch = driver.launch("succeed")
    backend.create(launch)
    wait_for(backend, launch.name, lambda r: r.phase.finished)
    path = driver.state_dir / "runs" / launch.name / "state.json"
    old = json.loads(path.read_text())
    old["env"]["MLFLOW_TRACKING_URI"] = "http://ml:hunter2@mlflow:5000"
    path.write_text(json.dumps(old))
    assert {r.name: r.phase for r in driver.reopen().observe()}[launch.name] is Phase.SUCCEEDED
    new = json.loads(path.read_text())
    assert "hunter2" not in path.read_text() and new["env"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert {k: v for k, v in new.items() if k != "env"} == {k: v for k, v in old.items() if k != "env"}
