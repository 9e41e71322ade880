"""Nothing persisted changes between releases: runs the previous release applied are a no-op plan for this one.

The previous release (``tests/support/previous_release.py``: this repository's ``src/expctl`` at the commit
before the tree was restructured) applies a project on the local backend with the embedded MLflow store; this
release then plans it (no changes), lists it (``status``), reads its audit trail (``history``) and applies it
again (nothing written). The same configs give the same run keys and spec hashes in both releases, validation
jobs included (the evaluator's module path is part of their spec hash).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support import e2e
from tests.support.gitrepo import GitRepo, minimal_repo
from tests.support.previous_release import previous_release, run_previous

pytestmark = pytest.mark.integration

QUICK = "expctl:\n  kind: local\n  command: [python, -c, 'pass']\n  retries: {max_attempts: 2}\n"
SHAPES = ("name: shapes\nformat: folders\nsplit: {seed: 1, train: 0.6, validation: 0.2, test: 0.2}\n"
          "batches:\n  - {name: b1, source: shapes/b1}\n")
VALIDATED = ("defaults:\n  - config\n  - data: shapes\n  - _self_\nexpctl:\n  kind: local\n"
             "  command: [python, -c, 'pass']\n  validation: {split: test, metric: accuracy, threshold: 0.5,"
             " register_as: shapes-model, alias: champion}\n")


@pytest.fixture(scope="module")
def old_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return previous_release(tmp_path_factory.mktemp("previous-release"))


def project(path: Path) -> GitRepo:
    repo = minimal_repo(path, {
        "conf/data/shapes.yaml": SHAPES,
        "experiments/single.yaml": "defaults:\n  - config\n  - _self_\n" + QUICK,
        "experiments/sweep.yaml": ("defaults:\n  - config\n  - _self_\nhydra:\n  sweeper:\n    params:\n"
                                   "      optimizer.lr: 0.1,0.2\n" + QUICK),
        ".gitignore": ".expctl/\n/data/\n",
        "expctl.yaml": "code_paths: [code]\ndata_root: data\nlocal:\n  parallelism: 4\n",
    })
    for label in ("cat", "dog"):
        for i in range(5):
            target = path / "data" / "shapes" / "b1" / label / f"{i}.txt"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f"{label}-{i}")
    return repo


def identities(plan: dict[str, Any]) -> list[tuple[str, ...]]:
    return sorted((c["name"], c["experiment"], c["run_key"], c["spec_hash"] or "", c["action"])
                  for c in plan["changes"])


def test_the_same_configs_give_the_same_identities(tmp_path: Path, old_src: Path) -> None:
    """Run keys, names and spec hashes (a validation job's too) are what the previous release computed."""
    repo = project(tmp_path / "repo")
    repo.write("experiments/validated.yaml", VALIDATED)
    repo.commit("a validated experiment")
    old = run_previous(old_src, repo.path, "plan", "-o", "json")
    assert old.returncode == 0, old.stderr
    new = e2e.plan_json(repo.path)
    assert identities(new) == identities(json.loads(old.stdout))
    assert any(c["name"].startswith("validated-val-") and c["spec_hash"] for c in new["changes"])


def test_runs_the_previous_release_applied_are_a_no_op_plan(tmp_path: Path, old_src: Path) -> None:
    repo = project(tmp_path / "repo")
    applied = run_previous(old_src, repo.path, "apply", "-y", "--wait", "--timeout", "120")
    assert applied.returncode == 0, applied.stderr
    assert "Finished: 3 succeeded." in applied.stdout
    settled = run_previous(old_src, repo.path, "apply", "-y")  # the previous release settles them into its ledger
    assert settled.returncode == 0, settled.stderr
    uri = e2e.embedded_uri(repo.path)
    before = e2e.mlflow_runs(uri, ["single", "sweep"])

    plan = e2e.expctl(repo.path, "plan", "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "No changes. (3 unchanged)" in plan.stdout
    status = e2e.expctl(repo.path, "status", "-o", "json")
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)
    assert sorted(r["state"] for r in rows) == ["Succeeded"] * 3
    history = e2e.expctl(repo.path, "history")
    assert history.returncode == 0, history.stderr
    assert history.stdout.count(" create ") == 3
    name = rows[0]["run"]
    described = e2e.expctl(repo.path, "describe", name)
    assert described.returncode == 0 and "attempt 1" in described.stdout, described.stderr

    again = e2e.expctl(repo.path, "apply", "-y")
    assert again.returncode == 0, again.stderr
    assert "No changes." in again.stdout
    after = e2e.mlflow_runs(uri, ["single", "sweep"])
    assert sorted(r.info.run_id for r in after) == sorted(r.info.run_id for r in before)
