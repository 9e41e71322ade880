"""The Slurm controller dies in the middle of an apply, on a real Slurm cluster of the test's own.

A sweep of trivial runs is applied on the slurm backend with ``write_concurrency: 2``; once a few changes are
reported done, slurmctld is stopped — by SIGTERM (an orderly stop: it saves its state) or by SIGKILL (a crash:
the jobs submitted in its last seconds may be lost, and their ids handed out again). The apply stops starting
changes: the ones in flight fail with one line each, the audit record is completed, what was not applied is
listed, exit 3, no traceback. slurmctld is started again on the same configuration and state directory, and
reapplying converges: one Slurm job and one MLflow run per (run key, attempt) — a job Slurm lost is a failed
attempt (infrastructure) that is retried, never mistaken for the job that now has its id — and
``expctl history`` lists every created run exactly once.

The controller is the test's own (``private_slurm_cluster``): the session's cluster is never stopped.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support import e2e
from tests.support.gitrepo import GitRepo
from tests.support.mlflow_server import MlflowServer
from tests.support.slurm_cluster import SlurmCluster

pytestmark = pytest.mark.integration

POINTS = 30


def records(workdir: Path) -> dict[str, dict[str, Any]]:
    """expctl's record of each Slurm job it submitted, by run name."""
    return {p.parent.name: json.loads(p.read_text()) for p in (workdir / "runs").glob("*/record.json")}


def slurm_jobs(cluster: SlurmCluster, workdir: Path) -> Counter[str]:
    """How many jobs Slurm shows under each run name of this workdir (ended ones stay for MinJobAge)."""
    runs = str(workdir / "runs") + "/"
    jobs: list[dict[str, Any]] = json.loads(cluster.run("squeue", "--json"))["jobs"]
    return Counter(j["name"] for j in jobs if str(j.get("current_working_directory", "")).startswith(runs))


def squeue_state(cluster: SlurmCluster, job_id: int) -> str:
    jobs = json.loads(cluster.run("squeue", "--json"))["jobs"]
    return str(next(j["job_state"] for j in jobs if j["job_id"] == job_id))


def converge(repo: GitRepo, cluster: SlurmCluster, uri: str) -> None:
    """Reapply until the plan is empty (a job Slurm lost in a crash is found failed — vanished — and retried)."""
    for _ in range(3):
        applied = e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri, **cluster.env)
        assert applied.returncode == 0 and "Traceback" not in applied.stderr, applied.stdout + applied.stderr
        again = e2e.expctl(repo.path, "plan", "--detailed-exitcode", tracking_uri=uri, **cluster.env)
        if again.returncode == 0:
            return
        assert again.returncode == 2 and "to retry" in again.stdout, again.stdout + again.stderr
    raise AssertionError(f"not converged:\n{again.stdout}")


def apply_until_stopped(repo: GitRepo, cluster: SlurmCluster, uri: str, after_done: int,
                        signum: int) -> subprocess.CompletedProcess[str]:
    """Start an apply; stop slurmctld with ``signum`` once ``after_done`` changes were reported done."""
    proc = e2e.start_expctl(repo.path, "apply", "-y", tracking_uri=uri, **cluster.env)
    assert proc.stderr is not None
    seen: list[str] = []
    for line in proc.stderr:  # to its end: lines read ahead into the buffer would be lost to communicate()
        seen.append(line)
        if line.rstrip().endswith(": done") and sum(s.rstrip().endswith(": done") for s in seen) == after_done:
            cluster.stop_controller(signum)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "".join(seen) + err)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_controller_dies_mid_apply_then_rerun_converges(private_slurm_cluster: SlurmCluster,
                                                        mlflow_server: MlflowServer, tmp_path: Path,
                                                        signum: int) -> None:
    cluster, uri = private_slurm_cluster, mlflow_server.uri
    name = f"ctld-death-{signal.Signals(signum).name.lower()}"  # the MLflow server is the session's
    workdir = tmp_path / "shared"
    repo = e2e.make_project(tmp_path / "repo", {name: e2e.experiment(
        sweep={"seed": f"range(0,{POINTS})"},
        expctl="  command: [python, -c, pass]\n  retries: {backoff_seconds: 0}\n")})
    repo.write("expctl.yaml", f"backend: slurm\ncode_paths: [training]\nslurm:\n  workdir: {workdir}\n"
                              "  write_concurrency: 2\n")
    repo.commit("run on Slurm, two changes at a time")

    stopped = apply_until_stopped(repo, cluster, uri, 4, signum)
    out, err = stopped.stdout, stopped.stderr
    done = sum(ln.endswith(": done") for ln in err.splitlines())  # the changes in flight at the kill may finish
    assert stopped.returncode == 3, f"{out}\n{err}"
    assert "Traceback" not in err and "Traceback" not in out
    failed = [ln for ln in err.splitlines() if ln.startswith("error: ") and not ln.startswith("error: apply")]
    assert 1 <= len(failed) <= 2, err  # the changes in flight (write_concurrency 2), one line each
    assert all(len(ln) < 400 and "controller" in ln.lower() for ln in failed), err
    not_applied = [ln for ln in err.splitlines() if ln.startswith("not applied: ")]
    assert "error: apply stopped: the slurm backend is unreachable" in err, err
    summary = [ln for ln in out.splitlines() if ln.startswith("Applied ")]
    assert summary == [f"Applied {done} changes, {len(failed)} failed, {len(not_applied)} not applied."], out
    assert done >= 4 and done + len(failed) + len(not_applied) == POINTS and not_applied, err
    assert len(records(workdir)) < POINTS

    cluster.start_controller()
    # someone else's job, submitted first: after a crash it gets the id of a job the controller forgot
    foreign = int(cluster.run("sbatch", "--parsable", f"--chdir={tmp_path}", "--output=/dev/null",
                              "--wrap", "sleep 120").strip().split(";")[0])
    try:
        converge(repo, cluster, uri)
        assert squeue_state(cluster, foreign) in ("PENDING", "RUNNING")  # never cancelled as expctl's
    finally:
        cluster.run("scancel", str(foreign))
    recorded = records(workdir)
    per_attempt = Counter((r["run_key"], str(r["attempt"])) for r in recorded.values())
    assert len({key for key, _ in per_attempt}) == POINTS and set(per_attempt.values()) == {1}, per_attempt
    jobs = slurm_jobs(cluster, workdir)
    assert set(jobs.values()) == {1} and set(jobs) <= set(recorded), jobs  # never a second job for one attempt
    # every attempt not failed is its own Slurm job: none was taken for the job that reuses a forgotten id
    assert {n for n, r in recorded.items() if r["phase"] != "Failed"} <= set(jobs), (jobs, recorded)
    lost = {n: r for n, r in recorded.items() if n not in jobs}
    # a job Slurm lost in the crash is found vanished; one that started while the controller was down (more
    # likely on a loaded machine) ran its batch script, whose srun could not start a task: both the platform's
    assert all(r["phase"] == "Failed" and r["failure"] == "infrastructure"
               and ("vanished" in r["message"] or "no task started" in r["message"]) for r in lost.values()), lost
    if signum == signal.SIGTERM:  # an orderly stop loses nothing: every attempt's job is still known, no retry
        assert not lost and all(r["attempt"] == 1 for r in recorded.values()), recorded
    runs = e2e.mlflow_runs(uri, [name], deleted_too=True)
    assert e2e.attempts_per_key(runs) == per_attempt
    history = e2e.expctl(repo.path, "history", "--experiment", name, "--limit", "1000", "-o", "json",
                         tracking_uri=uri, **cluster.env)
    assert Counter(e["run"] for e in json.loads(history.stdout)) == Counter(list(recorded)), history.stdout
