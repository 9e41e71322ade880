"""``expctl plan`` on a real git repository, with the in-memory backend and tracker injected.

Covers the three output views, exit codes, saved plans, --worktree and the dirty-tree warning, and proves
that a secret in the environment never reaches any plan output.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from expctl.backends.base import Backend
from expctl.cli import main
from expctl.config.schema import Settings
from expctl.core.model import Phase
from expctl.engine.workspace import Workspace
from expctl.tracking.base import Tracker
from tests.support.fakes import FakeBackend, FakeTracker
from tests.support.gitrepo import GitRepo

SWEEP = ("defaults:\n  - config\n  - _self_\nhydra:\n  sweeper:\n    params:\n      model: small,large\n"
         "      optimizer.lr: 0.1,0.2,0.3\n")


class FakeWorkspace(Workspace):
    def __init__(self, repo: Path) -> None:
        super().__init__(repo)
        self.backend = FakeBackend()
        self.tracker = FakeTracker()

    def backend_name(self, settings: Settings, requested: str | None) -> str:
        return "fake"

    def open_backend(self, name: str, settings: Settings) -> Backend:
        return self.backend

    def open_tracker(self, settings: Settings, backend_name: str) -> Tracker:
        return self.tracker


@pytest.fixture
def repo(make_repo: Callable[[dict[str, str]], GitRepo]) -> GitRepo:
    return make_repo({"experiments/sweep.yaml": SWEEP, "experiments/single.yaml": "defaults:\n  - config\n"})


def invoke(ws: Workspace, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), obj={"workspace": ws}, catch_exceptions=False)


def test_human_plan_is_terraform_like(repo: GitRepo) -> None:
    result = invoke(FakeWorkspace(repo.path), "plan")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith("expctl plan · ") and lines[0].endswith("backend fake")
    creates = [ln for ln in lines if ln.strip().startswith("+ create")]
    assert len(creates) == 7
    assert any("sweep   model=large optimizer.lr=0.2  (missing)" in ln for ln in creates)
    assert lines[-1] == "Plan: 7 to create, 0 to retry, 0 to replace, 0 to delete. (0 unchanged)"


def test_json_plan_has_the_documented_schema(repo: GitRepo) -> None:
    result = invoke(FakeWorkspace(repo.path), "plan", "--output", "json")
    data = json.loads(result.output)
    assert data["schema_version"] == 1
    assert data["commit"] == repo.git("rev-parse", "HEAD")
    change = data["changes"][0]
    assert {"action", "reason", "experiment", "run_key", "name", "overrides", "spec_hash"} <= set(change)
    assert data["summary"]["create"] == 7


def test_markdown_plan_is_a_table(repo: GitRepo) -> None:
    result = invoke(FakeWorkspace(repo.path), "plan", "-o", "markdown")
    assert result.output.startswith("### expctl plan for `")
    assert "| + | create |" in result.output and "**Plan: 7 to create" in result.output


def test_detailed_exitcode_and_no_changes_after_apply(repo: GitRepo) -> None:
    ws = FakeWorkspace(repo.path)
    assert invoke(ws, "plan", "--detailed-exitcode").exit_code == 2
    applied = invoke(ws, "apply", "-y")
    assert applied.exit_code == 0, applied.output
    assert len(ws.backend.objects) == 7 and len(ws.tracker.runs) == 7
    again = invoke(ws, "plan", "--detailed-exitcode")
    assert again.exit_code == 0
    assert "No changes. (7 unchanged)" in again.output
    writes = len(ws.backend.writes)
    assert "No changes." in invoke(ws, "apply", "-y").output
    assert len(ws.backend.writes) == writes


def test_editing_one_sweep_value_plans_exactly_the_changed_runs(repo: GitRepo) -> None:
    ws = FakeWorkspace(repo.path)
    invoke(ws, "apply", "-y")
    for name in list(ws.backend.objects):
        ws.backend.finish(name, Phase.SUCCEEDED)
    repo.write("experiments/sweep.yaml", SWEEP.replace("0.1,0.2,0.3", "0.1,0.2,0.4"))
    repo.commit("lr 0.3 -> 0.4")
    data = json.loads(invoke(ws, "plan", "-o", "json").output)
    actions = [(c["action"], c["overrides"]) for c in data["changes"] if c["action"] != "noop"]
    assert sorted(actions) == [("create", ["model=large", "optimizer.lr=0.4"]),
                               ("create", ["model=small", "optimizer.lr=0.4"])]
    assert data["summary"]["would_prune"] == 2


def test_saved_plan_applies_exactly_and_refuses_when_stale(repo: GitRepo, tmp_path: Path) -> None:
    ws = FakeWorkspace(repo.path)
    planfile = tmp_path / "plan.json"
    invoke(ws, "plan", "--out", str(planfile))
    assert invoke(ws, "apply", "-y", str(planfile)).exit_code == 0
    assert len(ws.backend.objects) == 7
    invoke(ws, "plan", "--out", str(planfile))
    ws.backend.finish(next(iter(ws.backend.objects)), Phase.SUCCEEDED)
    stale = invoke(ws, "apply", "-y", str(planfile))
    assert stale.exit_code == 1
    assert "saved plan is stale" in stale.output


def test_apply_refuses_to_prompt_without_a_terminal(repo: GitRepo) -> None:
    ws = FakeWorkspace(repo.path)
    result = invoke(ws, "apply")
    assert result.exit_code == 1 and "refusing to prompt" in result.output
    assert ws.backend.objects == {}


def test_worktree_plans_are_marked_and_dirty_trees_warned(repo: GitRepo) -> None:
    repo.write("experiments/new.yaml", "defaults:\n  - config\n")
    ws = FakeWorkspace(repo.path)
    committed = CliRunner().invoke(main, ["plan"], obj={"workspace": ws})
    assert "warning: uncommitted changes are not part of this plan: experiments/new.yaml" in committed.output
    assert "7 to create" in committed.output
    worktree = invoke(ws, "plan", "--worktree")
    assert "working tree (uncommitted)" in worktree.output and "8 to create" in worktree.output


def test_a_secret_in_the_environment_never_reaches_plan_output(
    make_repo: Callable[[dict[str, str]], GitRepo], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-value-that-must-not-leak"
    monkeypatch.setenv("EXPCTL_TEST_SECRET", secret)
    exp = "defaults:\n  - config\n  - _self_\ntoken: ${oc.env:EXPCTL_TEST_SECRET}\n"
    repo = make_repo({"experiments/leak.yaml": exp})
    ws = FakeWorkspace(repo.path)
    refused = CliRunner().invoke(main, ["plan"], obj={"workspace": ws})
    assert refused.exit_code == 1 and "resolver 'oc.env' is not allowed" in refused.output
    # even when a project allow-lists the resolver, no view of the plan shows resolved values
    repo.write("expctl.yaml", "code_paths: [code]\nallow_resolvers: [oc.env]\n")
    repo.commit("allow env")
    for output in ("human", "json", "markdown"):
        result = invoke(ws, "plan", "-o", output)
        assert result.exit_code == 0
        assert secret not in result.output
    assert secret not in invoke(ws, "validate").output
