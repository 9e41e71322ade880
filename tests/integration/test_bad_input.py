"""Bad input gets one line naming the file and key, exit 1, no traceback — and nothing is written.

Each case is a real git repository and a real ``expctl`` process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.gitrepo import GitRepo

BASE = "defaults:\n  - config\n  - _self_\n"


def sweep(params: str) -> str:
    return BASE + "hydra:\n  sweeper:\n    params:\n" + params


CASES: list[tuple[str, dict[str, str], list[str], str]] = [
    # (id, files to add, extra args, expected fragment of the one error line)
    ("yaml syntax", {"experiments/bad.yaml": "defaults: [config\nx: 1\n"}, [],
     "experiments/bad.yaml: line 2: YAML syntax error"),
    ("unknown group option", {"experiments/e.yaml": "defaults:\n  - config\n  - override /model: smal\n"},
     [], "experiments/e.yaml: defaults.model: unknown option 'smal' in group 'model' (did you mean 'small'?)"),
    ("missing ??? value", {"experiments/e.yaml": BASE + "data_dir: ???\n"}, [],
     "experiments/e.yaml: data_dir: missing mandatory value"),
    ("interpolation to a missing key", {"experiments/e.yaml": BASE + "lr2: ${optimizer.lrr}\n"}, [],
     "experiments/e.yaml: lr2: interpolation to a missing key"),
    ("cyclic interpolation", {"experiments/e.yaml": BASE + "a: ${b}\nb: ${a}\n"}, [],
     "experiments/e.yaml"),
    ("unknown key in the expctl block", {"experiments/e.yaml": BASE + "expctl:\n  replica: 2\n"}, [],
     "experiments/e.yaml: expctl.replica: unknown key (did you mean 'replicas'?)"),
    ("unknown nested key in the expctl block",
     {"experiments/e.yaml": BASE + "expctl:\n  resources:\n    gpu: 1\n"}, [],
     "experiments/e.yaml: expctl.resources.gpu: unknown key (did you mean 'gpus'?)"),
    ("invalid experiment name", {"experiments/Bad_Name.yaml": BASE}, [],
     "experiments/Bad_Name.yaml: invalid experiment name 'Bad_Name'"),
    ("sweep over a key that does not exist", {"experiments/e.yaml": sweep("      optimizer.lrr: 0.1,0.2\n")},
     [], "experiments/e.yaml: hydra.sweeper.params.optimizer.lrr: sweep over a key that does not exist "
         "(did you mean 'optimizer.lr'?)"),
    ("interval sweep", {"experiments/e.yaml": sweep("      optimizer.lr: interval(0.1,0.2)\n")}, [],
     "experiments/e.yaml: hydra.sweeper.params.optimizer.lr: interval sweep cannot be enumerated"),
    ("shuffle sweep", {"experiments/e.yaml": sweep("      seed: shuffle(1,2,3)\n")}, [],
     "experiments/e.yaml: hydra.sweeper.params.seed: shuffle() sweeps are not deterministic"),
    ("sweep over the cap", {"experiments/e.yaml": sweep("      seed: range(0,200)\n      optimizer.lr: "
                                                         "range(0,60)\n")}, [],
     "experiments/e.yaml: hydra.sweeper.params: sweep expands to 12,000 runs, over the cap of 10,000"),
    ("broken sweep grammar", {"experiments/e.yaml": sweep("      seed: range(1,\n")}, [],
     "experiments/e.yaml: hydra.sweeper.params.seed: invalid sweep"),
    ("duplicate experiment names", {"experiments/a/b-c.yaml": BASE, "experiments/a-b/c.yaml": BASE}, [],
     "duplicate experiment name 'a-b-c'"),
    ("negative replicas", {"experiments/e.yaml": BASE + "expctl:\n  replicas: -1\n"}, [],
     "experiments/e.yaml: expctl.replicas: input should be greater than or equal to 1 (got -1)"),
    ("negative GPUs", {"experiments/e.yaml": BASE + "expctl:\n  resources:\n    gpus: -2\n"}, [],
     "experiments/e.yaml: expctl.resources.gpus: input should be greater than or equal to 0 (got -2)"),
    ("unknown job kind", {"experiments/e.yaml": BASE + "expctl:\n  kind: PytorchJob\n"}, [],
     "experiments/e.yaml: expctl.kind: input should be"),
    ("environment resolver", {"experiments/e.yaml": BASE + "token: ${oc.env:HOME}\n"}, [],
     "experiments/e.yaml: token: resolver 'oc.env' is not allowed in committed configs"),
    ("unknown key in expctl.yaml", {"expctl.yaml": "code_path: [code]\n"}, [],
     "expctl.yaml: code_path: unknown key (did you mean 'code_paths'?)"),
    ("namespace outside the tenant",
     {"expctl.yaml": "code_paths: [code]\ntenants:\n  - {path: experiments/team-a, namespace: team-a}\n",
      "experiments/team-a/e.yaml": BASE + "expctl:\n  namespace: team-b\n"}, [],
     "experiments/team-a/e.yaml: expctl.namespace: namespace 'team-b' is outside this tenant's namespace 'team-a'"),
    ("non-existent --rev", {}, ["--rev", "no-such-branch"], "--rev no-such-branch: no such commit"),
]


def run_expctl(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "expctl", *args], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120, check=False)


def tree_listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if ".git" not in p.parts)


@pytest.mark.parametrize(("files", "args", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(make_repo: Callable[[dict[str, str]], GitRepo], files: dict[str, str], args: list[str],
                   expected: str) -> None:
    repo = make_repo({"experiments/good.yaml": BASE, **files})
    before = tree_listing(repo.path)
    for command in (["validate"], ["apply", "-y"]):
        proc = run_expctl(repo.path, *command, *args)
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("error: ")
        assert expected in lines[0], lines[0]
        assert proc.stdout == ""
    assert tree_listing(repo.path) == before  # nothing written: no .expctl/, no MLflow store, no worktree


def test_validate_reports_every_error_at_once(make_repo: Callable[[dict[str, str]], GitRepo]) -> None:
    repo = make_repo({"experiments/a.yaml": BASE + "expctl:\n  replica: 2\n",
                      "experiments/b.yaml": BASE + "x: ${nope}\n",
                      "experiments/ok.yaml": BASE})
    proc = run_expctl(repo.path, "validate")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert [ln.split(":")[1].strip() for ln in lines] == ["experiments/a.yaml", "experiments/b.yaml"]


def test_no_experiments_directory(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "empty")
    repo.write("README.md", "nothing\n")
    repo.commit()
    proc = run_expctl(repo.path, "validate")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: experiments/: no experiments/ directory at this commit (nothing is " \
                                  "desired)"


def test_debug_shows_the_traceback(make_repo: Callable[[dict[str, str]], GitRepo]) -> None:
    repo = make_repo({"experiments/e.yaml": BASE + "expctl:\n  replica: 2\n"})
    proc = run_expctl(repo.path, "validate", env={"EXPCTL_DEBUG": "1"})
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_not_a_git_repository(tmp_path: Path) -> None:
    proc = run_expctl(tmp_path, "validate")
    assert proc.returncode == 1 and "not inside a git repository" in proc.stderr
    assert "Traceback" not in proc.stderr
