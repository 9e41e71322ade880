"""Nothing persisted changes between releases, on Kubernetes: the previous release's jobs (labels, annotations)
and MLflow runs are a no-op plan for this release, running or finished.

The previous release (``tests/support/previous_release.py``) applies a sweep of PyTorchJobs and a TrainJob to a
real kube-apiserver (embedded MLflow store); the test plays the operator (one job succeeds, one fails for good,
the others run); this release's ``plan`` then has nothing to do and ``status`` shows the same jobs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from expctl.core.model import JobKind
from tests.support import e2e
from tests.support.gitrepo import GitRepo
from tests.support.kube_cluster import Cluster
from tests.support.kube_driver import conditions, patch_status
from tests.support.kube_project import SELECTOR, list_jobs
from tests.support.previous_release import previous_release, run_previous

pytestmark = pytest.mark.kube

CONFIG = "seed: 0\noptimizer:\n  lr: 0.1\nexpctl:\n  image: python:3.11-slim\n  command: [python, -m, train]\n"
SWEEP = ("defaults:\n  - config\n  - _self_\nhydra:\n  sweeper:\n    params:\n      optimizer.lr: 0.1,0.2,0.3\n"
         "expctl:\n  kind: PyTorchJob\n  replicas: 2\n  retries: {max_attempts: 1}\n")
TRAINJOB = "defaults:\n  - config\n  - _self_\nexpctl:\n  kind: TrainJob\n  resources: {gpus: 1}\n"


def test_jobs_the_previous_release_applied_are_a_no_op_plan(tmp_path: Path, kube_cluster: Cluster,
                                                          namespace: str) -> None:
    old_src = previous_release(tmp_path / "previous-release")
    repo = GitRepo(tmp_path / "repo")
    for rel, text in {
        ".gitignore": ".expctl/\n",
        "expctl.yaml": (f"backend: kubernetes\ncode_paths: [train]\nkubernetes:\n  namespace: {namespace}\n"
                        "  repo_url: https://git.example.com/team/repo.git\n"),
        "train/__main__.py": "print('training')\n",
        "conf/config.yaml": CONFIG,
        "experiments/sweep.yaml": SWEEP,
        "experiments/single.yaml": TRAINJOB,
    }.items():
        repo.write(rel, text)
    repo.commit("kube examples")
    env = {"KUBECONFIG": str(kube_cluster.kubeconfig)}

    applied = run_previous(old_src, repo.path, "apply", "-y", **env)
    assert applied.returncode == 0, applied.stderr
    listed = run_previous(old_src, repo.path, "status", "-o", "json", **env)
    assert listed.returncode == 0, listed.stderr
    old_rows = {r["run"]: r for r in json.loads(listed.stdout)}
    assert len(old_rows) == 4
    sweep = sorted(name for name, r in old_rows.items() if r["experiment"] == "sweep")
    patch_status(kube_cluster, namespace, JobKind.PYTORCH, sweep[0], conditions("PyTorchJob", "succeed"))
    patch_status(kube_cluster, namespace, JobKind.PYTORCH, sweep[1], conditions("PyTorchJob", "fail"))

    # the previous release ran the git-sync script inline: this release mounts it from a ConfigMap, and the
    # jobs it did not render that way are not changed for that (the spec hash is the run's, not the manifest's)
    inline = [job for job in list_jobs(kube_cluster, SELECTOR, namespace) if job["kind"] == "PyTorchJob"]
    assert len(inline) == 3 and all(
        role["template"]["spec"]["initContainers"][0]["command"][:2] == ["sh", "-c"]
        for job in inline for role in job["spec"]["pytorchReplicaSpecs"].values())
    plan = e2e.expctl(repo.path, "plan", "--detailed-exitcode", **env)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "No changes. (3 unchanged, 1 gave up)" in plan.stdout, plan.stdout
    status = e2e.expctl(repo.path, "status", "-o", "json", **env)
    assert status.returncode == 0, status.stderr
    rows = {r["run"]: r for r in json.loads(status.stdout)}
    assert sorted(rows) == sorted(old_rows)
    assert {rows[sweep[0]]["state"], rows[sweep[1]]["state"]} == {"Succeeded", "Failed"}
    assert {k: (r["mlflow_run"], r["kind"], r["attempt"]) for k, r in rows.items()} == {
        k: (r["mlflow_run"], r["kind"], r["attempt"]) for k, r in old_rows.items()}
    applied = e2e.expctl(repo.path, "apply", "-y", **env)  # nor replaced by this release's apply
    assert applied.returncode == 0 and "No changes." in applied.stdout, applied.stdout + applied.stderr
    assert {j["metadata"]["uid"] for j in list_jobs(kube_cluster, SELECTOR, namespace)} >= {
        j["metadata"]["uid"] for j in inline}
