"""The Slurm backend on a real Slurm cluster (tests/integration/slurm_cluster.py): the contract suite and more."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from expctl.backends.slurm.backend import SlurmBackend
from expctl.backends.slurm.script import EXIT_FILE
from expctl.core.errors import BackendUnavailable
from expctl.core.model import FailureClass, JobKind, Launch, ObservedRun, Phase, Resources
from tests.contract.backend_suite import BackendContract
from tests.support import jobs
from tests.support.factories import make_job, make_launch, make_spec
from tests.support.gitrepo import GitRepo
from tests.support.slurm_cluster import SlurmCluster

pytestmark = pytest.mark.integration

COMMANDS = {
    "succeed": ("sh", "-c", "exit 0"),
    "fail": ("sh", "-c", "exit 3"),
    "run": ("sleep", "60"),
    "infra": ("sh", "-c", "echo started; sleep 30"),
}


def wait_for(backend: SlurmBackend, name: str, until: Any, timeout: float = 60.0) -> ObservedRun:
    deadline = time.monotonic() + timeout
    while True:
        run = {r.name: r for r in backend.observe()}.get(name)
        if run is not None and until(run):
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} did not reach the expected state in {timeout}s: {run}")
        time.sleep(0.3)


def job_id(workdir: Path, name: str) -> int:
    return int(json.loads((workdir / "runs" / name / "record.json").read_text())["job_id"])


def squeue_job(cluster: SlurmCluster, workdir: Path, name: str) -> dict[str, Any]:
    """What Slurm shows of the job expctl recorded for ``name``."""
    wanted = job_id(workdir, name)
    jobs = [j for j in json.loads(cluster.run("squeue", "--json"))["jobs"] if j["job_id"] == wanted]
    assert len(jobs) == 1, jobs
    job: dict[str, Any] = jobs[0]
    return job


class SlurmDriver:
    def __init__(self, cluster: SlurmCluster, workdir: Path, repo: GitRepo) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.repo = repo

    def launch(self, outcome: str, attempt: int = 1, experiment: str = "contract", **job: Any) -> Launch:
        job.setdefault("command", COMMANDS.get(outcome, ("sh", "-c", outcome)))
        job.setdefault("kind", JobKind.LOCAL)
        job.setdefault("resources", Resources(cpu="1"))
        spec = make_spec(experiment, overrides=("lr=0.1",), job=make_job(**job), commit=self.repo.head)
        return make_launch(spec, attempt=attempt)

    def settle(self, launch: Launch, outcome: str) -> None:
        if outcome == "infra":  # the node's slurmd dies mid-run: Slurm fails the job with NODE_FAIL
            wait_for(self.reopen(), launch.name, lambda r: r.phase is Phase.RUNNING)
            task_log = self.workdir / "runs" / launch.name / "task-0.log"
            deadline = time.monotonic() + 30
            while "started" not in (task_log.read_text() if task_log.exists() else ""):  # the task runs now
                assert time.monotonic() < deadline, "the task never started"
                time.sleep(0.2)
            node = squeue_job(self.cluster, self.workdir, launch.name)["nodes"]
            os.kill(self.cluster.pid_of_slurmd(node), signal.SIGKILL)
            try:
                run = wait_for(self.reopen(), launch.name, lambda r: r.phase.finished, timeout=90)
                assert "NODE_FAIL" in run.message, run.message  # Slurm's verdict, not a vanished job
            finally:
                self.cluster.start_slurmd(node)
                self.cluster.wait_idle()
            return
        wait_for(self.reopen(), launch.name, lambda r: r.phase.finished)

    def reopen(self) -> SlurmBackend:
        return SlurmBackend(self.workdir, self.repo.path)


@pytest.fixture
def driver(slurm_cluster: SlurmCluster, tmp_path: Path, git_repo: GitRepo) -> SlurmDriver:
    return SlurmDriver(slurm_cluster, tmp_path / "shared", git_repo)


@pytest.fixture
def backend(driver: SlurmDriver) -> Iterator[SlurmBackend]:
    backend = driver.reopen()
    yield backend
    for run in backend.observe():  # never leave jobs behind on the session's cluster
        backend.delete(run.name)


class TestSlurmContract(BackendContract):
    pass


PRINT_ENV = ("python", str(jobs.path("print_job_env")))


def test_two_nodes_get_the_same_job_environment_as_elsewhere(backend: SlurmBackend, driver: SlurmDriver) -> None:
    launch = driver.launch("env", command=PRINT_ENV, kind=JobKind.PYTORCH, replicas=2,
                           env=(("GREETING", "hi"), ("MLFLOW_RUN_ID", "not-mine")),
                           resources=Resources(cpu="1", gpus=1))
    backend.create(launch)
    run = wait_for(backend, launch.name, lambda r: r.phase.finished)
    assert run.phase is Phase.SUCCEEDED, run.message
    master, worker = (json.loads(list(backend.logs(launch.name, r))[-1]) for r in ("master-0", "worker-0"))
    assert (master["RANK"], worker["RANK"]) == ("0", "1")
    assert master["WORLD_SIZE"] == worker["WORLD_SIZE"] == "2"
    assert master["LOCAL_RANK"] == worker["LOCAL_RANK"] == "0"
    assert master["MASTER_ADDR"] == worker["MASTER_ADDR"] == "127.0.0.1"
    assert master["MASTER_PORT"] == worker["MASTER_PORT"]
    assert (master["EXPCTL_REPLICA"], worker["EXPCTL_REPLICA"]) == ("master-0", "worker-0")
    assert master["MLFLOW_RUN_ID"] == launch.tracking.run_id  # expctl's identity wins over the job's env
    assert master["GREETING"] == "hi" and master["EXPCTL_GIT_COMMIT"] == launch.spec.commit
    assert master["CUDA_VISIBLE_DEVICES"] and worker["CUDA_VISIBLE_DEVICES"]  # Slurm allocated one GPU each
    both = list(backend.logs(launch.name))
    assert any(line.startswith("[master-0] ") for line in both) and any(line.startswith("[worker-0] ")
                                                                           for line in both)


def test_runs_at_the_pinned_commit_and_cleans_the_checkout(backend: SlurmBackend, driver: SlurmDriver,
                                                           git_repo: GitRepo) -> None:
    git_repo.write("marker.txt", "pinned\n")
    pinned = git_repo.commit("pinned")
    launch = driver.launch("cat marker.txt")
    git_repo.write("marker.txt", "dirty\n")
    backend.create(launch)
    run = wait_for(backend, launch.name, lambda r: r.phase.finished)
    assert run.phase is Phase.SUCCEEDED, run.message
    assert list(backend.logs(launch.name)) == ["pinned"]
    assert not (driver.workdir / "checkouts" / pinned).exists(), "checkout kept after its runs finished"


def test_finished_jobs_are_remembered_after_slurm_forgets_them(backend: SlurmBackend, driver: SlurmDriver) -> None:
    ok, bad = driver.launch("succeed", experiment="ok"), driver.launch("fail", experiment="bad")
    for launch in (ok, bad):
        backend.create(launch)
    # expctl was not watching while the jobs ended, and Slurm has forgotten them (MinJobAge passed): the
    # batch script's own exit record still tells how each ended.
    for launch in (ok, bad):
        deadline = time.monotonic() + 60
        while not (driver.workdir / "runs" / launch.name / "exit.json").exists():
            assert time.monotonic() < deadline
            time.sleep(0.3)
    slurm_forgot: list[dict[str, Any]] = []
    runs = {r.name: r for r in backend.observe_jobs(slurm_forgot)}
    assert runs[ok.name].phase is Phase.SUCCEEDED
    assert runs[bad.name].phase is Phase.FAILED and runs[bad.name].failure is FailureClass.CODE
    gone = driver.launch("run", experiment="gone")
    backend.create(gone)
    runs = {r.name: r for r in backend.observe_jobs(slurm_forgot)}
    assert runs[gone.name].phase is Phase.FAILED and runs[gone.name].failure is FailureClass.INFRASTRUCTURE
    assert "vanished" in runs[gone.name].message


def test_logs_follow_a_running_job_to_its_end(backend: SlurmBackend, driver: SlurmDriver) -> None:
    launch = driver.launch("for i in 1 2 3; do echo line $i; sleep 1; done")
    backend.create(launch)
    wait_for(backend, launch.name, lambda r: r.phase is not Phase.PENDING)
    assert list(backend.logs(launch.name, follow=True)) == ["line 1", "line 2", "line 3"]
    assert {r.name: r for r in backend.observe()}[launch.name].phase is Phase.SUCCEEDED


def test_a_refused_submission_leaves_no_record(backend: SlurmBackend, driver: SlurmDriver) -> None:
    from dataclasses import replace

    from expctl.core.errors import BackendError
    from expctl.core.model import Scheduling

    launch = driver.launch("succeed")
    job = replace(launch.spec.job, scheduling=Scheduling(partition="no-such-partition"))
    bad = replace(launch, spec=replace(launch.spec, job=job))
    with pytest.raises(BackendError, match="sbatch failed"):
        backend.create(bad)
    assert backend.observe() == [] and not (driver.workdir / "runs" / launch.name).exists()


LOST_ANSWER = """#!/bin/sh
# sbatch whose answer is lost: Slurm takes the job, then the controller dies before replying
"$REAL_SBATCH" "$@" > /dev/null || exit
echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2
exit 1
"""


def test_a_submission_whose_answer_was_lost_is_adopted_whole(backend: SlurmBackend, driver: SlurmDriver,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shim = tmp_path / "lost-answer" / "sbatch"
    shim.parent.mkdir()
    shim.write_text(LOST_ANSWER)
    shim.chmod(0o755)
    monkeypatch.setenv("REAL_SBATCH", str(shutil.which("sbatch")))
    path = os.environ["PATH"]
    monkeypatch.setenv("PATH", f"{shim.parent}{os.pathsep}{path}")
    launch = driver.launch("succeed")
    with pytest.raises(BackendUnavailable, match="Socket timed out"):
        backend.create(launch)
    monkeypatch.setenv("PATH", path)
    # whether Slurm took the job is unknown: its files stay (it may be running from them), the next apply adopts it
    assert (driver.workdir / "runs" / launch.name / "job.sh").exists()
    fresh = driver.reopen()
    fresh.observe()
    fresh.create(launch)
    run = wait_for(fresh, launch.name, lambda r: r.phase.finished)
    assert run.phase is Phase.SUCCEEDED, run.message
    run_dir = str(driver.workdir / "runs" / launch.name)
    jobs = json.loads(driver.cluster.run("squeue", "--json"))["jobs"]
    assert [j["job_id"] for j in jobs if j["current_working_directory"] == run_dir] == [
        job_id(driver.workdir, launch.name)]  # one job: adopted, not submitted again


def test_replace_under_the_same_name_right_after_delete(backend: SlurmBackend, driver: SlurmDriver) -> None:
    from dataclasses import replace

    first = driver.launch("run")
    backend.create(first)
    wait_for(backend, first.name, lambda r: r.phase is Phase.RUNNING)  # this process's listing shows it live
    backend.delete(first.name)
    job = replace(first.spec.job, command=COMMANDS["succeed"])
    second = replace(first, spec=replace(first.spec, spec_hash="1" * 20, job=job))
    backend.create(second)
    run = wait_for(backend, second.name, lambda r: r.phase.finished)
    assert run.phase is Phase.SUCCEEDED and run.spec_hash == "1" * 20, run


def test_a_job_that_failed_before_any_task_started_is_the_platforms_failure(backend: SlurmBackend,
                                                                            driver: SlurmDriver) -> None:
    launch = driver.launch("succeed")
    backend.create(launch)
    wait_for(backend, launch.name, lambda r: r.phase.finished)
    fresh = driver.reopen()
    record = driver.workdir / "runs" / launch.name / "record.json"
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "phase": None, "failure": None, "message": ""}))
    (driver.workdir / "runs" / launch.name / "task-0.log").unlink()
    # what squeue shows when srun could not launch the step (e.g. the node's slurmd died first)
    failed = {**squeue_job(driver.cluster, driver.workdir, launch.name), "job_state": "FAILED",
              "exit_code": 233 << 8, "state_reason": "NonZeroExitCode", "end_time": 1}
    (run,) = fresh.observe_jobs([failed])
    assert run.phase is Phase.FAILED and run.failure is FailureClass.INFRASTRUCTURE
    assert "no task started" in run.message


def test_a_job_id_handed_out_again_is_not_taken_for_the_run(backend: SlurmBackend, driver: SlurmDriver) -> None:
    """A controller that crashed before saving its state forgets the jobs it had just accepted and gives their
    ids to the next submissions: the run's job vanished (a failed attempt, retried), whatever has its id now."""
    launch = driver.launch("succeed")
    backend.create(launch)
    wait_for(backend, launch.name, lambda r: r.phase.finished)
    run_dir = driver.workdir / "runs" / launch.name
    data = json.loads((run_dir / "record.json").read_text())
    (run_dir / "record.json").write_text(json.dumps({**data, "phase": None, "failure": None, "message": ""}))
    (run_dir / EXIT_FILE).unlink()  # the forgotten job never ran
    reused = {**squeue_job(driver.cluster, driver.workdir, launch.name), "name": "someone-elses", "comment": "",
              "current_working_directory": "/tmp", "job_state": "RUNNING"}
    (run,) = driver.reopen().observe_jobs([reused])
    assert run.phase is Phase.FAILED and run.failure is FailureClass.INFRASTRUCTURE, run
    assert "vanished" in run.message


def test_a_vanished_job_whose_srun_started_no_task_is_the_platforms_failure(backend: SlurmBackend,
                                                                           driver: SlurmDriver) -> None:
    """A job that started while the controller was down: its batch script ran, srun could not start a step, and
    the script recorded srun's exit code; then the restarted controller forgot the job. No task log: the
    platform's failure (retried), not the code's — with a task log it stays the code's."""
    launch = driver.launch("exit 3")
    backend.create(launch)
    wait_for(backend, launch.name, lambda r: r.phase.finished)
    run_dir = driver.workdir / "runs" / launch.name
    data = json.loads((run_dir / "record.json").read_text())
    exit_record = json.loads((run_dir / EXIT_FILE).read_text())
    assert exit_record["returncode"] == 3
    ended = "Slurm job FAILED (exit code 3)"
    for task_log, failure, message in ((True, FailureClass.CODE, ended),
                                       (False, FailureClass.INFRASTRUCTURE, f"{ended}: no task started")):
        (run_dir / "record.json").write_text(json.dumps({**data, "phase": None, "failure": None, "message": ""}))
        if not task_log:
            (run_dir / "task-0.log").unlink()
        (run,) = driver.reopen().observe_jobs([])  # Slurm shows no job of it any more
        assert (run.phase, run.failure, run.message) == (Phase.FAILED, failure, message), run


@pytest.mark.parametrize("damage", ["{trunc", "[" * 50_000, '{"name": 3}', '["a list"]', "\udcff"])
def test_a_damaged_record_is_skipped_then_the_job_is_adopted_again(backend: SlurmBackend, driver: SlurmDriver,
                                                                  damage: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    launch = driver.launch("sleep 30")
    backend.create(launch)
    submitted = job_id(driver.workdir, launch.name)
    record = driver.workdir / "runs" / launch.name / "record.json"
    record.write_text(damage, errors="surrogateescape")
    fresh = driver.reopen()
    assert launch.name not in {r.name for r in fresh.observe()}  # skipped, the others keep working
    assert "damaged Slurm run record" in capsys.readouterr().err
    fresh.create(launch)  # what the next apply does: Slurm still shows the job under its name, so it is adopted
    assert job_id(driver.workdir, launch.name) == submitted
    (run,) = [r for r in fresh.observe() if r.name == launch.name]
    assert run.live and not run.phase.finished


def test_the_tracking_password_reaches_the_job_through_sbatchs_environment_only(
        backend: SlurmBackend, driver: SlurmDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    """The job's URI holds no password; the password expctl put in its own environment (``Workspace.
    hand_credentials``) reaches the job through ``sbatch`` (``--export=ALL``), and no file of the run holds it."""
    secret = "pw-" + "7" * 20
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", secret)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ci")
    base = driver.launch("creds", command=PRINT_ENV, kind=JobKind.PYTORCH)
    launch = replace(base, tracking=replace(base.tracking, tracking_uri=f"http://ci:{secret}@mlflow:5000"))
    backend.create(launch)
    run = wait_for(backend, launch.name, lambda r: r.phase.finished)
    assert run.phase is Phase.SUCCEEDED, run.message
    seen = json.loads(list(backend.logs(launch.name, "master-0"))[-1])
    assert seen["MLFLOW_TRACKING_URI"] == "http://mlflow:5000" and seen["MLFLOW_TRACKING_PASSWORD"] == secret
    run_dir = driver.workdir / "runs" / launch.name
    assert not [p for p in run_dir.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()
                and not p.name.startswith("task-")]  # only what the job itself printed
