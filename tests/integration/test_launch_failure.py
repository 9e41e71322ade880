"""A launch that fails after its MLflow run was created never leaves that run RUNNING with no job.

The local backend refuses the job for a real reason (its run directory's name is taken by a file): the apply
fails that change in one line, the MLflow run is FAILED and tagged ``expctl.launch_failed`` (an infrastructure
failure), and once the cause is gone the next apply retries it as attempt 2 by the retry policy, not as a
duplicate of attempt 1.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import e2e

pytestmark = pytest.mark.integration

RETRY_INFRA = "  retries: {failures: [infrastructure], max_attempts: 2, backoff_seconds: 0}\n"


def test_a_job_the_backend_refuses_fails_its_run_and_is_retried(tmp_path: Path) -> None:
    repo = e2e.make_project(tmp_path / "repo", {"lf": e2e.experiment(quick=True, expctl=RETRY_INFRA)})
    path, uri = repo.path, e2e.embedded_uri(repo.path)
    try:
        [create] = e2e.writes(e2e.plan_json(path))
        blocker = path / ".expctl" / "runs" / create["name"]
        blocker.parent.mkdir(parents=True, exist_ok=True)
        blocker.write_text("not a run directory\n")

        failed = e2e.expctl(path, "apply", "-y")
        assert failed.returncode != 0 and "Traceback" not in failed.stderr, failed.stderr
        assert "cannot write the run's state" in failed.stdout + failed.stderr
        [run] = e2e.mlflow_runs(uri, ["lf"])
        tags = run.data.tags
        assert run.info.status == "FAILED", run.info.status
        assert tags["expctl.launch_failed"] == "true" and tags["expctl.failure"] == "infrastructure"
        assert tags["expctl.failure_message"].startswith("launch failed: ")
        assert "cannot write the run's state" in tags["expctl.failure_message"]

        blocker.unlink()
        [retry] = e2e.writes(e2e.plan_json(path))
        assert (retry["action"], retry["attempt"]) == ("retry", 2), retry
        applied = e2e.expctl(path, "apply", "-y")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        runs = e2e.mlflow_runs(uri, ["lf"])
        assert sorted((r.data.tags["expctl.attempt"], r.info.status != "FAILED") for r in runs) == [
            ("1", False), ("2", True)]
        assert [s["attempt"] for s in e2e.run_states(path).values()] == [2]
    finally:
        e2e.stop_jobs(repo.path)


def test_a_dataset_manifest_that_vanished_fails_the_run_it_was_recorded_into(tmp_path: Path) -> None:
    """The manifest a plan wrote is gone when the run records it (cleaned by hand between plan and apply): the
    run was created already; it ends FAILED with the reason, not RUNNING with no job."""
    from dataclasses import replace

    from expctl.core.errors import TrackingError
    from expctl.core.model import DatasetRef
    from expctl.tracking.mlflow.store import MlflowStore
    from tests.support.factories import make_spec

    manifest = tmp_path / "manifests" / "d1.json"
    manifest.parent.mkdir()
    manifest.write_text("{}\n")
    spec = replace(make_spec("vanished"), datasets=(DatasetRef("shapes", "d1" * 32, str(manifest)),))
    store = MlflowStore(f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}", "local", embedded=True)
    manifest.unlink()
    with pytest.raises(TrackingError, match="the manifest of dataset 'shapes'"):
        store.ensure_run(spec, 1, "Ada <ada@example.com>")
    [record] = store.records()
    assert record.phase.value == "Failed" and record.failure is not None and record.failure.value == "infrastructure"
    assert record.message.startswith("launch failed: the manifest of dataset 'shapes'")
