"""A real Slurm cluster for the tests: munged, slurmctld and two slurmd "nodes" with two fake GPUs each.

``scripts/start-slurm.sh`` starts it on 127.0.0.1 in a temporary directory on free ports (about a second);
``scripts/stop-slurm.sh`` stops it by its pid files. The session fixture ``slurm_cluster`` exports
``SLURM_CONF`` (and puts this interpreter first on PATH, so that jobs' ``python`` is the test's) for the
session and restores both at the end. When Slurm is not installed the tests fail loudly, never skip:
``scripts/test-prereqs.sh`` installs ``slurm-wlm`` and ``munge``.
"""

from __future__ import annotations

import os
import shutil
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

    def run(self, *argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout

    def pid_of_slurmd(self, node: str) -> int:
        return int((self.rundir / "run" / f"slurmd-{node}.pid").read_text().strip())

    def start_slurmd(self, node: str) -> None:
        subprocess.run(["slurmd", "-N", node, "-f", str(self.conf)], check=True, timeout=60)

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Until every node is idle again (after a test killed or drained one)."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.run("sinfo", "-h", "-N", "-o", "%N %t").split("\n")
            if sum(1 for s in states if s.endswith(" idle")) == NODES:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"Slurm nodes not idle: {states}")
            time.sleep(0.5)


def _free_port_block(size: int = 16) -> int:
    """A port p such that p and p+10..p+10+NODES look free on 127.0.0.1 (slurmctld + slurmd ports)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + size > 65535:
            continue
        try:
            for p in (port, *range(port + 11, port + 11 + NODES)):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port block on 127.0.0.1")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    missing = [t for t in ("munged", "slurmctld", "slurmd", "sbatch") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"Slurm is not installed ({', '.join(missing)} missing): run scripts/test-prereqs.sh",
                    pytrace=False)
    rundir = tmp_path_factory.mktemp("slurm")
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "PATH")}
    try:
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "start-slurm.sh"), str(rundir), str(NODES),
                               str(GPUS_PER_NODE), str(_free_port_block())],
                              capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            pytest.fail(f"scripts/start-slurm.sh failed: {proc.stderr.strip()}", pytrace=False)
        os.environ["SLURM_CONF"] = str(rundir / "slurm.conf")
        os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        yield SlurmCluster(rundir, rundir / "slurm.conf")
    finally:
        subprocess.run(["bash", str(ROOT / "scripts" / "stop-slurm.sh"), str(rundir)], timeout=60, check=False)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
