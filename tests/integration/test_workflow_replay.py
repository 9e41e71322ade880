"""Issue 5, the reconcile workflow replayed: its own ``run:`` scripts, run as the runner runs them, on a real repo.

The plan job's and the apply job's steps that call expctl are read from ``.github/workflows/reconcile.yml`` and
run with ``bash --noprofile --norc -eo pipefail`` (GitHub's ``shell: bash``), with ``GITHUB_OUTPUT``,
``GITHUB_ENV``, ``RUNNER_TEMP`` and ``GITHUB_ACTOR`` as the runner provides them, the workflow's unset secrets and
variables as empty strings, against a temporary git repository with the embedded MLflow store. The apply job
skips its Apply and Results report steps on the local backend (a hosted runner would discard the runs); the
replay runs the commands those steps would run, ignoring the steps' ``if:``. Without a token (the workflow's
``${{ github.token }}`` is empty here, as a fork's pull request has none) the report goes to the step summary.

commit → plan exits 2 → apply → plan exits 0 → edit one sweep value, commit → plan lists exactly that run →
apply → ``expctl history`` shows both applies with their authors.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import e2e
from tests.support.gitrepo import ROOT, GitRepo

pytestmark = pytest.mark.integration

WORKFLOW = ROOT / ".github" / "workflows" / "reconcile.yml"
EXPERIMENT = "replay-sweep"
CALLS_EXPCTL = re.compile(r"(^|[\s(|&;])expctl (validate|plan|apply|report)\b", re.MULTILINE)


def expctl_steps(job: str) -> list[dict[str, Any]]:
    """The steps of ``job`` whose scripts call expctl, in order."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    steps = [s for s in workflow["jobs"][job]["steps"] if CALLS_EXPCTL.search(str(s.get("run", "")))]
    assert steps, f"the {job} job of {WORKFLOW.name} runs no expctl command"
    return steps


class Runner:
    """Runs workflow steps like a GitHub-hosted runner would, in the repository's checkout."""

    def __init__(self, repo: Path, tmp: Path) -> None:
        self.repo = repo
        self.tmp = tmp
        self.count = 0

    def run(self, step: dict[str, Any], actor: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
        self.count += 1
        output, env_file = self.tmp / f"output-{self.count}", self.tmp / f"env-{self.count}"
        output.touch()
        env_file.touch()
        env = e2e.clean_env()
        env.update({
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
            "GITHUB_OUTPUT": str(output), "GITHUB_ENV": str(env_file), "RUNNER_TEMP": str(self.tmp),
            "GITHUB_STEP_SUMMARY": str(self.tmp / "summary.md"), "GITHUB_ACTOR": actor, "CI": "true",
            # the workflow's ${{ vars.* }} and ${{ secrets.* }}: empty when unset, as in a fresh repository
            "EXPCTL_BACKEND": "", "MLFLOW_TRACKING_URI": "", "MLFLOW_TRACKING_TOKEN": "",
        })
        for key, value in (step.get("env") or {}).items():  # step env: expressions of the event are empty
            env[key] = "" if "${{" in str(value) else str(value)
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", str(step["run"])],
                              cwd=self.repo, env=env, capture_output=True, text=True, timeout=600, check=False)
        outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
        return proc, outputs

    def plan_job(self, actor: str) -> dict[str, Any]:
        (step,) = expctl_steps("plan")
        proc, outputs = self.run(step, actor)
        assert proc.returncode == 0, f"{step['name']} failed:\n{proc.stdout}\n{proc.stderr}"
        return {"exit_code": int(outputs["exit_code"]), "markdown": (self.repo / "plan.md").read_text(),
                "plan": json.loads((self.repo / "plan.json").read_text())}

    def apply_job(self, actor: str) -> str:
        outputs: dict[str, str] = {}
        for step in expctl_steps("apply"):
            proc, new = self.run(step, actor)
            assert proc.returncode == 0, f"{step['name']} failed:\n{proc.stdout}\n{proc.stderr}"
            outputs.update(new)
        return outputs.get("backend", "")


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[GitRepo]:
    project = e2e.make_project(tmp_path / "repo",
                               {EXPERIMENT: e2e.experiment(quick=True, sweep={"optimizer.lr": "0.1,0.2"})})
    project.write(".gitignore", ".expctl/\n__pycache__/\nplan.md\nplan.json\nvalidate.err\nplan.err\n")
    project.commit("ignore the workflow's files", author=e2e.ADA)
    yield project
    e2e.stop_jobs(project.path)


def test_the_reconcile_workflow_replayed(repo: GitRepo, tmp_path: Path) -> None:
    runner = Runner(repo.path, tmp_path / "runner")
    runner.tmp.mkdir()
    first_commit = repo.git("rev-parse", "HEAD")

    # pull request: changes pending (exit 2, which does not fail the job)
    pending = runner.plan_job("ada-gh")
    assert pending["exit_code"] == 2
    assert "**Plan: 2 to create, 0 to retry, 0 to replace, 0 to delete. (0 unchanged)**" in pending["markdown"]
    assert [c["action"] for c in pending["plan"]["changes"]] == ["create", "create"]

    # push to main: the apply job; its report has no token here (as a fork's), so it is the step summary
    assert runner.apply_job("ada-gh") == "local"
    summary = (runner.tmp / "summary.md").read_text()
    assert summary.startswith(f"<!-- expctl-report -->\n### expctl report for `{first_commit[:12]}`"), summary
    assert "No experiments changed in this commit" in summary  # it only told git to ignore files
    assert len(e2e.run_states(repo.path)) == 2
    converged = runner.plan_job("ada-gh")
    assert converged["exit_code"] == 0
    assert "**No changes. (2 unchanged)**" in converged["markdown"]

    # the next pull request edits one sweep value: the plan lists exactly the changed run
    repo.write(f"experiments/{EXPERIMENT}.yaml", e2e.experiment(quick=True, sweep={"optimizer.lr": "0.1,0.3"}))
    second_commit = repo.commit("lr 0.2 -> 0.3", author=e2e.BOB)
    changed = runner.plan_job("bob-gh")
    assert changed["exit_code"] == 2
    writes = e2e.writes(changed["plan"])
    assert [(c["action"], c["overrides"]) for c in writes] == [("create", ["optimizer.lr=0.3"])]
    rows = [ln for ln in changed["markdown"].splitlines() if ln.startswith("| + |")]
    assert len(rows) == 1 and f"`{writes[0]['name']}`" in rows[0] and "`optimizer.lr=0.3`" in rows[0]

    assert runner.apply_job("bob-gh") == "local"
    summary = (runner.tmp / "summary.md").read_text().split("<!-- expctl-report -->\n")[-1]
    assert summary.startswith(f"### expctl report for `{second_commit[:12]}`") and "#### replay-sweep" in summary
    assert "`optimizer.lr=0.3`" in summary and "`optimizer.lr=0.1`" in summary
    assert writes[0]["name"] in e2e.run_states(repo.path)
    assert runner.plan_job("bob-gh")["exit_code"] == 0

    # the audit trail: both applies, who (commit author via the CI actor), from which commit
    history = e2e.expctl(repo.path, "history", "--output", "json")
    assert history.returncode == 0, history.stderr
    entries = [(e["who"], e["commit"], e["action"]) for e in json.loads(history.stdout)]
    assert entries == [(f"{e2e.BOB} via github:bob-gh", second_commit, "create")] + [
        (f"{e2e.ADA} via github:ada-gh", first_commit, "create")] * 2
    human = e2e.expctl(repo.path, "history").stdout.splitlines()
    assert len(human) == 3 and "via github:bob-gh" in human[0] and all("via github:ada-gh" in ln for ln in human[1:])
