"""Issue 5, end to end: concurrent applies are serialised by the file lock, and every applied change is audited.

* two ``expctl apply -y`` processes started together on one repository create no duplicate job and no
  duplicate MLflow run: one applies, the other waits for the lock and then finds nothing to do;
* an apply waits while the lock is held, and ``--lock-timeout`` ends the wait with one clear line (exit 1);
* the audit trail of applies by two commit authors (one through CI, ``GITHUB_ACTOR``) is in MLflow: ``expctl
  history`` shows who, action, run, kind, namespace, when, commit and plan fingerprint, and so does a fresh
  clone pointed at the same tracking server.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from expctl.backends.locks import file_lock
from tests.support import e2e
from tests.support.gitrepo import GitRepo
from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration


@pytest.fixture
def project(tmp_path: Path) -> Iterator[GitRepo]:
    repo = e2e.make_project(tmp_path / "repo", {
        "lock-sweep": e2e.experiment(quick=True, sweep={"optimizer.lr": "0.1,0.2,0.3"}),
        "lock-single": e2e.experiment(quick=True),
    }, parallelism=4)
    yield repo
    e2e.stop_jobs(repo.path)


def test_two_applies_at_once_create_each_run_once(project: GitRepo) -> None:
    first = e2e.start_expctl(project.path, "apply", "-y")
    second = e2e.start_expctl(project.path, "apply", "-y")
    outputs = [p.communicate(timeout=600) for p in (first, second)]
    for proc, (out, err) in zip((first, second), outputs, strict=True):
        assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    applied = [out for out, _ in outputs if "Applied 4 changes." in out]
    idle = [out for out, _ in outputs if "No changes. (4 unchanged)" in out]
    assert len(applied) == 1 and len(idle) == 1, outputs  # the second waited, then found everything applied

    jobs = e2e.jobs_per_key(project.path)
    assert len(jobs) == 4 and set(jobs.values()) == {1}
    runs = e2e.mlflow_runs(e2e.embedded_uri(project.path), ["lock-sweep", "lock-single"], deleted_too=True)
    per_key = e2e.attempts_per_key(runs)
    assert set(per_key) == set(jobs) and set(per_key.values()) == {1}
    # every job logs into the one MLflow run of its (run key, attempt)
    by_key = {(r.data.tags["expctl.run_key"], r.data.tags["expctl.attempt"]): r.info.run_id for r in runs}
    for state in e2e.run_states(project.path).values():
        assert state["mlflow_run_id"] == by_key[(state["run_key"], str(state["attempt"]))]


def test_apply_waits_for_the_lock_and_times_out_with_one_line(project: GitRepo) -> None:
    lock = project.path / ".expctl" / "apply.lock"
    with file_lock(lock, timeout=5):
        timed_out = e2e.expctl(project.path, "apply", "-y", "--lock-timeout", "0.5")
        waiting = e2e.start_expctl(project.path, "apply", "-y")
        assert waiting.stderr is not None
        said = waiting.stderr.readline()  # it reached the lock and says so: no sleep, no timing
        still_waiting = waiting.poll() is None
        created_meanwhile = e2e.run_states(project.path)
    out, err = waiting.communicate(timeout=600)

    assert timed_out.returncode == 1
    errors = timed_out.stderr.strip().splitlines()
    assert errors == [line for line in errors if line.startswith(("error:", "warning:"))]
    [error] = [line for line in errors if line.startswith("error:")]
    assert re.fullmatch(rf"error: another expctl apply holds apply\.lock: pid {os.getpid()} \(since [0-9:]+\) "
                        r"\(waited 0\.5s; see --lock-timeout\)", error), error
    assert said.startswith("warning: ") and "waiting up to 600 s for the apply lock, held by pid" in said, said
    assert "Applied" not in timed_out.stdout

    assert still_waiting, f"apply did not wait for the lock:\n{out}\n{err}"
    assert created_meanwhile == {}
    assert waiting.returncode == 0, err
    assert "Applied 4 changes." in out
    assert len(e2e.run_states(project.path)) == 4


def _history(repo: Path, uri: str, *args: str) -> list[dict[str, object]]:
    result = e2e.expctl(repo, "history", "--output", "json", *args, tracking_uri=uri)
    assert result.returncode == 0, result.stderr
    entries: list[dict[str, object]] = json.loads(result.stdout)
    return entries


def test_audit_trail_lives_in_mlflow_with_who_what_when(tmp_path: Path, mlflow_server: MlflowServer) -> None:
    uri = mlflow_server.uri
    # declared: the clone below (whose origin is this directory) is the same project (docs/tracking.md)
    repo = e2e.make_project(tmp_path / "repo", {
        "audit-sweep": e2e.experiment(quick=True, sweep={"optimizer.lr": "0.1,0.2"}),
    }, author=e2e.ADA, settings=f"project: audit-{uuid.uuid4().hex[:8]}\n")
    try:
        first = e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri)
        assert first.returncode == 0, first.stderr
        first_commit = repo.git("rev-parse", "HEAD")
        repo.write("experiments/audit-sweep.yaml",
                   e2e.experiment(quick=True, sweep={"optimizer.lr": "0.1,0.3"}))
        second_commit = repo.commit("lr 0.2 -> 0.3", author=e2e.BOB)
        second = e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri, GITHUB_ACTOR="ci-bot")
        assert second.returncode == 0, second.stderr
        assert "Applied 1 changes." in second.stdout
    finally:
        e2e.stop_jobs(repo.path)

    entries = _history(repo.path, uri, "--experiment", "audit-sweep")
    assert len(entries) == 3  # newest first: Bob's one create, then Ada's two
    bob, ada = entries[0], entries[1:]
    assert bob["who"] == f"{e2e.BOB} via github:ci-bot"
    assert bob["commit"] == second_commit
    assert e2e.run_states(repo.path)[str(bob["run"])]["overrides"] == ["optimizer.lr=0.3"]
    assert {e["who"] for e in ada} == {e2e.ADA} and {e["commit"] for e in ada} == {first_commit}
    for entry in entries:
        assert entry["action"] == "create" and entry["experiment"] == "audit-sweep"
        assert entry["kind"] == "PyTorchJob" and entry["backend"] == "local"
        assert "namespace" in entry  # the local backend has none: ""
        assert str(entry["run"]).startswith("audit-sweep-")
        assert len(str(entry["fingerprint"])) == 16 and float(str(entry["time"])) > 0
    assert bob["fingerprint"] != ada[0]["fingerprint"]  # a different observed state was planned against
    created = {str(e["run"]) for e in entries}
    assert created == set(e2e.run_states(repo.path))

    human = e2e.expctl(repo.path, "history", tracking_uri=uri)
    assert human.returncode == 0, human.stderr
    lines = [ln for ln in human.stdout.splitlines() if "audit-sweep" in ln]
    assert len(lines) == 3
    assert f"by {e2e.BOB} via github:ci-bot" in lines[0] and f"commit {second_commit[:12]}" in lines[0]
    assert all(f"by {e2e.ADA}" in ln and f"commit {first_commit[:12]}" in ln for ln in lines[1:])

    # Nothing only in a local file: a fresh clone pointed at the same server sees the same trail.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo.path), str(clone)], check=True)
    assert not (clone / ".expctl").exists()
    assert _history(clone, uri, "--experiment", "audit-sweep") == entries
    assert not (clone / ".expctl" / "runs").exists() or not any((clone / ".expctl" / "runs").iterdir())
