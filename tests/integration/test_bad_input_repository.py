"""Hostile input in the repository, table-driven like ``test_bad_input.py`` (one line naming the file and the
key, the right exit code, no traceback, nothing written): code paths outside it, YAML values no config can
hold (binary data, lone surrogates, a newline in a key), damaged or foreign git objects (missing, corrupt, a
submodule), a damaged embedded MLflow store, and ``local.gpus`` in ``expctl.yaml``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.bad_input import BASE, Case, check
from tests.support.gitrepo import GitRepo

pytestmark = pytest.mark.integration

GPUS = "code_paths: [code]\nlocal:\n  gpus: {}\n"


def damaged_object(rel: str, corrupt: bool) -> Callable[[GitRepo], None]:
    """The loose git object of ``rel`` at HEAD deleted (a pruned object) or overwritten (a corrupt one)."""

    def setup(repo: GitRepo) -> None:
        blob = repo.git("rev-parse", f"HEAD:{rel}").strip()
        path = repo.path / ".git" / "objects" / blob[:2] / blob[2:]
        path.chmod(0o644)
        if corrupt:
            path.write_bytes(b"garbage\n")
        else:
            path.unlink()

    return setup


def submodule(rel: str) -> Callable[[GitRepo], None]:
    """``rel`` a git submodule (a gitlink to another repository's commit, holding an experiment)."""

    def setup(repo: GitRepo) -> None:
        other = GitRepo(repo.path / rel)  # a repository inside: `git add` records it as a gitlink
        other.write("x.yaml", BASE)
        other.commit("an experiment elsewhere")
        repo.commit("a submodule")
        assert repo.git("ls-tree", "HEAD", rel).startswith("160000 ")

    return setup


def embedded_store(directory: bool) -> Callable[[GitRepo], None]:
    """The embedded store's file damaged: a directory in its place, or a file of something else."""

    def setup(repo: GitRepo) -> None:
        db = repo.path / ".expctl" / "mlflow.db"
        if directory:
            (db / "x").mkdir(parents=True)
            (db / "x" / "f").write_text("x")  # a file, for the test's listing of what was written
        else:
            db.parent.mkdir(parents=True)
            db.write_text("garbage, not a database\n")

    return setup


CASES = [
    Case("expctl.yaml code path missing, several experiments",
         {"expctl.yaml": "code_paths: [nosuch]\n", "experiments/a.yaml": BASE, "experiments/b.yaml": BASE},
         expected="expctl.yaml: code_paths: 'nosuch' does not exist at commit"),
    Case("expctl.yaml absolute code path", {"expctl.yaml": "code_paths: [code, /etc]\n"},
         expected="expctl.yaml: code_paths.1: value error, must be a path inside the repository, relative to its "
                  "root (got '/etc')"),
    Case("experiment's code path outside the repository",
         {"experiments/e.yaml": BASE + "expctl:\n  code_paths: [code/../../elsewhere]\n"},
         expected="experiments/e.yaml: expctl.code_paths.0: value error, must be a path inside the repository"),
    # --- YAML values no config can hold ------------------------------------------------------------------------
    Case("newline in a YAML key", {"experiments/e.yaml": BASE + '"a\\nerror: b": ${nope}\n'},
         expected="experiments/e.yaml: a\\nerror: b: interpolation to a missing key"),
    Case("binary value", {"experiments/e.yaml": BASE + "seed: !!binary aGVsbG8=\n"},
         expected="experiments/e.yaml: line 4: binary data (!!binary) cannot be a config value"),
    Case("binary value in conf", {"conf/model/small.yaml": "name: !!binary aGVsbG8=\n"},
         expected="conf/model/small.yaml: line 1: binary data (!!binary) cannot be a config value"),
    Case("lone surrogate escape", {"experiments/e.yaml": BASE + 'note: "\\ud800"\n'},
         expected="experiments/e.yaml: line 4: a lone surrogate escape (\\ud800-\\udfff) is not a character"),
    Case("lone surrogate escape in a key", {"experiments/e.yaml": BASE + '"\\udfff": 1\n'},
         expected="experiments/e.yaml: line 4: a lone surrogate escape"),
    # --- a damaged repository ------------------------------------------------------------------------------
    Case("an experiment's git object is missing", setup=damaged_object("experiments/good.yaml", corrupt=False),
         expected="experiments/good.yaml: git object "),
    Case("an experiment's git object is corrupt", setup=damaged_object("experiments/good.yaml", corrupt=True),
         expected="experiments/good.yaml: git object "),
    Case("experiments in a git submodule", setup=submodule("experiments/team"),
         expected="experiments/team: a git submodule: its files are in another repository, not in this commit"),
    # --- the embedded MLflow store damaged: one line, not MLflow's ten retries over 100 s ----------------------
    Case("the embedded store is a directory", setup=embedded_store(directory=True), args=("plan",),
         also_apply=False, expected=".expctl/mlflow.db: a directory, not an SQLite database (the MLflow store)"),
    Case("the embedded store is not a database", setup=embedded_store(directory=False), args=("plan",),
         also_apply=False, expected=".expctl/mlflow.db: not an SQLite database (the MLflow store is damaged"),
    # --- expctl.yaml: local.gpus, checked by validate as apply checks it -------------------------------------
    Case("local.gpus the same device twice", {"expctl.yaml": GPUS.format("[0, 0]")},
         expected="expctl.yaml: local.gpus: device ids must be distinct and non-empty (got [0, 0])"),
    Case("local.gpus a negative device", {"expctl.yaml": GPUS.format("[-1]")},
         expected="expctl.yaml: local.gpus: device id '-1' is not a device index (0, 1, ...) or UUID (GPU-...)"),
    Case("local.gpus two devices in one id", {"expctl.yaml": GPUS.format('["0,1"]')},
         expected="expctl.yaml: local.gpus: device id '0,1' is not a device index"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_repository_input(tmp_path: Path, case: Case, request: pytest.FixtureRequest) -> None:
    check(tmp_path, case, request)
