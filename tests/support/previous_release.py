"""The previous release of expctl, run beside this one: its source at a commit of this repository's history.

``previous_release(dest)`` extracts ``src/expctl`` of ``PREVIOUS_RELEASE`` with ``git archive`` (it needs this
clone's history, which a clone of main has); ``run_previous(src, repo, *args)`` runs ``python -m expctl`` of that
source as its own process, with this interpreter's packages. Tests apply with it, then plan with this one: what
the previous release persisted (MLflow tags, state files, Kubernetes labels and annotations, spec hashes) must
mean the same to this one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

from tests.support.gitrepo import ROOT

# the last commit before the tree was restructured into packages (issue 19)
PREVIOUS_RELEASE = "172f2de2bb7354f238e3939af0790816b125908a"


def previous_release(dest: Path) -> Path:
    """``dest/src``, holding the previous release's ``expctl`` package; AssertionError when the clone lacks it."""
    found = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}"],
                           capture_output=True, check=False)
    assert found.returncode == 0, (f"the previous release {PREVIOUS_RELEASE[:12]} is not in this clone's history "
                                   "(a shallow clone?): 'git fetch --unshallow' brings it")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", PREVIOUS_RELEASE, "src/expctl"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def run_previous(src: Path, repo: Path, *args: str, timeout: float = 600,
                 **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m expctl ARGS`` of the previous release, in ``repo``."""
    drop = ("MLFLOW_TRACKING_URI", "GITHUB_ACTOR", "EXPCTL_TEST_CRASH_AT", "EXPCTL_BACKEND", "CI")
    base = {k: v for k, v in os.environ.items() if k not in drop}
    return subprocess.run([sys.executable, "-m", "expctl", *args], cwd=repo, capture_output=True, text=True,
                          env={**base, "PYTHONPATH": str(src), **env}, timeout=timeout, check=False)
