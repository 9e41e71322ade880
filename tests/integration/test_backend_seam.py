"""The backend seam seen from the CLI: a kind the selected backend cannot run, an unknown backend, Slurm
teams — one line naming file and key, exit 1, nothing written (real git, a real ``expctl`` process)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.gitrepo import GitRepo

pytestmark = pytest.mark.integration

BASE = "defaults:\n  - config\n  - _self_\n"
CASES: list[tuple[str, dict[str, str], list[str], str]] = [
    ("kind the backend cannot run", {"experiments/e.yaml": BASE + "expctl:\n  kind: local\n"},
     ["--backend", "kubernetes"],
     "experiments/e.yaml: expctl.kind: kind 'local' does not run on the kubernetes backend (it runs MPIJob, "
     "PyTorchJob, TFJob, TrainJob)"),
    ("TrainJob on slurm", {"experiments/e.yaml": BASE + "expctl:\n  kind: TrainJob\n"}, ["--backend", "slurm"],
     "experiments/e.yaml: expctl.kind: kind 'TrainJob' does not run on the slurm backend (it runs PyTorchJob, "
     "local)"),
    ("local kind on kubernetes from expctl.yaml",
     {"expctl.yaml": "backend: kubernetes\n", "experiments/e.yaml": BASE + "expctl:\n  kind: local\n"}, [],
     "experiments/e.yaml: expctl.kind: kind 'local' does not run on the kubernetes backend"),
    ("unknown backend in expctl.yaml", {"expctl.yaml": "backend: slrum\n"}, [],
     "expctl.yaml: backend: input should be 'local', 'kubernetes' or 'slurm' (got 'slrum')"),
    ("account of another team",
     {"expctl.yaml": "teams:\n  - {name: a, paths: [experiments], slurm: {account: team-a}}\n",
      "experiments/team-a/e.yaml": BASE + "expctl:\n  slurm:\n    account: team-b\n"}, [],
     "experiments/team-a/e.yaml: expctl.slurm.account: account 'team-b' is not team a's account 'team-a'"),
]


def run_expctl(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if k not in ("EXPCTL_BACKEND", "MLFLOW_TRACKING_URI")},
           **(env or {})}
    return subprocess.run([sys.executable, "-m", "expctl", *args], cwd=repo, capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if ".git" not in p.parts)


@pytest.mark.parametrize(("files", "args", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_before_any_write(make_repo: Callable[[dict[str, str]], GitRepo], files: dict[str, str],
                                  args: list[str], expected: str) -> None:
    repo = make_repo({"experiments/good.yaml": BASE, **files})
    before = listing(repo.path)
    for command in (["validate"], ["apply", "-y"]):
        proc = run_expctl(repo.path, *command, *args)
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert lines == [f"error: {expected}"] or (len(lines) == 1 and expected in lines[0]), lines
    assert listing(repo.path) == before


def test_slurm_needs_a_shared_workdir(make_repo: Callable[[dict[str, str]], GitRepo]) -> None:
    repo = make_repo({"experiments/good.yaml": BASE, "expctl.yaml": "backend: slurm\n"})
    proc = run_expctl(repo.path, "plan")
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("error: expctl.yaml: slurm.workdir: required for the slurm backend: a directory "
                                   "every Slurm node mounts")


def test_backend_choices_come_from_the_registry(make_repo: Callable[[dict[str, str]], GitRepo]) -> None:
    repo = make_repo({"experiments/good.yaml": BASE})
    proc = run_expctl(repo.path, "plan", "--backend", "nomad")
    assert proc.returncode == 2 and "'local', 'kubernetes', 'slurm'" in proc.stderr
    assert "valid." in run_expctl(repo.path, "validate", "--backend", "kubernetes").stdout


def test_render_shows_what_the_selected_backend_would_submit(make_repo: Callable[[dict[str, str]], GitRepo],
                                                               tmp_path: Path) -> None:
    two = BASE + "expctl:\n  replicas: 2\n  resources: {gpus: 1}\n"
    repo = make_repo({"experiments/two.yaml": two,
                      "expctl.yaml": f"slurm:\n  workdir: {tmp_path / 'shared'}\n  account: ml\n"})
    slurm = run_expctl(repo.path, "render", "--backend", "slurm")
    assert slurm.returncode == 0, slurm.stderr
    assert "--nodes=2" in slurm.stdout and "--gres=gpu:1" in slurm.stdout and "--account=ml" in slurm.stdout
    assert slurm.stdout.count("#!/bin/bash") == 1 and "srun " in slurm.stdout
    kube = run_expctl(repo.path, "render")  # the local backend submits nothing: Kubernetes manifests
    assert kube.returncode == 0 and "kind: PyTorchJob" in kube.stdout
    local = run_expctl(repo.path, "render", "--backend", "local")
    assert local.returncode == 1 and "runs nothing that can be rendered" in local.stderr
    assert not (tmp_path / "shared").exists(), "render wrote to the shared workdir"


def test_render_gives_the_jobs_the_tracking_uri_apply_would(make_repo: Callable[[dict[str, str]], GitRepo],
                                                            tmp_path: Path) -> None:
    """MLFLOW_TRACKING_URI wins over expctl.yaml's ``tracking_uri`` in render as in apply, without its password."""
    repo = make_repo({"experiments/good.yaml": BASE,
                      "expctl.yaml": f"tracking_uri: http://yaml-mlflow:5000\nslurm:\n  workdir: {tmp_path}\n"})
    assert "value: http://yaml-mlflow:5000" in run_expctl(repo.path, "render").stdout
    env = {"MLFLOW_TRACKING_URI": "http://ml:hunter2@env-mlflow:5000"}
    for backend, shown in (("kubernetes", "value: http://env-mlflow:5000"),
                           ("slurm", "MLFLOW_TRACKING_URI=http://env-mlflow:5000")):
        proc = run_expctl(repo.path, "render", "--backend", backend, env=env)
        assert proc.returncode == 0, proc.stderr
        assert shown in proc.stdout and "yaml-mlflow" not in proc.stdout
        assert "hunter2" not in proc.stdout + proc.stderr
    bad = run_expctl(repo.path, "render", env={"MLFLOW_TRACKING_URI": "http://[::1"})
    assert bad.returncode == 1 and bad.stderr.startswith("error: MLFLOW_TRACKING_URI") and len(
        bad.stderr.splitlines()) == 1, bad.stderr
