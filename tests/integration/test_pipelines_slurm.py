"""Pipelines on a real Slurm cluster: a consumer is submitted in the same apply as its upstream, with
``--dependency=afterok``; Slurm holds it (reason ``Dependency``) and runs it once the upstream succeeded. A
failing upstream's consumer never runs and is reported as the upstream's failure. An apply killed between
submitting the upstream and its consumer converges on the next one with one job each."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support import e2e
from tests.support.mlflow_server import MlflowServer
from tests.support.slurm_cluster import SlurmCluster
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def quick(hold: Path, fail: bool = False, up: str = "") -> str:
    block = f"quick:\n  hold: {hold}\n" + ("  fail_first_attempts: 1\n" if fail else "")
    inputs = f"  inputs:\n    up: {{experiment: {up}}}\n" if up else ""
    return e2e.experiment(quick=True, expctl=inputs).replace("trainer:", f"{block}trainer:")


def our_jobs(cluster: SlurmCluster, workdir: Path) -> list[dict[str, Any]]:
    runs = str(workdir / "runs") + "/"
    return [j for j in json.loads(cluster.run("squeue", "--json"))["jobs"]
            if str(j.get("current_working_directory", "")).startswith(runs)]


def test_a_consumer_waits_in_slurm_for_its_upstream_and_never_runs_after_a_failed_one(
        slurm_cluster: SlurmCluster, mlflow_server: MlflowServer, tmp_path: Path) -> None:
    release = tmp_path / "release"
    repo = e2e.make_project(tmp_path / "repo", {
        "dep-pre": quick(release), "dep-fine": quick(release, up="dep-pre"),
        "dep-bad": quick(release, fail=True), "dep-badfine": quick(release, up="dep-bad")})
    workdir = tmp_path / "shared"
    repo.write("expctl.yaml", f"backend: slurm\ncode_paths: [training]\nslurm:\n  workdir: {workdir}\n")
    repo.commit("run on Slurm")
    uri = mlflow_server.uri
    try:
        # killed right after the first upstream was submitted: its consumer was not
        crashed = e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri, EXPCTL_TEST_CRASH_AT="after-create:1")
        assert crashed.returncode == -9, crashed.stdout + crashed.stderr
        done = e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri)
        assert done.returncode == 0, done.stdout + done.stderr
        lines = {c["experiment"]: c for c in e2e.plan_json(repo.path, uri)["changes"]}
        assert {e: lines[e]["action"] for e in lines} == dict.fromkeys(lines, "noop"), lines  # all submitted

        def reasons() -> dict[str, str]:
            return {j["name"].rsplit("-", 1)[0]: j["state_reason"] for j in our_jobs(slurm_cluster, workdir)}

        wait_until("Slurm to hold both consumers on their dependency",
                   lambda: reasons().get("dep-fine") == reasons().get("dep-badfine") == "Dependency")
        shown = e2e.expctl(repo.path, "status", "-o", "json", tracking_uri=uri)
        rows = {r["experiment"]: r for r in json.loads(shown.stdout)}
        assert rows["dep-fine"]["state"] == "Pending" and rows["dep-fine"]["reason"] == "Pending: Dependency"
    finally:
        release.write_text("go\n")
    waited = e2e.expctl(repo.path, "apply", "-y", "--wait", "--timeout", "300", tracking_uri=uri)
    assert "dep-badfine" not in waited.stderr, waited.stdout + waited.stderr
    # Slurm marks a dependency that can never be met on its next scheduling pass, after the upstream failed
    wait_until("Slurm to give up on the failed upstream's consumer", lambda: {
        j["state_reason"] for j in our_jobs(slurm_cluster, workdir) if j["name"].startswith("dep-badfine-")}
        == {"DependencyNeverSatisfied"})
    jobs = our_jobs(slurm_cluster, workdir)
    assert sorted(Counter(j["name"] for j in jobs).values()) == [1, 1, 1, 1], jobs  # nothing submitted twice
    states = {j["name"].rsplit("-", 1)[0]: (j["job_state"], j["state_reason"]) for j in jobs}
    try:
        assert states["dep-pre"][0] == states["dep-fine"][0] == "COMPLETED", states
        assert states["dep-bad"][0] == "FAILED" and states["dep-badfine"] in (
            ("PENDING", "DependencyNeverSatisfied"), ("CANCELLED", "DependencyNeverSatisfied")), states
        badfine = next(j["name"] for j in jobs if j["name"].startswith("dep-badfine-"))
        assert not (workdir / "runs" / badfine / "task-0.log").exists()  # it never ran
        lines = {c["experiment"]: c for c in e2e.plan_json(repo.path, uri)["changes"]}
        assert (lines["dep-badfine"]["action"], lines["dep-badfine"]["reason"]) == ("blocked", "upstream-failed")
        assert lines["dep-badfine"]["detail"].startswith("upstream dep-bad-"), lines["dep-badfine"]
        (pre,), (fine,) = e2e.mlflow_runs(uri, ["dep-pre"]), e2e.mlflow_runs(uri, ["dep-fine"])
        assert fine.data.tags["expctl.input.up.uri"] == f"runs:/{pre.info.run_id}"
        assert fine.info.status == "FINISHED"
    finally:  # the consumer Slurm will never start leaves the shared cluster's queue
        stuck = [str(j["job_id"]) for j in our_jobs(slurm_cluster, workdir) if j["job_state"] == "PENDING"]
        if stuck:
            slurm_cluster.run("scancel", *stuck)
