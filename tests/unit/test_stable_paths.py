"""Module paths that outlive a refactoring: they are persisted or public, so moving them breaks users.

* ``python -m expctl.tracking.mlflow_evaluate`` is every validation job's default command, hashed into its spec:
  the file is a shim to ``expctl.job.evaluate``; moving it would relaunch every validation job.
* ``expctl.data.reader`` is what users' training code imports (docs/data.md); it re-exports ``expctl.job.reader``.
"""

from __future__ import annotations

import subprocess
import sys

from expctl.core.desired import DEFAULT_EVALUATOR
from expctl.data import reader as public_reader
from expctl.job import reader as job_reader


def test_the_evaluator_command_is_pinned() -> None:
    assert DEFAULT_EVALUATOR == ("python", "-m", "expctl.tracking.mlflow_evaluate")


def test_the_evaluator_shim_runs_the_evaluator() -> None:
    """Without a run to validate the evaluator says so and fails: the shim reached it (no ImportError)."""
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "expctl.tracking.mlflow_evaluate"], capture_output=True,
                          text=True, env={**env, "PYTHONPATH": ":".join(sys.path)}, timeout=120, check=False)
    assert done.returncode != 0
    assert "No module named" not in done.stderr
    assert "EXPCTL_VALIDATES_RUN_ID" in done.stdout + done.stderr


def test_the_public_reader_is_the_job_reader() -> None:
    for name in ("read_split", "label_names", "Examples", "ManifestMismatch", "record_features"):
        assert getattr(public_reader, name) is getattr(job_reader, name)
