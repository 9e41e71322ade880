"""Real Slurm clusters for the tests: munged, slurmctld and two slurmd "nodes" with two fake GPUs each.

``scripts/start-slurm.sh`` starts one on 127.0.0.1 in a temporary directory on free ports (about a second);
``scripts/stop-slurm.sh`` stops it by its pid files. Everything a cluster uses is its own (munge key and socket,
state, spool and log directories, ports), so several run side by side. The session fixture ``slurm_cluster``
(``tests/integration/conftest.py``) exports ``SLURM_CONF`` (and puts this interpreter first on PATH, so that
jobs' ``python`` is the test's) for the session and restores both at the end. ``private_slurm_cluster`` is one
test's own cluster, for tests that stop its controller: commands reach it through ``env`` (``SLURM_CONF``),
never through the process environment. ``slurm_accounting_cluster`` (module scope) is a cluster with accounting:
slurmdbd on a private MariaDB (``start-slurm.sh --accounting``, ``scripts/start-slurmdbd.sh``; a few seconds
more), enforcing associations, limits and QOS — only for the tests of Slurm accounting.
When Slurm is not installed the tests fail loudly, never skip: ``scripts/test-prereqs.sh`` installs
``slurm-wlm`` and ``munge`` (and ``slurmdbd``, ``mariadb-server`` for accounting).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODES = 2
GPUS_PER_NODE = 2


@dataclass
class SlurmCluster:
    rundir: Path
    conf: Path
    accounting: bool = False

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to talk to this cluster (and to run jobs with this interpreter's ``python``)."""
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        return {"SLURM_CONF": str(self.conf), "PATH": path}

    def run(self, *argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60,
                              env={**os.environ, **self.env}).stdout

    def pid_of_slurmd(self, node: str) -> int:
        return int((self.rundir / "run" / f"slurmd-{node}.pid").read_text().strip())

    def start_slurmd(self, node: str) -> None:
        subprocess.run(["slurmd", "-N", node, "-f", str(self.conf)], check=True, timeout=60)

    def stop_controller(self, signum: int = signal.SIGKILL) -> None:
        """Send ``signum`` to slurmctld and wait until it is gone (its children, slurmscriptd, go with it)."""
        pid = int((self.rundir / "run" / "slurmctld.pid").read_text().strip())
        os.kill(pid, signum)
        deadline = time.monotonic() + 30
        while _alive(pid):
            if time.monotonic() > deadline:
                raise AssertionError(f"slurmctld ({pid}) still running 30 s after signal {signum}")
            time.sleep(0.1)

    def start_controller(self) -> None:
        """Start slurmctld again on the same configuration and state directory: it recovers the saved jobs."""
        subprocess.run(["slurmctld", "-f", str(self.conf)], check=True, timeout=60, env={**os.environ, **self.env})
        deadline = time.monotonic() + 60
        while subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=60, check=False,
                             env={**os.environ, **self.env}).stdout.count("UP") < 1:
            if time.monotonic() > deadline:
                raise AssertionError("slurmctld did not answer within 60 s of its restart")
            time.sleep(0.2)

    def stop_accounting(self) -> None:
        """Stop slurmdbd (SIGTERM, waiting until it is gone): ``sacctmgr`` fails until ``start_accounting``."""
        pid_file = self.rundir / "run" / "slurmdbd.pid"
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(pid):
            if time.monotonic() > deadline:
                raise AssertionError(f"slurmdbd ({pid}) still running 30 s after SIGTERM")
            time.sleep(0.1)

    def start_accounting(self) -> None:
        """Start slurmdbd again (it reads slurmdbd.conf beside slurm.conf) and wait until ``sacctmgr`` answers."""
        subprocess.run(["slurmdbd"], check=True, timeout=60, env={**os.environ, **self.env})
        deadline = time.monotonic() + 60
        while subprocess.run(["sacctmgr", "-n", "show", "cluster"], capture_output=True, timeout=60, check=False,
                             env={**os.environ, **self.env}).returncode != 0:
            if time.monotonic() > deadline:
                raise AssertionError("slurmdbd did not answer within 60 s of its restart")
            time.sleep(0.2)

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Until every node is idle again (after a test killed or drained one)."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.run("sinfo", "-h", "-N", "-o", "%N %t").split("\n")
            if len({s.split()[0] for s in states if s.endswith(" idle")}) == NODES:  # a node per partition
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"Slurm nodes not idle: {states}")
            time.sleep(0.5)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie left to a parent that does not reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _free_port_block(size: int = 16) -> int:
    """A port p such that p, p+2, p+3 and p+11..p+10+NODES look free on 127.0.0.1 (slurmctld, slurmdbd,
    MariaDB, slurmd ports)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + size > 65535:
            continue
        try:
            for p in (port, port + 2, port + 3, *range(port + 11, port + 11 + NODES)):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port block on 127.0.0.1")


@contextlib.contextmanager
def running_cluster(rundir: Path, *, accounting: bool = False) -> Iterator[SlurmCluster]:
    """A cluster of its own in ``rundir`` for the ``with`` block; stopped (by its pid files) at the end. With
    ``accounting``: slurmdbd and its MariaDB too, enforcing associations, limits and QOS."""
    tools = ("munged", "slurmctld", "slurmd", "sbatch", *(("slurmdbd", "mariadbd") if accounting else ()))
    missing = [t for t in tools if shutil.which(t) is None and shutil.which(f"/usr/sbin/{t}") is None]
    if missing:
        pytest.fail(f"Slurm is not installed ({', '.join(missing)} missing): run scripts/test-prereqs.sh",
                    pytrace=False)
    try:
        flags = ["--accounting"] if accounting else []
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "start-slurm.sh"), *flags, str(rundir), str(NODES),
                               str(GPUS_PER_NODE), str(_free_port_block())],
                              capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            pytest.fail(f"scripts/start-slurm.sh failed: {proc.stderr.strip()}", pytrace=False)
        yield SlurmCluster(rundir, rundir / "slurm.conf", accounting)
    finally:
        subprocess.run(["bash", str(ROOT / "scripts" / "stop-slurm.sh"), str(rundir)], timeout=60, check=False)
