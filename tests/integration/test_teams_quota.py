"""A team's GPU quota on the local backend (4 fake GPUs, real git, real processes, the embedded MLflow store):
runs beyond the quota wait in the plan, start once the team's runs free their GPUs, and ``teams status`` shows
each team's quota, GPUs in use and runs. The jobs hold until the test releases them: nothing depends on timing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import jobs
from tests.support.gitrepo import GitRepo
from tests.support.teams_project import expctl

pytestmark = pytest.mark.integration

GPUS = {"EXPCTL_LOCAL_GPUS": "4"}
CONFIG = ("seed: 0\nlines: 1\nrelease: \"\"\nexpctl:\n  kind: PyTorchJob\n  command: [python, code/job.py]\n"
          "  resources: {gpus: 2}\n")
TEAMS = """\
code_paths: [code]
local:
  parallelism: 8
teams:
  - name: vision
    paths: [experiments/vision]
    gpus: 2
  - name: nlp
    paths: [experiments/nlp]
"""


def test_runs_over_the_quota_wait_and_start_when_gpus_free_up(tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    repo = GitRepo(tmp_path / "repo")
    held = f"defaults:\n  - config\n  - _self_\nrelease: {hold}\n"
    for rel, text in {".gitignore": ".expctl/\n", "expctl.yaml": TEAMS, "code/job.py": jobs.source("replica_lines"),
                      "conf/config.yaml": CONFIG, "experiments/nlp/bert.yaml": held,
                      "experiments/vision/vit.yaml": held + "hydra:\n  sweeper:\n    params:\n      seed: 1,2\n"
                      }.items():
        repo.write(rel, text)
    repo.commit("vision has 2 GPUs, each of its runs takes 2")
    try:
        plan = json.loads(expctl(repo, "plan", "-o", "json", env=GPUS).stdout)
        states = sorted((c["experiment"], c["action"], c["detail"]) for c in plan["changes"])
        assert states == [("nlp/bert", "create", ""), ("vision/vit", "create", ""),
                          ("vision/vit", "noop", "quota: vision 2/2 GPUs")]
        waiting = next(c for c in plan["changes"] if c["action"] == "noop")
        shown = expctl(repo, "plan", env=GPUS).stdout
        assert f"waiting     {waiting['name']}" in shown and "(quota: vision 2/2 GPUs)" in shown, shown

        expctl(repo, "apply", "-y", env=GPUS)
        rows = json.loads(expctl(repo, "status", "-o", "json", env=GPUS).stdout)
        assert sorted((r["experiment"], r["team"]) for r in rows) == [("nlp/bert", "nlp"), ("vision/vit", "vision")]
        assert waiting["name"] not in {r["run"] for r in rows}  # not started: the quota holds it
        usage = json.loads(expctl(repo, "teams", "status", "-o", "json", env=GPUS).stdout)
        assert usage == [
            {"team": "vision", "quota_gpus": 2, "gpus_in_use": 2, "running": 1, "pending": 0, "waiting": 1,
             "workspace": None, "runs": 1},
            {"team": "nlp", "quota_gpus": None, "gpus_in_use": 2, "running": 1, "pending": 0, "waiting": 0,
             "workspace": None, "runs": 1}]
        table = expctl(repo, "teams", "status", env=GPUS).stdout.splitlines()
        assert table[0].split() == ["TEAM", "QUOTA", "GPUS", "IN", "USE", "RUNNING", "PENDING", "WAITING"]
        assert table[1].split() == ["vision", "2", "2", "1", "0", "1"] and table[2].split()[:2] == ["nlp", "-"]

        hold.touch()  # the first runs end; --wait starts the held one as soon as vision's GPUs are free
        done = expctl(repo, "apply", "-y", "--wait", "--timeout", "120", env=GPUS)
        assert "Finished: 3 succeeded." in done.stdout, done.stdout
        after = json.loads(expctl(repo, "teams", "status", "-o", "json", env=GPUS).stdout)[0]
        assert (after["gpus_in_use"], after["running"], after["waiting"]) == (0, 0, 0)
        repo.path.joinpath(".expctl", "done").touch()
    finally:
        hold.touch()
        if not repo.path.joinpath(".expctl", "done").exists():  # a failure above: every held job ends here
            expctl(repo, "apply", "-y", "--wait", "--timeout", "120", env=GPUS)
