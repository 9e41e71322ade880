"""``describe`` reads the specs a plan (or an earlier describe) kept, and never shows a stale one.

Real git, real processes, the embedded store. Whether a command composed is seen from outside: ``python -X
importtime`` lists Hydra's modules only when it did.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.gitrepo import GitRepo

pytestmark = pytest.mark.integration

CONFIG = "seed: 0\noptimizer:\n  lr: 0.1\nexpctl:\n  command: [python, -c, pass]\n"
SWEEP = "defaults:\n  - config\n  - _self_\nhydra:\n  sweeper:\n    params:\n      seed: 1,2\n"


def expctl(repo: Path, *args: str, importtime: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "EXPCTL_BACKEND", "CI")}
    flags = ["-X", "importtime"] if importtime else []
    proc = subprocess.run([sys.executable, *flags, "-m", "expctl", *args], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"expctl {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
    return proc


def describe(repo: Path, run: str) -> tuple[dict[str, Any], bool]:
    """(describe's JSON, whether it composed with Hydra)."""
    proc = expctl(repo, "describe", run, "-o", "json", importtime=True)
    modules = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time")}
    info: dict[str, Any] = json.loads(proc.stdout)
    return info, "hydra" in modules


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> tuple[GitRepo, str]:
    repo = GitRepo(tmp_path_factory.mktemp("spec-cache") / "repo")
    repo.write("conf/config.yaml", CONFIG)
    repo.write("experiments/sweep.yaml", SWEEP)
    repo.write("expctl.yaml", "backend: local\n")
    repo.write(".gitignore", ".expctl/\n")
    repo.commit("a sweep")
    expctl(repo.path, "apply", "-y", "--wait", "--timeout", "300")
    (row, _) = json.loads(expctl(repo.path, "status", "-o", "json").stdout)
    return repo, str(row["run"])


def cache_dir(repo: GitRepo) -> Path:
    return repo.path / ".expctl" / "cache" / "specs"


def test_describe_from_the_cache_equals_composing(applied: tuple[GitRepo, str]) -> None:
    repo, run = applied
    shutil.rmtree(cache_dir(repo), ignore_errors=True)
    composed, hydra = describe(repo.path, run)
    assert hydra, "without a cache describe composes"
    assert composed["in_sync"] is True and composed["config"]["optimizer"]["lr"] == 0.1
    cached, hydra = describe(repo.path, run)
    assert not hydra, "the second describe at the same commit composed again"
    assert cached == composed

    shutil.rmtree(cache_dir(repo))
    expctl(repo.path, "plan")  # the plan keeps every run's spec for describe
    from_plan, hydra = describe(repo.path, run)
    assert not hydra and from_plan == composed


def test_an_unusable_cache_is_a_miss_never_a_wrong_answer(applied: tuple[GitRepo, str]) -> None:
    repo, run = applied
    expctl(repo.path, "plan")
    (path,) = cache_dir(repo).iterdir()
    body = json.loads(path.read_text())
    truth, _ = describe(repo.path, run)
    for broken in ({**body, "fingerprint": "0" * 64}, {**body, "commit": "f" * 40}, {**body, "format": 0}):
        broken["runs"] = {key: ["bogus-hash", {"lie": True}] for key in body["runs"]}
        path.write_text(json.dumps(broken))
        shown, hydra = describe(repo.path, run)
        assert hydra and shown == truth
    path.write_text("{not json")
    shown, hydra = describe(repo.path, run)
    assert hydra and shown == truth


def test_a_new_commit_is_composed_again(applied: tuple[GitRepo, str]) -> None:
    repo, run = applied
    expctl(repo.path, "plan")
    before, _ = describe(repo.path, run)
    assert before["in_sync"] is True
    repo.write("conf/config.yaml", CONFIG.replace("lr: 0.1", "lr: 0.2"))
    repo.commit("a new learning rate")
    after, hydra = describe(repo.path, run)
    assert hydra and after["in_sync"] is False
    assert after["config"]["optimizer"]["lr"] == 0.2 and after["desired_spec_hash"] != before["desired_spec_hash"]
    again, hydra = describe(repo.path, run)
    assert not hydra and again == after


def test_nothing_is_cached_where_the_environment_could_change_the_config(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("conf/config.yaml", CONFIG)
    repo.write("experiments/sweep.yaml", SWEEP)
    repo.write("expctl.yaml", "backend: local\nallow_resolvers: [oc.env]\n")
    repo.commit("resolvers allowed")
    expctl(repo.path, "plan")
    assert not cache_dir(repo).exists()
    repo.write("expctl.yaml", "backend: local\n")
    repo.commit("no resolvers")
    expctl(repo.path, "plan", "--worktree")  # the working tree is not a commit: nothing kept
    assert not cache_dir(repo).exists()
    expctl(repo.path, "plan")
    assert len(list(cache_dir(repo).iterdir())) == 1
