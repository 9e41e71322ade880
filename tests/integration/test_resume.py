"""Resume on retry, end to end: real ``expctl apply --wait`` processes, the real training, a real MLflow server.

An attempt that SIGKILLs itself after epoch 1 (an injected infrastructure failure) is retried; attempt 2
receives attempt 1's last checkpoint (logged to MLflow) as ``EXPCTL_RESUME_FROM`` and ends with exactly the
metrics of an uninterrupted run with the same seed. A code failure is retried from scratch unless the experiment
asks to resume it (checked with a stdlib job that prints what it was handed, and a declared checkpoint dir).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support import e2e, jobs
from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration

TRAIN = ("defaults:\n  - config\n  - _self_\nseed: 7\ntrainer:\n  epochs: 3\n  fail_first_attempts: 0\n{extra}"
         "dataset:\n  n_samples: 240\nexpctl:\n  retries: {{max_attempts: 2, backoff_seconds: 0}}\n")

CODE_FAILS = ("defaults:\n  - config\n  - _self_\nexpctl:\n  command: [python, -m, training.show_resume]\n"
              "  retries: {{max_attempts: 2, failures: [code], backoff_seconds: 0}}\n"
              "  checkpoints: {{dir: '{dir}'{resume_on}}}\n")


def test_an_infrastructure_failure_resumes_from_the_last_checkpoint(tmp_path: Path,
                                                                   mlflow_server: MlflowServer) -> None:
    steady, killed = "resume-steady", "resume-killed"
    repo = e2e.make_project(tmp_path / "repo", {
        steady: TRAIN.format(extra=""),
        killed: TRAIN.format(extra="  sigkill_after_epoch: 1\n"),
    })
    try:
        done = e2e.expctl(repo.path, "apply", "-y", "--wait", "--timeout", "600", tracking_uri=mlflow_server.uri)
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
        assert done.stdout.strip().splitlines()[-1] == "Finished: 2 succeeded.", done.stdout
        runs = e2e.mlflow_runs(mlflow_server.uri, [steady, killed])
        by = {(r.data.tags["expctl.experiment"], r.data.tags["expctl.attempt"]): r for r in runs}
        assert set(by) == {(steady, "1"), (killed, "1"), (killed, "2")}
        first, second, reference = by[killed, "1"], by[killed, "2"], by[steady, "1"]
        assert first.info.status == "FAILED" and first.data.tags["expctl.failure"] == "infrastructure"
        assert first.data.tags["expctl.checkpoint"] == f"runs:/{first.info.run_id}/checkpoints/epoch-0001.pt"
        assert second.data.tags["expctl.resumed_from.attempt"] == "1"
        assert second.data.tags["expctl.resumed_from.run_id"] == first.info.run_id
        assert second.data.tags["expctl.resumed_from.epoch"] == "1"
        assert second.data.tags["expctl.resumed_from.uri"] == first.data.tags["expctl.checkpoint"]
        assert second.info.status == "FINISHED"

        from mlflow import MlflowClient

        client = MlflowClient(mlflow_server.uri)
        assert [m.step for m in client.get_metric_history(second.info.run_id, "val_loss")] == [2]  # resumed
        assert [m.step for m in client.get_metric_history(reference.info.run_id, "val_loss")] == [0, 1, 2]
        final = {k: second.data.metrics[k] for k in ("train_loss", "val_loss", "val_accuracy")}
        assert final == {k: reference.data.metrics[k] for k in final}  # exactly the uninterrupted run's

        name = second.data.tags["expctl.job"]
        described = e2e.expctl(repo.path, "describe", name, "-o", "json", tracking_uri=mlflow_server.uri)
        assert described.returncode == 0, described.stderr
        chain = [(a["attempt"], a["resumed_from"]) for a in json.loads(described.stdout)["attempts"]]
        assert chain == [(1, None), (2, {"attempt": 1, "mlflow_run": first.info.run_id, "epoch": 1,
                                         "checkpoint": first.data.tags["expctl.checkpoint"]})]
        human = e2e.expctl(repo.path, "describe", name, tracking_uri=mlflow_server.uri)
        assert f"resumed from attempt 1 at epoch 1 (mlflow {first.info.run_id})" in human.stdout
    finally:
        e2e.stop_jobs(repo.path)


def test_a_code_failure_resumes_only_when_the_experiment_asks(tmp_path: Path, mlflow_server: MlflowServer) -> None:
    shared = tmp_path / "checkpoints"
    scratch, asked = "resume-code-scratch", "resume-code-asked"
    repo = e2e.make_project(tmp_path / "repo", {
        scratch: CODE_FAILS.format(dir=shared, resume_on=""),
        asked: CODE_FAILS.format(dir=shared, resume_on=", resume_on: [infrastructure, code]"),
    })
    repo.write("training/show_resume.py", jobs.source("show_resume"))
    repo.commit("a job that shows what it resumes from")
    try:
        done = e2e.expctl(repo.path, "apply", "-y", "--wait", "--timeout", "300", tracking_uri=mlflow_server.uri)
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
        logs = {}
        for state in e2e.run_states(repo.path).values():
            run_dir = repo.path / ".expctl" / "runs" / state["name"]
            logs[state["experiment"], state["attempt"]] = "".join(p.read_text() for p in run_dir.glob("*.log"))
        first_dir = f"CHECKPOINT_DIR={shared}/"
        assert first_dir in logs[scratch, 1] and "RESUME_FROM=-" in logs[scratch, 1]
        assert "RESUME_FROM=-" in logs[scratch, 2]  # a code failure starts from scratch by default
        attempt_1 = next(s["name"] for s in e2e.run_states(repo.path).values()
                         if s["experiment"] == asked and s["attempt"] == 1)
        assert f"RESUME_FROM={shared}/{attempt_1}\n" in logs[asked, 2]  # its directory on shared storage
    finally:
        e2e.stop_jobs(repo.path)


def test_the_training_resumes_from_a_checkpoint_dir_on_shared_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The example training alone (no MLflow): attempt 1 checkpoints into its directory and is SIGKILLed after
    epoch 1; attempt 2, handed that directory as expctl hands it, prints exactly the uninterrupted epochs."""
    import subprocess
    import sys

    from tests.support.gitrepo import ROOT

    config = {"seed": 11, "trainer": {"epochs": 3, "sigkill_after_epoch": 1}, "dataset": {"n_samples": 160}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    for name in [k for k in os.environ if k.startswith(("MLFLOW_", "EXPCTL_")) or k in ("RANK", "WORLD_SIZE")]:
        monkeypatch.delenv(name)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EXPCTL_CONFIG_FILE": str(tmp_path / "config.json"),
           "EXPCTL_CHECKPOINT_DIR": str(tmp_path / "ckpt" / "run")}
    killed = subprocess.run([sys.executable, "-m", "training.train"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, check=False, env=env)
    assert killed.returncode == -9, killed.stderr  # SIGKILL: what the local backend calls infrastructure
    assert sorted(p.name for p in (tmp_path / "ckpt" / "run").iterdir()) == ["epoch-0000.pt", "epoch-0001.pt"]

    from training import train  # the other two runs in this process: one start of torch instead of three

    monkeypatch.setenv("EXPCTL_ATTEMPT", "2")
    monkeypatch.setenv("EXPCTL_CHECKPOINT_DIR", str(tmp_path / "ckpt" / "run-r2"))
    monkeypatch.setenv("EXPCTL_RESUME_FROM", str(tmp_path / "ckpt" / "run"))
    capsys.readouterr()
    train.train(config)
    resumed = capsys.readouterr().out
    assert "resuming after epoch 1" in resumed
    for name in ("EXPCTL_CHECKPOINT_DIR", "EXPCTL_RESUME_FROM"):
        monkeypatch.delenv(name)
    train.train({**config, "trainer": {"epochs": 3}})
    steady = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(steady) == 3
    assert [line for line in resumed.splitlines() if line.startswith("epoch ")] == steady[2:]
    assert [line for line in killed.stdout.splitlines() if line.startswith("epoch ")] == steady[:2]
