"""Hostile input, second round: the same table and the same checks as ``test_bad_input.py`` (one line naming the
file or variable and the key, the right exit code, no traceback, nothing written), for what that round left out:
values quoted in messages, the variables MLflow's HTTP client reads, the local backend's GPU declaration, the
commands' options."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.gitrepo import GitRepo
from tests.integration.test_bad_input import BASE, Case, check

pytestmark = pytest.mark.integration

GPUS = "code_paths: [code]\nlocal:\n  gpus: {}\n"
TOKEN = "s3cret-token-value"

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


def data_files(*links: tuple[str, str], fifo: str = "") -> Callable[[GitRepo], None]:
    """Data under the repository (the default data root), not committed: two images, links, maybe a FIFO."""

    def setup(repo: GitRepo) -> None:
        for rel in ("shapes/cat/1.png", "shapes/dog/2.png"):
            (repo.path / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo.path / rel).write_bytes(rel.encode())
        for rel, target in links:
            (repo.path / rel).symlink_to(target)
        if fifo:
            os.mkfifo(repo.path / fifo)

    return setup


def dataset(source: str) -> str:
    return BASE + f"data:\n  name: d\n  format: folders\n  batches: [{{name: b, source: {source}}}]\n"


CASES = [
    Case("expctl.yaml absolute code path", {"expctl.yaml": "code_paths: [code, /etc]\n"},
         expected="expctl.yaml: code_paths.1: value error, must be a path inside the repository, relative to its "
                  "root (got '/etc')"),
    Case("experiment's code path outside the repository",
         {"experiments/e.yaml": BASE + "expctl:\n  code_paths: [code/../../elsewhere]\n"},
         expected="experiments/e.yaml: expctl.code_paths.0: value error, must be a path inside the repository"),
    # --- values quoted in a message cannot forge lines or reach the terminal raw -----------------------------
    Case("newline in a run name", args=("describe", "a\nerror: forged"), server=True, also_apply=False,
         expected="no run named a\\nerror: forged"),
    Case("terminal escape in a run name", args=("logs", "a\x1b[2Jb"), server=True, also_apply=False,
         expected="no local run named a\\x1b[2Jb"),
    Case("newline in --rev", args=("validate", "--rev", "HEAD\nerror: x"), expected="--rev HEAD\\nerror: x: no such"),
    Case("newline in a YAML key", {"experiments/e.yaml": BASE + '"a\\nerror: b": ${nope}\n'},
         expected="experiments/e.yaml: a\\nerror: b: interpolation to a missing key"),
    # --- YAML values no config can hold ------------------------------------------------------------------------
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
    # --- data sources that are not files -----------------------------------------------------------------------
    Case("a FIFO as a dataset source", {"experiments/e.yaml": dataset("pipe")}, setup=data_files(fifo="pipe"),
         expected="pipe: not a regular file (a FIFO, socket or device): a dataset is made of files"),
    Case("a FIFO in a dataset's directory", {"experiments/e.yaml": dataset("shapes")},
         setup=data_files(fifo="shapes/cat/pipe"), expected="shapes/cat/pipe: not a regular file"),
    Case("a device as a dataset source", {"experiments/e.yaml": dataset("/dev/zero")},
         expected="/dev/zero: not a regular file"),
    Case("a symbolic link loop in a dataset's directory", {"experiments/e.yaml": dataset("shapes")},
         setup=data_files(("shapes/cat/up", "..")),
         expected="shapes/cat/up: a symbolic link loop (a link to a directory it is in)"),
    Case("experiments in a git submodule", setup=submodule("experiments/team"),
         expected="experiments/team: a git submodule: its files are in another repository, not in this commit"),
    # --- the embedded MLflow store damaged: one line, not MLflow's ten retries over 100 s ----------------------
    Case("the embedded store is a directory", setup=embedded_store(directory=True), args=("plan",),
         also_apply=False, expected=".expctl/mlflow.db: a directory, not an SQLite database (the MLflow store)"),
    Case("the embedded store is not a database", setup=embedded_store(directory=False), args=("plan",),
         also_apply=False, expected=".expctl/mlflow.db: not an SQLite database (the MLflow store is damaged"),
    # --- command options ------------------------------------------------------------------------------------
    Case("plan saved to an empty path", args=("plan", "--out", ""), code=2, also_apply=False,
         expected="Invalid value for '--out': an empty path"),
    Case("plan saved on a full disk", args=("plan", "--out", "/dev/full"), also_apply=False, server=True,
         expected="/dev/full: cannot save the plan: No space left on device"),
    Case("render an experiment named ''", args=("render", "--experiment", ""), also_apply=False,
         expected="--experiment '': no such experiment"),
    # --- the environment ------------------------------------------------------------------------------------
    Case("tracking URI of blanks", args=("plan",), env={"MLFLOW_TRACKING_URI": " "},
         expected="MLFLOW_TRACKING_URI: must be a URI without whitespace or control characters (got ' ')"),
    *(Case(f"{name}={value}", args=("plan",), env={name: value}, server=True, also_apply=False,
           expected=f"{name}: {message} (got '{value}')")
      for name, value, message in (
          ("MLFLOW_HTTP_REQUEST_TIMEOUT", "abc", "must be a whole number, 1 or more"),
          ("MLFLOW_HTTP_REQUEST_TIMEOUT", "-1", "must be a whole number, 1 or more"),
          ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "x", "must be a whole number, 0 or more"),
          ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1.5", "must be a whole number, 0 or more"),
          ("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "inf", "must be a number, 0 or more"),
          ("MLFLOW_TRACKING_INSECURE_TLS", "maybe", "must be true or false"))),
    Case("a newline in the tracking token", args=("plan",), env={"MLFLOW_TRACKING_TOKEN": TOKEN + "\n"},
         server=True, also_apply=False,
         expected="MLFLOW_TRACKING_TOKEN: holds a control character (a trailing newline?), which no HTTP header can "
                  "carry (the value is not shown)"),
    # --- expctl.yaml: local.gpus, checked by validate as apply checks it -------------------------------------
    Case("local.gpus the same device twice", {"expctl.yaml": GPUS.format("[0, 0]")},
         expected="expctl.yaml: local.gpus: device ids must be distinct and non-empty (got [0, 0])"),
    Case("local.gpus a negative device", {"expctl.yaml": GPUS.format("[-1]")},
         expected="expctl.yaml: local.gpus: device id '-1' is not a device index (0, 1, ...) or UUID (GPU-...)"),
    Case("local.gpus two devices in one id", {"expctl.yaml": GPUS.format('["0,1"]')},
         expected="expctl.yaml: local.gpus: device id '0,1' is not a device index"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_more(tmp_path: Path, case: Case, request: pytest.FixtureRequest) -> None:
    err = check(tmp_path, case, request)
    assert TOKEN not in err


@pytest.mark.parametrize("pid", ["init", "every process", "expctl's own group", "a bool"])
def test_a_state_edited_by_hand_never_signals_what_is_not_a_replica(tmp_path: Path, pid: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``state.json`` edited by hand (or another program's) naming pid 1, -1, expctl's own process group or
    ``true``: `cancel` (and `apply`'s stop of a replaced run) would have sent SIGTERM then SIGKILL to that
    process group. os.killpg is recorded, not called."""
    import json
    import os
    from dataclasses import asdict

    from expctl.backends.local import state as local_state
    from tests.integration.test_bad_input import _state, invoke

    value = {"init": 1, "every process": -1, "expctl's own group": os.getpgrp(), "a bool": True}[pid]
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "killpg", lambda group, sig: sent.append((group, sig)))
    repo = GitRepo(tmp_path / "repo")
    repo.write(".gitignore", ".expctl/\n")
    repo.commit("initial")
    state = asdict(_state("bad-1", status="started", phase="Running", finished_at=None))
    state["processes"] = [{"replica": "worker-0", "pid": value, "start_ticks": None, "boot_id": None}]
    run_dir = repo.path / ".expctl" / "runs" / "bad-1"
    run_dir.mkdir(parents=True)
    (run_dir / "state.json").write_text(json.dumps(state))
    code, _out, err = invoke(repo.path, ("cancel", "bad-1"), {})
    assert sent == []
    assert "Traceback" not in err
    if pid != "expctl's own group":  # a pid no replica has: the state is damaged, the run is not cancelled
        assert code == 1 and "bad-1/state.json: damaged run state" in err
        with pytest.raises(local_state.StateUnreadable):
            local_state.load(run_dir)


@pytest.mark.parametrize("damage", [{"created_at": "yesterday"}, {"finished_at": "x"}, {"env": ["a"]},
                                    {"command": "python"}, {"replicas": "2"}, {"replicas": 10**9},
                                    {"name": "../../elsewhere"}, {"processes": [{"replica": 1, "pid": 5,
                                                                                 "start_ticks": None,
                                                                                 "boot_id": None}]}],
                         ids=lambda d: f"{next(iter(d))}={next(iter(d.values()))!r:.20}")
def test_a_state_field_of_the_wrong_type_is_damage_not_a_traceback(tmp_path: Path, damage: dict[str, object],
                                                                   mlflow_server: Any) -> None:
    """Every field of a hand-edited state.json is type-checked (only four were): status skips the run with one
    warning, commands about it fail in one line; a state in another run's directory is damage too."""
    import json
    from dataclasses import asdict

    from tests.integration.test_bad_input import _state, invoke

    repo = GitRepo(tmp_path / "repo")
    repo.write(".gitignore", ".expctl/\n")
    repo.commit("initial")
    run_dir = repo.path / ".expctl" / "runs" / "bad-1"
    run_dir.mkdir(parents=True)
    (run_dir / "state.json").write_text(json.dumps({**asdict(_state("bad-1")), **damage}))
    env = {"MLFLOW_TRACKING_URI": mlflow_server.uri}
    code, _out, err = invoke(repo.path, ("status",), env)
    assert code == 0 and err.startswith("warning: ") and "bad-1/state.json: damaged run state" in err, err
    for args in (("describe", "bad-1"), ("logs", "bad-1")):
        code, _out, err = invoke(repo.path, args, env)
        assert code == 1 and "Traceback" not in err, err
