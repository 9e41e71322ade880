"""Helpers of the end-to-end tests: a project in a real git repository, real ``expctl`` processes, MLflow reads.

The project is this repository's own ``conf/`` and ``training/`` plus experiments the test writes. Runs that
only need to end (crash, lock and audit tests) use ``training/quick.py``: standard library only, so a job
takes a fraction of a second instead of importing torch and MLflow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tests.support import jobs
from tests.support.gitrepo import ROOT, GitRepo

ADA = "Ada Lovelace <ada@example.com>"
BOB = "Bob Builder <bob@example.com>"


def experiment(*, sweep: dict[str, str] | None = None, quick: bool = False, fail_first_attempts: int = 0,
               expctl: str = "") -> str:
    """An experiment file on top of conf/config.yaml: tiny training (1 epoch, 200 samples) or the quick job."""
    text = (f"defaults:\n  - config\n  - _self_\ntrainer:\n  epochs: 1\n  fail_first_attempts: {fail_first_attempts}\n"
            "dataset:\n  n_samples: 200\n")
    if sweep:
        text += "hydra:\n  sweeper:\n    params:\n" + "".join(f"      {k}: {v}\n" for k, v in sweep.items())
    block = ("  command: [python, -m, training.quick]\n" if quick else "") + expctl
    if block:
        text += "expctl:\n" + block
    return text


def make_project(path: Path, experiments: dict[str, str], parallelism: int = 2,
                 author: str = ADA, settings: str = "") -> GitRepo:
    """A git repository with this project's conf/ and training/, the given experiments, and one commit."""
    repo = GitRepo(path)
    repo.copy_examples()
    repo.remove("experiments")
    repo.write(".gitignore", ".expctl/\n__pycache__/\n")
    repo.write("training/quick.py", jobs.source("quick"))
    repo.write("expctl.yaml", f"backend: local\ncode_paths: [training]\nlocal:\n  parallelism: {parallelism}\n"
                              + settings)
    for rel, text in experiments.items():
        repo.write(f"experiments/{rel}.yaml", text)
    repo.commit("initial experiments", author=author)
    return repo


def clean_env(tracking_uri: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "GITHUB_ACTOR", "EXPCTL_TEST_CRASH_AT", "EXPCTL_BACKEND", "CI")}
    env["PYTHONPATH"] = str(ROOT / "src")
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return {**env, **extra}


def expctl(repo: Path, *args: str, tracking_uri: str | None = None, timeout: float = 600,
           **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m expctl ARGS`` in ``repo`` as a separate process."""
    return subprocess.run([sys.executable, "-m", "expctl", *args], cwd=repo, capture_output=True, text=True,
                          env=clean_env(tracking_uri, **env), timeout=timeout, check=False)


def start_expctl(repo: Path, *args: str, tracking_uri: str | None = None, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "expctl", *args], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=clean_env(tracking_uri, **env))


def embedded_uri(repo: Path) -> str:
    return f"sqlite:///{repo / '.expctl' / 'mlflow.db'}"


def run_states(repo: Path) -> dict[str, dict[str, Any]]:
    """``{object name: state.json}`` of every local job of the repository."""
    runs = repo / ".expctl" / "runs"
    if not runs.is_dir():
        return {}
    return {d.name: json.loads((d / "state.json").read_text()) for d in sorted(runs.iterdir())
            if (d / "state.json").exists()}


def mlflow_runs(tracking_uri: str, experiments: list[str], deleted_too: bool = False) -> list[Any]:
    """Every MLflow run of the given expctl experiments that is one attempt of a run (no sweep parents), open
    or settled (``expctl.managed`` is ``true`` or ``settled``)."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(tracking_uri=tracking_uri)
    ids = [e.experiment_id for name in experiments if (e := client.get_experiment_by_name(name)) is not None]
    if not ids:
        return []
    view = ViewType.ALL if deleted_too else ViewType.ACTIVE_ONLY
    runs = client.search_runs(ids, run_view_type=view, max_results=10000)
    return [r for r in runs if "expctl.run_key" in r.data.tags
            and r.data.tags.get("expctl.managed") in ("true", "settled")]


def attempts_per_key(runs: list[Any]) -> Counter[tuple[str, str]]:
    """How many MLflow runs each (run key, attempt) has."""
    return Counter((r.data.tags["expctl.run_key"], r.data.tags["expctl.attempt"]) for r in runs)


def jobs_per_key(repo: Path) -> Counter[tuple[str, str]]:
    """How many local jobs each (run key, attempt) has."""
    return Counter((s["run_key"], str(s["attempt"])) for s in run_states(repo).values())


def stop_jobs(repo: Path) -> None:
    """Kill whatever jobs a test left running (their own sessions outlive expctl)."""
    from expctl.backends.local import state as st

    runs = repo / ".expctl" / "runs"
    if not runs.is_dir():
        return
    for run_dir in runs.iterdir():
        state = st.load(run_dir)
        for proc in state.processes if state else []:
            if st.alive(proc):
                st.kill_group(proc, signal.SIGKILL)


def plan_json(repo: Path, tracking_uri: str | None = None) -> dict[str, Any]:
    result = expctl(repo, "plan", "--output", "json", tracking_uri=tracking_uri)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def plan_lines(repo: Path, tracking_uri: str) -> dict[str, list[tuple[str, str, str]]]:
    """``{experiment: [(action, reason, detail)]}`` of ``expctl plan`` (in plan order)."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    for c in plan_json(repo, tracking_uri)["changes"]:
        out.setdefault(c["experiment"], []).append((c["action"], c["reason"], c.get("detail", "")))
    return out


def apply_wait(repo: Path, tracking_uri: str) -> str:
    """``expctl apply -y --wait`` (at most 300 s), which must succeed: its output."""
    done = expctl(repo, "apply", "-y", "--wait", "--timeout", "300", tracking_uri=tracking_uri)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def runs_by_start(tracking_uri: str, experiment: str) -> list[Any]:
    """The MLflow runs of one experiment, oldest first."""
    return sorted(mlflow_runs(tracking_uri, [experiment]), key=lambda r: r.info.start_time)


def writes(plan: dict[str, Any], experiments: set[str] | None = None) -> list[dict[str, Any]]:
    return [c for c in plan["changes"] if c["action"] in ("create", "retry", "replace", "delete")
            and (experiments is None or c["experiment"] in experiments)]
