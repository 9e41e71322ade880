"""The operator commands on the local backend, end to end: real git, real processes, the embedded MLflow store.

Every command runs as its own ``expctl`` process (what an operator types), so whatever one command records —
a cancel above all — is proved durable by the next. The jobs are tiny scripts that print numbered lines and
then hold until the test releases them (or cancels them), so nothing here depends on timing.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from expctl.backends.local import state as st
from expctl.cli import main
from expctl.engine.workspace import Workspace
from tests.support import jobs
from tests.support.gitrepo import GitRepo
from tests.support.mlflow_server import MlflowServer, free_port

pytestmark = pytest.mark.integration

EXPCTL = str(Path(sys.executable).with_name("expctl"))
OPERATOR = "olga-operator"

CONFIG = """\
seed: 0
lines: 2
release: ""
expctl:
  kind: PyTorchJob
  command: [python, code/job.py]
"""


@dataclass
class Ops:
    """A repository whose experiments were applied once; the jobs hold until ``release`` files appear."""

    repo: GitRepo
    hold: Path  # every held job waits for this file
    release_pair: Path

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([EXPCTL, *args], cwd=self.repo.path, env=cli_env(), capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"expctl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def status(self, *args: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(self.run("status", "-o", "json", *args).stdout)
        return rows

    def run_of(self, experiment: str) -> dict[str, Any]:
        (row,) = self.status("--experiment", experiment)
        return row

    def state_dir(self) -> Path:
        return self.repo.path / ".expctl"


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "EXPCTL_BACKEND", "GITHUB_ACTOR", "CI", "EXPCTL_DEBUG")}
    return {**env, "USER": OPERATOR, **extra}


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ops]:
    base = tmp_path_factory.mktemp("operate")
    hold, release_pair = base / "hold", base / "release-pair"
    repo = GitRepo(base / "repo")
    files = {
        ".gitignore": ".expctl/\n",
        "expctl.yaml": "code_paths: [code]\nlocal:\n  parallelism: 8\n",
        "code/job.py": jobs.source("replica_lines"),
        "conf/config.yaml": CONFIG,
        "experiments/quick.yaml": "defaults:\n  - config\n  - _self_\n",
        "experiments/pair.yaml": (f"defaults:\n  - config\n  - _self_\nlines: 3\nrelease: {release_pair}\n"
                                  "expctl:\n  replicas: 2\n"),
        "experiments/lone.yaml": f"defaults:\n  - config\n  - _self_\nrelease: {hold}\n",
        "experiments/sleepy.yaml": (f"defaults:\n  - config\n  - _self_\nrelease: {hold}\n"
                                    "hydra:\n  sweeper:\n    params:\n      seed: 1,2,3\n"),
    }
    for rel, text in files.items():
        repo.write(rel, text)
    repo.commit("operate examples")
    ops = Ops(repo, hold, release_pair)
    try:
        applied = ops.run("apply", "-y")
        assert "Applied 6 changes." in applied.stdout, applied.stdout + applied.stderr
        yield ops
    finally:
        hold.touch()
        release_pair.touch()
        # The held jobs now finish on their own; wait so that no process outlives the module.
        deadline = time.monotonic() + 60
        runs = ops.state_dir() / "runs"
        while time.monotonic() < deadline:
            states = [st.load(d) for d in runs.iterdir()] if runs.exists() else []
            if not any(s is not None and any(st.alive(p) for p in s.processes) for s in states):
                break
            time.sleep(0.2)


def test_logs_per_replica_and_follow_until_the_run_ends(ops: Ops) -> None:
    pair = ops.run_of("pair")
    name = pair["run"]
    assert pair["replicas"] == 2
    def printed() -> bool:
        out = ops.run("logs", name).stdout
        return "worker-0 says line 2" in out and "master-0 says line 2" in out

    wait_for("both replicas to print their lines", printed)

    everything = ops.run("logs", name).stdout.splitlines()
    assert "[master-0] master-0 says line 0 (rank 0 of 2)" in everything
    assert "[worker-0] worker-0 says line 2 (rank 1 of 2)" in everything

    one = ops.run("logs", name, "--replica", "worker-0").stdout.splitlines()
    assert one == [f"worker-0 says line {i} (rank 1 of 2)" for i in range(3)]

    missing = ops.run("logs", name, "--replica", "worker-1", check=False)
    assert missing.returncode == 1
    assert "has no replica 'worker-1'" in missing.stderr and "master-0, worker-0" in missing.stderr

    assert ops.run_of("pair")["state"] == "Running"
    follow = subprocess.Popen([EXPCTL, "logs", name, "-f"], cwd=ops.repo.path, env=cli_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        assert follow.poll() is None, "logs -f returned while the run was still running"
        ops.release_pair.touch()
        out, err = follow.communicate(timeout=90)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    assert follow.returncode == 0, err
    lines = out.splitlines()
    assert "[master-0] master-0 says line 0 (rank 0 of 2)" in lines
    assert "[master-0] master-0 done" in lines and "[worker-0] worker-0 done" in lines
    assert ops.run_of("pair")["state"] == "Succeeded"


def test_status_is_a_squeue_like_table_with_filters_and_json(ops: Ops) -> None:
    wait_for("quick to succeed", lambda: ops.run_of("quick")["state"] == "Succeeded")
    wait_for("the sweep to run", lambda: {r["state"] for r in ops.status("--experiment", "sleepy")} == {"Running"})

    raw = ops.run("status", "-o", "json")
    rows = json.loads(raw.stdout)  # the whole of stdout is one JSON document
    assert raw.stdout.lstrip().startswith("[") and raw.stdout.rstrip().endswith("]")
    assert {r["experiment"] for r in rows} == {"quick", "pair", "lone", "sleepy"}
    assert len(rows) == 6
    for row in rows:
        assert {"run", "experiment", "kind", "replicas", "gpus", "state", "attempt", "age", "user",
                "mlflow_run"} <= set(row)
        assert row["kind"] == "PyTorchJob" and row["gpus"] == 0 and row["attempt"] == 1
        assert (row["user"], row["applied_by"]) == ("Ada Lovelace", "Ada Lovelace <ada@example.com>")
        assert len(row["mlflow_run"]) == 32
    assert {r["run"]: r["replicas"] for r in rows}[ops.run_of("pair")["run"]] == 2

    sweep = ops.status("--experiment", "sleepy")
    assert len(sweep) == 3 and all(r["run"].startswith("sleepy-") for r in sweep)
    succeeded = ops.status("--state", "succeeded")
    assert ops.run_of("quick")["run"] in {r["run"] for r in succeeded}
    assert {r["state"] for r in succeeded} == {"Succeeded"}
    assert {r["run"] for r in ops.status("--state", "Running", "--experiment", "sleepy")} == {r["run"] for r in sweep}
    assert len(ops.status("--user", "lovelace")) == 6
    assert ops.status("--user", "nobody") == []

    table = ops.run("status").stdout.splitlines()
    assert table[0].split() == ["RUN", "EXPERIMENT", "KIND", "REPLICAS", "GPUS", "STATE", "ATTEMPT", "AGE",
                                "USER", "MLFLOW", "RUN", "REASON"]
    assert len(table) == 7
    quick = next(line for line in table if line.startswith("quick-"))
    assert quick.split()[1:7] == ["quick", "PyTorchJob", "1", "0", "Succeeded", "1"]
    assert "Ada Lovelace" in quick and "<ada@example.com>" not in quick
    empty = ops.run("status", "--experiment", "nope")
    assert [line.split() for line in empty.stdout.splitlines()] == [table[0].split()]
    assert "(no runs)" in empty.stderr


def test_describe_shows_identity_config_attempts_and_phases(ops: Ops) -> None:
    wait_for("quick to succeed", lambda: ops.run_of("quick")["state"] == "Succeeded")
    row = ops.run_of("quick")
    info = json.loads(ops.run("describe", row["run"], "-o", "json").stdout)
    assert info["run"] == row["run"] and info["experiment"] == "quick"
    assert info["state"] == "Succeeded" and info["kind"] == "PyTorchJob"
    assert info["spec_hash"] == row["spec_hash"] == info["desired_spec_hash"] and info["in_sync"] is True
    assert info["commit"] == ops.repo.git("rev-parse", "HEAD")
    assert info["mlflow_run"] == row["mlflow_run"]
    assert info["tracking_uri"] == f"sqlite:///{ops.state_dir() / 'mlflow.db'}"
    assert re.fullmatch(rf"http://127\.0\.0\.1:5000/#/experiments/\d+/runs/{row['mlflow_run']}"
                        r"\?workflowType=machine_learning", info["mlflow_ui_run"]), info["mlflow_ui_run"]
    assert info["mlflow_ui_experiment"].startswith("http://127.0.0.1:5000/#/experiments/")
    assert info["config"]["lines"] == 2 and info["config"]["expctl"]["command"] == ["python", "code/job.py"]
    assert [(a["attempt"], a["state"], a["object"]) for a in info["attempts"]] == [(1, "Succeeded", "live")]
    assert [p["phase"] for p in info["phases"]] == ["Created", "Succeeded"]

    point = ops.status("--experiment", "sleepy")[0]
    sweep_info = json.loads(ops.run("describe", point["run"], "-o", "json").stdout)
    assert len(sweep_info["overrides"]) == 1 and sweep_info["overrides"][0].startswith("seed=")
    assert sweep_info["config"]["seed"] == int(sweep_info["overrides"][0].split("=")[1])
    assert sweep_info["in_sync"] is True and sweep_info["desired_spec_hash"] == point["spec_hash"]

    human = ops.run("describe", row["run"]).stdout
    for expected in (f"run:               {row['run']}", f"spec_hash:         {row['spec_hash']}",
                     f"commit:            {info['commit']}", "attempts:", "phase history:",
                     "config (composed at HEAD):", "  lines: 2", f"mlflow {row['mlflow_run']}"):
        assert expected in human, f"{expected!r} not in:\n{human}"
    missing = ops.run("describe", "no-such-run", check=False)
    assert missing.returncode == 1 and "no run named no-such-run" in missing.stderr


def test_cancel_is_durable_tracked_audited_and_not_relaunched(ops: Ops) -> None:
    from mlflow import MlflowClient

    wait_for("lone to run", lambda: ops.run_of("lone")["state"] == "Running")
    lone = ops.run_of("lone")
    before = st.load(ops.state_dir() / "runs" / lone["run"])
    assert before is not None and before.processes

    cancelled = ops.run("cancel", lone["run"])
    assert cancelled.stdout.splitlines() == [f"cancelled {lone['run']}"]
    assert ops.run_of("lone")["state"] == "Cancelled"
    assert not any(st.alive(p) for p in before.processes), "the cancelled run's processes still run"

    client = MlflowClient(f"sqlite:///{ops.state_dir() / 'mlflow.db'}")
    run = client.get_run(lone["mlflow_run"])
    assert run.info.status == "KILLED"
    assert run.data.tags["expctl.cancelled"] == "true" and run.data.tags["expctl.cancelled_by"] == OPERATOR

    history = json.loads(ops.run("history", "--experiment", "lone", "-o", "json").stdout)
    assert [(e["action"], e["run"], e["who"]) for e in history[:2]] == [
        ("cancel", lone["run"], OPERATOR), ("create", lone["run"], "Ada Lovelace <ada@example.com>")]
    assert f"cancel   {lone['run']}" in ops.run("history").stdout

    # A new expctl process plans the cancelled run as cancelled, and apply leaves it alone.
    plan = json.loads(ops.run("plan", "-o", "json").stdout)
    (change,) = [c for c in plan["changes"] if c["experiment"] == "lone"]
    assert (change["action"], change["reason"]) == ("noop", "cancelled")
    assert any(lone["run"] in line and "(cancelled; change its spec to run again)" in line
               for line in ops.run("plan").stdout.splitlines())
    applied = ops.run("apply", "-y")
    assert lone["run"] not in applied.stderr and "Applied" not in applied.stdout
    after = st.load(ops.state_dir() / "runs" / lone["run"])
    assert after is not None and after.cancelled and after.created_at == before.created_at

    # Cancelling a finished run stops nothing and says so.
    quick = ops.run_of("quick")["run"]
    noop = ops.run("cancel", quick)
    assert noop.stdout == "" and f"{quick}: already succeeded: nothing to stop" in noop.stderr
    assert ops.run_of("quick")["state"] == "Succeeded"
    unknown = ops.run("cancel", "no-such-run", check=False)
    assert unknown.returncode == 1 and "no run named no-such-run" in unknown.stderr

    # Changing its spec makes it a replace again.
    ops.repo.write("experiments/lone.yaml", f"defaults:\n  - config\n  - _self_\nlines: 5\nrelease: {ops.hold}\n")
    ops.repo.commit("lone: five lines")
    plan = json.loads(ops.run("plan", "-o", "json").stdout)
    (change,) = [c for c in plan["changes"] if c["experiment"] == "lone"]
    assert (change["action"], change["reason"]) == ("replace", "spec-changed")


def test_bulk_cancel_of_a_whole_sweep_in_one_command(ops: Ops) -> None:
    wait_for("the sweep to run", lambda: {r["state"] for r in ops.status("--experiment", "sleepy")} == {"Running"})
    sweep = {r["run"] for r in ops.status("--experiment", "sleepy")}
    result = ops.run("cancel", "--experiment", "sleepy")
    assert {line.removeprefix("cancelled ") for line in result.stdout.splitlines()} == sweep
    assert {r["state"] for r in ops.status("--experiment", "sleepy")} == {"Cancelled"}
    audit = json.loads(ops.run("history", "--experiment", "sleepy", "-o", "json").stdout)
    assert {e["run"] for e in audit if e["action"] == "cancel"} == sweep
    plan = json.loads(ops.run("plan", "-o", "json").stdout)
    assert {(c["name"], c["reason"]) for c in plan["changes"] if c["experiment"] == "sleepy"} == {
        (name, "cancelled") for name in sweep}
    again = ops.run("cancel", "--experiment", "sleepy")
    assert again.stdout == "" and "nothing to cancel" in again.stderr


def test_ui_on_a_tracking_server_prints_its_training_views(tmp_path: Path, mlflow_server: MlflowServer) -> None:
    from expctl.tracking.mlflow.store import MlflowStore
    from tests.support.factories import make_spec

    MlflowStore(mlflow_server.uri, "local").ensure_run(make_spec("ui-on-a-server"), 1, OPERATOR)
    repo = GitRepo(tmp_path / "repo")
    repo.write("expctl.yaml", f"tracking_uri: {mlflow_server.uri}\n")
    repo.commit("settings")
    opened = tmp_path / "opened"
    browser = f"{sys.executable} -c \"import sys; open(sys.argv[1], 'w').write(sys.argv[2])\" {opened} %s"

    every = subprocess.run([EXPCTL, "ui"], cwd=repo.path, env=cli_env(), capture_output=True, text=True,
                           timeout=120, check=True)
    lines = every.stdout.splitlines()
    assert lines[0].startswith(f"Training runs: {mlflow_server.uri}/#/")
    assert "workflowType=machine_learning" in lines[0]
    mine = next(line.split() for line in lines if line.split()[0] == "ui-on-a-server")
    assert mine[1].startswith(f"{mlflow_server.uri}/#/experiments/")
    assert mine[1].endswith("/runs?viewStateShareKey=expctl&workflowType=machine_learning")
    assert lines[-1] == f"Model registry: {mlflow_server.uri}/#/models?workflowType=machine_learning"
    assert f"The tracking store is a server: {mlflow_server.uri}" in every.stderr

    one = subprocess.run([EXPCTL, "ui", "--experiment", "ui-on-a-server", "--open"], cwd=repo.path,
                         env=cli_env(BROWSER=browser), capture_output=True, text=True, timeout=120, check=True)
    assert one.stdout == f"Training runs: {mine[1]}\n"
    wait_for("the browser to be handed the address", opened.exists, timeout=30)
    assert opened.read_text() == mine[1]

    missing = subprocess.run([EXPCTL, "ui", "--experiment", "nope"], cwd=repo.path, env=cli_env(),
                             capture_output=True, text=True, timeout=120, check=False)
    assert missing.returncode == 1 and "--experiment nope: MLflow at" in missing.stderr

    repo.write("expctl.yaml", f"tracking_uri: http://127.0.0.1:{free_port()}\n")
    repo.commit("a server that is down")
    down = CliRunner().invoke(main, ["ui"], obj={"workspace": Workspace(repo.path)}, catch_exceptions=False)
    assert down.exit_code == 0
    assert down.stdout.splitlines()[0].endswith("/#/experiments?workflowType=machine_learning")
    assert "is unreachable" in down.stderr and "(showing the start page)" in down.stderr


def _run_on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run expctl with stderr on a pseudo-terminal (where progress bars draw) and stdout on a pipe."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([EXPCTL, *args], cwd=cwd, env=cli_env(TERM="xterm-256color", COLUMNS="120"),
                            stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other side closed
            break
        if not data:
            break
        chunks.append(data)
    out = proc.communicate(timeout=600)[0]
    os.close(leader)
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


@pytest.mark.timeout(900)
def test_example_training_records_system_metrics_and_progress_stays_off_stdout(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    repo = GitRepo(tmp_path / "repo")
    repo.copy_examples()
    repo.write(".gitignore", ".expctl/\n")
    for rel in ("experiments/lr-sweep.yaml", "experiments/distributed.yaml"):
        repo.remove(rel)
    repo.write("conf/trainer/quick.yaml", "epochs: 2\nbatch_size: 64\nfail_first_attempts: 0\n")
    repo.commit("the baseline example, two epochs")

    code, out, err = _run_on_a_terminal(["apply", "-y", "--wait"], repo.path)
    assert code == 0, out + err
    assert "runs finished" in err, f"no progress bar on the terminal's stderr: {err!r}"
    for mark in ("━", "\r", "\x1b[", "runs finished"):
        assert mark not in out, f"progress ({mark!r}) leaked into stdout: {out!r}"
    assert not any(0x2800 <= ord(ch) <= 0x28FF for ch in out), "a spinner leaked into stdout"
    assert out.rstrip().splitlines()[-1] == "Finished: 1 succeeded."

    raw = subprocess.run([EXPCTL, "status", "-o", "json"], cwd=repo.path, env=cli_env(), capture_output=True,
                         text=True, timeout=120, check=True).stdout
    (row,) = json.loads(raw)
    assert row["state"] == "Succeeded"

    run = MlflowClient(f"sqlite:///{repo.path / '.expctl' / 'mlflow.db'}").get_run(row["mlflow_run"])
    metrics = run.data.metrics
    for name in ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes",
                 "system/system_memory_usage_percentage", "val_accuracy"):
        assert name in metrics, f"{name} not recorded; metrics: {sorted(metrics)}"
    assert 0.0 <= metrics["system/cpu_utilization_percentage"] <= 100.0 * (os.cpu_count() or 1)
    assert metrics["system/system_memory_usage_megabytes"] > 0
