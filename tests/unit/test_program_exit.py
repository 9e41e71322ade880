"""``expctl.cli.program.exit_now``: the process ends as ``sys.exit`` would end it — same status, stdout and
stderr delivered, exit handlers run, live threads awaited, a profiler's results written — without the
interpreter's teardown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).resolve().parents[1] / "support" / "exit_probe.py"


def probe(out: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.run([sys.executable, str(PROBE), str(out), code, *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


@pytest.mark.parametrize(("code", "status"), [("0", 0), ("3", 3), ("141", 141), ("none", 0)])
def test_status_buffered_output_and_exit_handlers(tmp_path: Path, code: str, status: int) -> None:
    done = probe(tmp_path, code, "--bytes", "1000000")
    assert done.returncode == status, done.stderr
    assert done.stdout == "x" * 1_000_000  # what was still buffered is delivered
    assert (tmp_path / "atexit").read_text() == "ran"


def test_a_message_goes_to_stderr_with_status_1(tmp_path: Path) -> None:
    done = probe(tmp_path, "no way")
    assert (done.returncode, done.stderr) == (1, "no way\n")
    assert (tmp_path / "atexit").read_text() == "ran"


def test_a_running_thread_is_awaited(tmp_path: Path) -> None:
    done = probe(tmp_path, "2", "--thread")
    assert done.returncode == 2, done.stderr
    assert (tmp_path / "thread").read_text() == "done"
    assert (tmp_path / "atexit").read_text() == "ran"


def test_a_profiler_still_writes_its_results(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(tmp_path / "prof"), str(PROBE), str(tmp_path),
                           "0"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "prof").stat().st_size > 0
