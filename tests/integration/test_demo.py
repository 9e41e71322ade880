"""`make demo`, the README's first command, end to end on a clone of this repository: the embedded default
(local backend, embedded MLflow store), every step of ``scripts/demo.py`` exits as it should, and the two-stage
chain (pretrain → finetune from the pretrain champion) ends with the finetune done."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import e2e
from tests.support.gitrepo import ROOT

pytestmark = pytest.mark.integration


def test_the_demo_runs_on_a_clone_of_this_repository(tmp_path: Path) -> None:
    clone = tmp_path / "expctl"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "EXPCTL_"))}
    env["PYTHONPATH"] = str(clone / "src")
    try:
        demo = subprocess.run([sys.executable, "scripts/demo.py"], cwd=clone, env=env, capture_output=True,
                              text=True, timeout=900, check=False)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        assert "Traceback" not in demo.stderr, demo.stderr[-3000:]
        assert "No changes." in demo.stdout and "Registered models (MLflow Model Registry):" in demo.stdout
        assert (clone / ".expctl" / "mlflow.db").is_file()
        # the chain: the finetune ran in the --wait round that saw the pretrain champion, from that version
        assert "Finished: 10 succeeded." in demo.stdout, demo.stdout[-3000:]
        assert "input     base: blobs-pretrained version " in demo.stdout, demo.stdout[-3000:]
    finally:
        e2e.stop_jobs(clone)
