"""expctl honours the protocols around it: a closed pipe ends a command quietly, a taken port is said in one
line, and a wait for another process's lock is announced, not silent.

(HTTP 429/503 with ``Retry-After`` and answers lost on the way back are in ``test_faults_mlflow.py``, against a
real ``mlflow server`` behind the fault proxy.)
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import e2e
from tests.support.gitrepo import GitRepo, minimal_repo
from tests.support.mlflow_server import free_port

pytestmark = pytest.mark.integration

EXPERIMENT = ("defaults:\n  - config\n  - _self_\nexpctl:\n  kind: local\n  command: [python, -c, pass]\n"
              "hydra:\n  sweeper:\n    params:\n      seed: 1,2,3\n")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitRepo]:
    """A project applied once on the embedded store (so that every command has something to print)."""
    path = tmp_path_factory.mktemp("protocol") / "repo"
    repo = minimal_repo(path, {"experiments/proto.yaml": EXPERIMENT, ".gitignore": ".expctl/\n"})
    done = e2e.expctl(repo.path, "apply", "-y", "--wait", "--timeout", "120")
    assert done.returncode == 0, done.stdout + done.stderr
    yield repo
    e2e.stop_jobs(repo.path)


@pytest.mark.parametrize("args", [
    ("status", "--all"), ("history",), ("plan",), ("validate",), ("render", "--backend", "kubernetes"), ("--help",),
    ("status", "--all", "--output", "json"),
], ids=" ".join)
def test_a_closed_pipe_ends_a_command_quietly(repo: GitRepo, args: tuple[str, ...]) -> None:
    """``expctl ... | head`` when head has already gone: no ``error: Broken pipe``, no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "expctl", *args], cwd=repo.path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=e2e.clean_env())
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert "Broken pipe" not in err and "Traceback" not in err and "Exception ignored" not in err, err
    # 141: as a Unix tool killed by SIGPIPE (--help is click's own: 1); 0 when nothing was left to write
    assert code == (1 if args == ("--help",) else 141) or (code == 0 and args[0] in ("validate", "render")), \
        (code, err)
    assert not [ln for ln in err.splitlines() if ln.startswith("error:")], err


def test_ui_on_a_taken_port_says_so_in_one_line(repo: GitRepo) -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", port))
        other.listen(1)
        done = e2e.expctl(repo.path, "ui", "--port", str(port), timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip() == f"error: 127.0.0.1:{port} is in use by another program: choose another --port"
    assert done.stdout == ""  # no links to whatever answers there


def test_ui_whose_server_dies_before_answering_fails_in_one_line(repo: GitRepo, tmp_path: Path) -> None:
    """The MLflow server child exits at once (its store is not a database): exit 1, one error line naming its exit
    code and its cause, not its whole log and exit 0."""
    import os
    import signal

    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not an sqlite database, whatever its name says " * 4)
    proc = subprocess.Popen([sys.executable, "-m", "expctl", "ui", "--port", str(free_port())], cwd=repo.path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=e2e.clean_env(f"sqlite:///{bad}"))
    try:
        out, err = proc.communicate(timeout=180)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # a server that did come up after all goes with it
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1, out + err
    assert "the MLflow UI server exited (code 1) before answering" in errors[0], errors
    assert "Traceback" not in err and len(err.splitlines()) <= 3, err  # its log stays out of the terminal


@pytest.mark.parametrize(("lock_name", "args", "said"), [
    ("apply.lock", ("apply", "-y"), "for the apply lock"),
    # a write: reads of the embedded store do not take its lock (plain sqlite reads, tracking/mlflow/sqlite_search)
    ("mlflow.db.lock", ("apply", "-y"), "mlflow.db: waiting up to 120 s for the MLflow store lock"),
], ids=["the apply lock", "the embedded store's lock"])
def test_every_lock_wait_says_what_it_waits_for(repo: GitRepo, lock_name: str, args: tuple[str, ...],
                                                said: str) -> None:
    """Another process holds the apply lock, or the embedded store's (held while a client opens the store to
    write):
    the command says so in one line at once (which lock, who holds it), then goes on once it is free."""
    from filelock import FileLock

    from expctl.core.lock_wait import note_holder

    lock_path = str(repo.path / ".expctl" / lock_name)
    lock = FileLock(lock_path)
    lock.acquire()
    try:
        note_holder(lock_path)
        proc = e2e.start_expctl(repo.path, *args)
        assert proc.stderr is not None
        line = proc.stderr.readline()  # blocks until the first line: no sleep, no timing
    finally:
        lock.release()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, line + err
    assert line.startswith("warning: ") and said in line and f"held by pid {os.getpid()} (since " in line, line
    assert "Traceback" not in err


def test_reads_do_not_wait_for_the_embedded_stores_lock(repo: GitRepo) -> None:
    """A client holding the embedded store's lock (opening it to write) does not hold up the read commands: they
    read the sqlite file directly, in one read transaction each, and say nothing about a lock."""
    from filelock import FileLock

    from expctl.core.lock_wait import note_holder

    assert e2e.expctl(repo.path, "apply", "-y").returncode == 0  # a store with the repository's runs
    lock_path = str(repo.path / ".expctl" / "mlflow.db.lock")
    lock = FileLock(lock_path)
    lock.acquire()
    try:
        note_holder(lock_path)
        for args in (("status", "--all"), ("history",), ("plan",)):
            done = e2e.expctl(repo.path, *args, timeout=120)
            assert done.returncode == 0 and "lock" not in done.stderr, (args, done.stderr)
    finally:
        lock.release()


def test_status_says_what_it_waits_for(repo: GitRepo) -> None:
    """Another process holds the local backend's state lock: ``status`` says so at once (who, how long at most),
    then goes on as soon as the lock is free."""
    from filelock import FileLock

    from expctl.core.lock_wait import note_holder

    lock_path = str(repo.path / ".expctl" / "local.lock")
    lock = FileLock(lock_path)
    lock.acquire()
    try:
        note_holder(lock_path)
        proc = e2e.start_expctl(repo.path, "status", "--all")
        assert proc.stderr is not None
        line = proc.stderr.readline()  # blocks until the first line: no sleep, no timing
    finally:
        lock.release()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, line + err
    assert line.startswith("warning: ") and "waiting up to 120 s for the local backend lock" in line, line
    assert "held by pid" in line
    assert "proto" in out
