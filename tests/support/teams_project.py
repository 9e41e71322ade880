"""Team projects for the teams tests: ``expctl`` run as its own process in a repository, as an operator types it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.gitrepo import GitRepo

EXPCTL = str(Path(sys.executable).with_name("expctl"))


def expctl(repo: GitRepo, *args: str, code: int = 0,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``expctl ARGS`` in ``repo`` (no tracking URI, backend or CI from this environment; user olga), which must
    exit ``code``."""
    base = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "EXPCTL_BACKEND", "CI")}
    proc = subprocess.run([EXPCTL, *args], cwd=repo.path, env={**base, "USER": "olga", **(env or {})},
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == code, f"expctl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    return proc
