"""End to end on a real Slurm cluster: real ``expctl`` processes, a real git repository, a real MLflow server.

The project's own examples run with ``--backend slurm --wait`` (the 2-replica one on two nodes over gloo);
a GPU-hungry run waits for GPUs with Slurm's reason in ``expctl status``; failures are retried by policy;
``expctl cancel`` is not undone by ``apply``; ``--prune`` leaves jobs expctl did not submit alone; SIGKILL of
expctl around ``sbatch`` never yields a second job.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import e2e, jobs
from tests.support.gitrepo import GitRepo
from tests.support.mlflow_server import MlflowServer
from tests.support.slurm_cluster import SlurmCluster

pytestmark = pytest.mark.integration


def use_slurm(repo: GitRepo, workdir: Path, more: str = "") -> str:
    repo.write("expctl.yaml", f"backend: slurm\ncode_paths: [training]\nslurm:\n  workdir: {workdir}\n{more}")
    return repo.commit("run on Slurm")


def slurm_jobs(cluster: SlurmCluster, workdir: Path) -> list[dict[str, Any]]:
    """Every job Slurm shows that was submitted from this test's workdir."""
    runs = str(workdir / "runs") + "/"
    jobs: list[dict[str, Any]] = json.loads(cluster.run("squeue", "--json"))["jobs"]
    return [j for j in jobs if str(j.get("current_working_directory", "")).startswith(runs)]


def status(repo: GitRepo, uri: str, *args: str) -> list[dict[str, Any]]:
    proc = e2e.expctl(repo.path, "status", "-o", "json", *args, tracking_uri=uri)
    assert proc.returncode == 0, proc.stderr
    rows: list[dict[str, Any]] = json.loads(proc.stdout)
    return rows


def wait_until(what: str, check: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.mark.timeout(900)
def test_the_projects_examples_run_on_slurm_and_are_tracked(slurm_cluster: SlurmCluster, mlflow_server: MlflowServer,
                                                             tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.copy_examples()
    repo.write(".gitignore", ".expctl/\n__pycache__/\n")
    repo.write("conf/trainer/quick.yaml", "epochs: 1\nbatch_size: 64\nfail_first_attempts: 0\n")  # CI time
    workdir = tmp_path / "shared"
    use_slurm(repo, workdir)
    names = sorted(p.stem for p in (repo.path / "experiments").glob("*.yaml"))
    assert {"baseline", "distributed", "lr-sweep"} <= set(names)

    proc = e2e.expctl(repo.path, "apply", "-y", "--backend", "slurm", "--wait", tracking_uri=mlflow_server.uri,
                      timeout=840)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = status(repo, mlflow_server.uri)
    assert rows and {r["state"] for r in rows} == {"Succeeded"}, rows
    assert proc.stdout.rstrip().splitlines()[-1] == f"Finished: {len(rows)} succeeded."

    runs = e2e.mlflow_runs(mlflow_server.uri, names)
    assert len(runs) == len(rows) and all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags["expctl.backend"] == "slurm" and "val_accuracy" in r.data.metrics for r in runs)
    assert set(e2e.attempts_per_key(runs).values()) == {1}

    # the 2-replica example: one Slurm job on both nodes, torch.distributed over gloo, one MLflow run
    (dist,) = [r for r in rows if r["experiment"] == "distributed"]
    (job,) = [j for j in slurm_jobs(slurm_cluster, workdir) if j["name"] == dist["run"]]
    assert job["node_count"] == 2 and job["nodes"] == "n[1-2]" and job["job_state"] == "COMPLETED"
    task_logs = [(workdir / "runs" / dist["run"] / f"task-{i}.log").read_text() for i in (0, 1)]
    assert "rank 0/2" in task_logs[0] and "rank 1/2" in task_logs[1]
    (dist_run,) = [r for r in runs if r.data.tags["expctl.experiment"] == "distributed"]
    assert dist_run.info.run_id == dist["mlflow_run"]
    assert {"rank_0_train_samples", "rank_1_train_samples"} <= set(dist_run.data.metrics)  # both ranks, one run


def test_a_run_waits_for_gpus_then_gets_them(slurm_cluster: SlurmCluster, mlflow_server: MlflowServer,
                                             tmp_path: Path) -> None:
    hog = e2e.experiment(expctl="  replicas: 2\n  resources: {cpu: '1', gpus: 2}\n"
                                "  command: [python, -m, training.show_gpus]\n")
    release = tmp_path / "release-the-gpus"
    hog = hog.replace("trainer:", f"quick:\n  hold: {release}\ntrainer:")
    repo = e2e.make_project(tmp_path / "repo", {"hog": hog})
    repo.write("training/show_gpus.py", jobs.source("show_gpus"))
    workdir = tmp_path / "shared"
    use_slurm(repo, workdir)
    uri = mlflow_server.uri
    try:
        assert e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri).returncode == 0
        wait_until("the hog to hold every GPU", lambda: status(repo, uri)[0]["state"] == "Running")

        waiter = e2e.experiment(expctl="  resources: {cpu: '1', gpus: 2}\n"
                                       "  command: [python, -m, training.show_gpus]\n")
        repo.write("experiments/waiter.yaml", waiter)
        repo.commit("a run that wants two GPUs")
        assert e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri).returncode == 0
        reasons = ("Pending: Resources", "Pending: Priority")  # once Slurm's scheduler has looked at it

        def waiter_row() -> dict[str, Any]:
            return next(r for r in status(repo, uri) if r["experiment"] == "waiter")

        wait_until("Slurm's reason for the waiter", lambda: waiter_row()["reason"] in reasons, timeout=30)
        row = waiter_row()
        assert row["state"] == "Pending" and row["gpus"] == 2 and row["reason"] in reasons, row
        table = e2e.expctl(repo.path, "status", "--experiment", "waiter", tracking_uri=uri).stdout
        assert "Pending" in table and row["reason"] in table
    finally:
        release.write_text("done\n")  # the hog ends: the waiter gets the GPUs
    done = e2e.expctl(repo.path, "apply", "-y", "--wait", tracking_uri=uri, timeout=300)
    assert done.returncode == 0 and "Finished: 2 succeeded." in done.stdout, done.stdout + done.stderr
    logs = e2e.expctl(repo.path, "logs", row["run"], tracking_uri=uri).stdout.split()
    assert logs[:1] == ["gpus"] and len(logs[1].split(",")) == 2, logs  # CUDA_VISIBLE_DEVICES: two GPUs
    hog_logs = e2e.expctl(repo.path, "logs", status(repo, uri, "--experiment", "hog")[0]["run"],
                          tracking_uri=uri).stdout
    assert "[master-0] gpus" in hog_logs and "[worker-0] gpus" in hog_logs


def test_failed_runs_are_retried_and_cancelled_runs_are_not(slurm_cluster: SlurmCluster,
                                                            mlflow_server: MlflowServer, tmp_path: Path) -> None:
    retry = "  retries: {failures: [code], max_attempts: 2, backoff_seconds: 0}\n"
    repo = e2e.make_project(tmp_path / "repo", {
        "flaky": e2e.experiment(quick=True, expctl=retry).replace("trainer:", "quick:\n  fail_first_attempts: 1\n"
                                                                  "trainer:"),
        "sleepy": e2e.experiment(quick=True).replace("trainer:", "quick:\n  sleep: 60\ntrainer:"),
    })
    workdir = tmp_path / "shared"
    use_slurm(repo, workdir)
    uri = mlflow_server.uri
    assert e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri).returncode == 0
    sleepy = next(r for r in status(repo, uri) if r["experiment"] == "sleepy")
    wait_until("sleepy to run", lambda: next(r for r in status(repo, uri)
                                             if r["experiment"] == "sleepy")["state"] == "Running")
    cancelled = e2e.expctl(repo.path, "cancel", sleepy["run"], tracking_uri=uri)
    assert cancelled.returncode == 0 and f"cancelled {sleepy['run']}" in cancelled.stdout, cancelled.stderr

    done = e2e.expctl(repo.path, "apply", "-y", "--wait", tracking_uri=uri, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {r["run"]: r for r in status(repo, uri)}
    flaky = sorted((r for r in rows.values() if r["experiment"] == "flaky"), key=lambda r: r["attempt"])
    assert [(r["attempt"], r["state"]) for r in flaky] == [(1, "Failed"), (2, "Succeeded")]
    assert flaky[1]["run"] == flaky[0]["run"] + "-r2"
    described = e2e.expctl(repo.path, "describe", flaky[1]["run"], "-o", "json", tracking_uri=uri)
    info = json.loads(described.stdout)
    assert info["backend"] == "slurm" and [(a["state"], a["failure"]) for a in info["attempts"]] == [
        ("Failed", "code"), ("Succeeded", None)]
    assert [r["state"] for r in rows.values() if r["experiment"] == "sleepy"] == ["Cancelled"]
    jobs = Counter((j["name"], j["job_state"]) for j in slurm_jobs(slurm_cluster, workdir))
    assert jobs[(sleepy["run"], "CANCELLED")] == 1 and sum(n for (name, _), n in jobs.items()
                                                           if name == sleepy["run"]) == 1
    assert not e2e.writes(e2e.plan_json(repo.path, uri)), "a cancelled or finished run would be relaunched"


def test_prune_only_touches_jobs_expctl_submitted(slurm_cluster: SlurmCluster, mlflow_server: MlflowServer,
                                                  tmp_path: Path) -> None:
    repo = e2e.make_project(tmp_path / "repo", {"doomed": e2e.experiment(quick=True).replace(
        "trainer:", "quick:\n  sleep: 60\ntrainer:")})
    workdir = tmp_path / "shared"
    use_slurm(repo, workdir, "  partition: main\n  account: ml\n")  # the project's Slurm placement
    uri = mlflow_server.uri
    assert e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri).returncode == 0
    (ours,) = status(repo, uri)
    # someone else's job, under the very same name
    foreign = int(slurm_cluster.run("sbatch", "--parsable", f"--job-name={ours['run']}", "--wrap", "sleep 60",
                                    f"--output={tmp_path}/foreign.log").strip().split(";")[0])
    try:
        repo.remove("experiments/doomed.yaml")
        repo.write("experiments/other.yaml", e2e.experiment(quick=True))
        repo.commit("doomed is gone")
        pruned = e2e.expctl(repo.path, "apply", "-y", "--prune", tracking_uri=uri)
        assert pruned.returncode == 0, pruned.stdout + pruned.stderr
        states = {j["job_id"]: j["job_state"] for j in json.loads(slurm_cluster.run("squeue", "--json"))["jobs"]}
        assert states[foreign] in ("RUNNING", "PENDING")
        assert all(r["experiment"] != "doomed" for r in status(repo, uri))
        (doomed,) = [j for j in slurm_jobs(slurm_cluster, workdir) if j["name"] == ours["run"]]
        assert doomed["job_state"] == "CANCELLED"
        assert (doomed["partition"], doomed["account"]) == ("main", "ml")
    finally:
        subprocess.run(["scancel", str(foreign)], check=False, timeout=60)


@pytest.mark.parametrize("point", ["before-sbatch:1", "after-sbatch:1"])
def test_sigkill_around_sbatch_never_yields_a_second_job(slurm_cluster: SlurmCluster, mlflow_server: MlflowServer,
                                                         tmp_path: Path, point: str) -> None:
    name = f"crash-{point.split('-', maxsplit=1)[0]}"  # the MLflow server is the session's: one experiment per case
    repo = e2e.make_project(tmp_path / "repo", {name: e2e.experiment(quick=True, sweep={"seed": "1,2"})})
    workdir = tmp_path / "shared"
    use_slurm(repo, workdir)
    uri = mlflow_server.uri
    crashed = e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri, EXPCTL_TEST_CRASH_AT=point)
    assert crashed.returncode == -9, crashed.stdout + crashed.stderr
    done = e2e.expctl(repo.path, "apply", "-y", "--wait", tracking_uri=uri, timeout=300)
    assert done.returncode == 0 and "Finished: 2 succeeded." in done.stdout, done.stdout + done.stderr
    jobs = Counter(j["name"] for j in slurm_jobs(slurm_cluster, workdir))
    assert sorted(jobs.values()) == [1, 1], jobs
    assert set(e2e.attempts_per_key(e2e.mlflow_runs(uri, [name], deleted_too=True)).values()) == {1}


@pytest.mark.timeout(900)
def test_two_concurrent_applies_of_200_runs_submit_each_once(slurm_cluster: SlurmCluster,
                                                             mlflow_server: MlflowServer, tmp_path: Path) -> None:
    points, name = 200, "concurrent-200"
    repo = e2e.make_project(tmp_path / "repo", {name: e2e.experiment(
        sweep={"seed": f"range(0,{points})"}, expctl="  command: [python, -c, pass]\n")})
    workdir = tmp_path / "shared"
    use_slurm(repo, workdir)
    uri = mlflow_server.uri
    procs = [e2e.start_expctl(repo.path, "apply", "-y", tracking_uri=uri) for _ in range(2)]
    outputs = [p.communicate(timeout=800) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, f"{out}\n{err}"
    # the workdir's file lock serialises them: one applies every run, the other finds nothing left to do
    assert sorted(f"Applied {points} changes." in out for out, _ in outputs) == [False, True], outputs
    submitted = Counter(j["name"] for j in slurm_jobs(slurm_cluster, workdir))  # squeue keeps ended jobs 300 s
    assert len(submitted) == points and set(submitted.values()) == {1}, submitted
    records = [json.loads(p.read_text()) for p in (workdir / "runs").glob("*/record.json")]
    assert len(records) == points
    runs = e2e.mlflow_runs(uri, [name], deleted_too=True)
    assert len(runs) == points and set(e2e.attempts_per_key(runs).values()) == {1}
    history = e2e.expctl(repo.path, "history", "--experiment", name, "--limit", "1000", "-o", "json",
                         tracking_uri=uri)
    assert Counter(e["run"] for e in json.loads(history.stdout)) == Counter(submitted)
