"""Paths mean the repository's paths, whatever directory expctl runs in.

``plan``, ``apply --wait``, ``logs`` and ``history`` run from ``experiments/`` (a subdirectory) and from the root
see one store (a relative ``sqlite:///`` URI in ``expctl.yaml`` is the repository's: no second database under the
subdirectory), ``history`` loses no entry, and a relative ``checkpoints.dir`` is the repository's
directory (the job gets ``<repo>/ckpt/<object>``, not a path under its worktree or the subdirectory).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import e2e

pytestmark = pytest.mark.integration

EXPERIMENT = ("defaults:\n  - config\n  - _self_\nexpctl:\n  command: [printenv, EXPCTL_CHECKPOINT_DIR]\n"
              "  checkpoints: {dir: ckpt}\n")


def test_commands_from_a_subdirectory_see_the_repositorys_store_and_paths(tmp_path: Path) -> None:
    repo = e2e.make_project(tmp_path / "repo", {"sub": EXPERIMENT}, settings="tracking_uri: sqlite:///store/mlflow.db\n")
    root, sub = repo.path, repo.path / "experiments"
    try:
        applied = e2e.expctl(sub, "apply", "-y", "--wait", "--timeout", "300")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        [state] = e2e.run_states(root).values()
        logs = e2e.expctl(sub, "logs", state["name"])
        assert logs.returncode == 0, logs.stderr
        assert logs.stdout.strip() == str((root / "ckpt" / state["name"]).resolve())

        again = e2e.expctl(root, "plan", "--output", "json")  # the root sees what the subdirectory applied
        assert again.returncode == 0, again.stderr
        assert [c["action"] for c in json.loads(again.stdout)["changes"]] == ["noop"]
        histories = [json.loads(e2e.expctl(where, "history", "-o", "json").stdout) for where in (sub, root)]
        assert histories[0] == histories[1]
        assert [(e["action"], e["run"]) for e in histories[0]] == [("create", state["name"])]
        assert not (sub / ".expctl").exists() and not (sub / "store").exists()
        assert (root / "store" / "mlflow.db").is_file() and not (root / ".expctl" / "mlflow.db").exists()
    finally:
        e2e.stop_jobs(root)
