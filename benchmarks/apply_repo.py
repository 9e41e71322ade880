"""The repository and the expctl process the apply benchmarks share (``apply_scale.py``, ``apply_local.py``)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.support.gitrepo import GitRepo

SWEEP = ("defaults:\n  - config\n  - _self_\nhydra:\n  sweeper:\n    params:\n      seed: range(0,{n})\n"
         "expctl:\n  command: [python, -c, pass]\n")


PROFILE: list[str] = []  # --profile FILE: the apply runs under ``py-spy record -f raw -o FILE``


def expctl(repo: Path, *args: str, env: dict[str, str],
           profile: bool = False) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    prefix = ["py-spy", "record", "-r", "200", "-f", "raw", "-o", PROFILE[0], "--"] if profile and PROFILE else []
    proc = subprocess.run([*prefix, sys.executable, "-m", "expctl", "-C", str(repo), *args], capture_output=True,
                          text=True, env=env, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"expctl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                         f"{proc.stderr[-2000:]}")
    return elapsed, proc


def make_repo(path: Path, runs: int, settings: str) -> GitRepo:
    repo = GitRepo(path)
    repo.write("conf/config.yaml", "seed: 0\noptimizer:\n  lr: 0.1\ntrainer:\n  epochs: 1\n")
    repo.write("code/train.py", "print('train')\n")
    repo.write("expctl.yaml", "code_paths: [code]\n" + settings)
    repo.write("experiments/big.yaml", SWEEP.format(n=runs))
    repo.commit("big sweep")
    return repo


