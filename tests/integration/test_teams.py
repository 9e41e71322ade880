"""Teams on the local backend, end to end (real git, real processes, the embedded MLflow store): the plan groups
changes by team, runs and the audit trail carry their team, and status, history and cancel take ``--team``.

Every command is its own ``expctl`` process, as an operator types it. The jobs hold until the test releases them
(or cancels them), so nothing depends on timing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import jobs
from tests.support.gitrepo import GitRepo
from tests.support.teams_project import expctl

pytestmark = pytest.mark.integration

CONFIG = "seed: 0\nlines: 1\nrelease: \"\"\nexpctl:\n  kind: PyTorchJob\n  command: [python, code/job.py]\n"
TEAMS = """\
code_paths: [code]
local:
  parallelism: 8
teams:
  - name: vision
    paths: [experiments/vision]
    members: ["@alice"]
    gpus: 8
  - name: nlp
    paths: [experiments/nlp]
    members: ["@bob"]
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GitRepo, Path]]:
    base = tmp_path_factory.mktemp("teams")
    hold = base / "hold"
    repo = GitRepo(base / "repo")
    held = f"defaults:\n  - config\n  - _self_\nrelease: {hold}\n"
    for rel, text in {".gitignore": ".expctl/\n", "expctl.yaml": TEAMS, "code/job.py": jobs.source("replica_lines"),
                      "conf/config.yaml": CONFIG, "experiments/vision/resnet.yaml": held,
                      "experiments/vision/vit.yaml": held + "hydra:\n  sweeper:\n    params:\n      seed: 1,2\n",
                      "experiments/nlp/bert.yaml": held}.items():
        repo.write(rel, text)
    repo.commit("two teams")
    try:
        yield repo, hold
    finally:
        hold.touch()
        expctl(repo, "apply", "-y", "--wait", "--timeout", "120")  # every held job ends before the module does


def test_the_plan_groups_changes_by_team(project: tuple[GitRepo, Path]) -> None:
    repo, _ = project
    human = expctl(repo, "plan").stdout.splitlines()
    headers = [ln.strip() for ln in human if ln.strip().startswith("team ")]
    assert headers == ["team nlp", "team vision"], human
    after_nlp = human[human.index("  team nlp") + 1]
    assert "nlp/bert" in after_nlp and "vision" not in after_nlp
    plan = json.loads(expctl(repo, "plan", "-o", "json").stdout)
    assert sorted((c["experiment"], c["team"]) for c in plan["changes"]) == [
        ("nlp/bert", "nlp"), ("vision/resnet", "vision"), ("vision/vit", "vision"), ("vision/vit", "vision")]


def test_status_history_and_cancel_by_team(project: tuple[GitRepo, Path]) -> None:
    repo, _ = project
    expctl(repo, "apply", "-y")

    def status(*args: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(expctl(repo, "status", "-o", "json", *args).stdout)
        return rows

    assert sorted(r["experiment"] for r in status("--team", "vision")) == ["vision/resnet", "vision/vit",
                                                                         "vision/vit"]
    assert [r["experiment"] for r in status("--team", "nlp")] == ["nlp/bert"]
    wrong = expctl(repo, "status", "--team", "speech", code=1)
    assert wrong.stderr == "error: --team speech: no such team in expctl.yaml (teams: vision, nlp)\n"

    history = json.loads(expctl(repo, "history", "--team", "nlp", "-o", "json").stdout)
    assert [(e["action"], e["experiment"], e["team"]) for e in history] == [("create", "nlp/bert", "nlp")]
    assert len(json.loads(expctl(repo, "history", "--team", "vision", "-o", "json").stdout)) == 3

    cancelled = expctl(repo, "cancel", "--team", "vision").stdout.splitlines()
    assert len(cancelled) == 3 and all(ln.startswith("cancelled vision-") for ln in cancelled), cancelled
    assert [r["state"] for r in status("--team", "nlp")] == ["Running"]
    assert {r["state"] for r in status("--team", "vision")} == {"Cancelled"}
    latest = json.loads(expctl(repo, "history", "--team", "vision", "--limit", "3", "-o", "json").stdout)
    assert [(e["action"], e["team"]) for e in latest] == [("cancel", "vision")] * 3


def test_codeowners_follow_the_teams_and_validate_refuses_a_hand_edit(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    for rel, text in {".gitignore": ".expctl/\n", "expctl.yaml": TEAMS.replace('["@alice"]', '["@alice", "@org/cv"]'),
                      "code/job.py": "", "conf/config.yaml": CONFIG,
                      "experiments/vision/resnet.yaml": "defaults:\n  - config\n  - _self_\n",
                      "experiments/nlp/bert.yaml": "defaults:\n  - config\n  - _self_\n"}.items():
        repo.write(rel, text)
    repo.commit("two teams")
    assert expctl(repo, "teams", "codeowners").stdout == "wrote .github/CODEOWNERS: commit it with expctl.yaml\n"
    written = (repo.path / ".github/CODEOWNERS").read_text()
    assert written.splitlines()[1:] == ["# team vision", "/experiments/vision/ @alice @org/cv", "# team nlp",
                                        "/experiments/nlp/ @bob"]
    assert expctl(repo, "teams", "codeowners").stdout == ".github/CODEOWNERS is up to date\n"
    repo.commit("CODEOWNERS from the teams")
    expctl(repo, "validate")
    repo.write(".github/CODEOWNERS", written + "/experiments/nlp/ @mallory\n")
    repo.commit("a hand edit")
    refused = expctl(repo, "validate", code=1)
    assert refused.stderr == ("error: .github/CODEOWNERS: does not match expctl.yaml's teams (edited by hand, or the "
                              "teams changed): run `expctl teams codeowners` and commit it\n")
    # a team not declared is refused even where no run is there to filter (this repository has none)
    for command in ("status", "cancel"):
        wrong = expctl(repo, command, "--team", "speech", code=1)
        assert wrong.stderr == "error: --team speech: no such team in expctl.yaml (teams: vision, nlp)\n"


def test_two_teams_claiming_one_path_is_one_line_and_nothing_runs(tmp_path: Path) -> None:
    """The CLI route of the check: validate, plan and apply each refuse in one line naming expctl.yaml and the key,
    and apply launches nothing."""
    repo = GitRepo(tmp_path / "repo")
    claimed = TEAMS.replace("paths: [experiments/nlp]", "paths: [experiments/vision/resnet]")
    for rel, text in {".gitignore": ".expctl/\n", "expctl.yaml": claimed, "code/job.py": "", "conf/config.yaml": CONFIG,
                      "experiments/vision/resnet.yaml": "defaults:\n  - config\n  - _self_\n"}.items():
        repo.write(rel, text)
    repo.commit("nlp claims vision's experiment")
    for command in (("validate",), ("plan",), ("apply", "-y")):
        refused = expctl(repo, *command, code=1)
        lines = refused.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: expctl.yaml: teams.1.paths.0: "), refused.stderr
        assert "experiments/vision" in lines[0], refused.stderr
    assert not (repo.path / ".expctl" / "runs").exists() or not any((repo.path / ".expctl" / "runs").iterdir())
