"""Git worktrees for the local backend: one detached checkout per pinned commit, shared by its runs.

Runs never execute in the user's (possibly dirty) working tree: ``ensure`` checks the run's commit out under
``<state>/worktrees/<commit>`` with ``git worktree add --detach``; ``collect`` removes the checkouts that no
unfinished run needs any more. A checkout that fails says whether the machine is the cause (``CheckoutError``:
a full disk is an infrastructure failure, retried; a commit that is not there is the run's own). Callers hold
the local backend's state lock, so two expctl processes never race on the same checkout.
"""

from __future__ import annotations

import errno
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from expctl.core.errors import BackendError, truncate


class CheckoutError(BackendError):
    """A checkout could not be made. ``infrastructure``: for a reason of the machine (a full disk, a quota, a
    read-only file system, no memory or file descriptors, an I/O error, a stale git lock), which a retry may
    not meet again — not for one of the run's own (its commit is not in the repository)."""

    def __init__(self, message: str, infrastructure: bool) -> None:
        super().__init__(message)
        self.infrastructure = infrastructure


# git's words for a failure of the machine, not of the commit (its messages quote strerror)
_MACHINE = re.compile(r"No space left on device|Disk quota exceeded|Read-only file system|Too many open files|"
                      r"Cannot allocate memory|Out of memory|Input/output error|unable to (?:create|write)|"
                      r"\.lock'?: File exists|Resource temporarily unavailable", re.IGNORECASE)
_MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EMFILE, errno.ENFILE, errno.ENOMEM,
                             errno.EIO, errno.EAGAIN})


def _git(repo: Path, *args: str) -> str:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False,
                              errors="replace")
    except FileNotFoundError as exc:
        raise CheckoutError("git is not installed", infrastructure=False) from exc
    except OSError as exc:  # fork failed: no memory, too many processes
        raise CheckoutError(f"cannot run git: {exc.strerror or exc}", infrastructure=True) from exc
    if proc.returncode != 0:
        why = truncate(proc.stderr or str(proc.returncode))
        raise CheckoutError(f"git {' '.join(args[:2])} failed: {why}", infrastructure=bool(_MACHINE.search(why)))
    return proc.stdout


class Worktrees:
    """Detached checkouts of ``repo`` under ``root``, one per commit."""

    def __init__(self, repo: Path, root: Path) -> None:
        self.repo = repo
        self.root = root

    def path(self, commit: str) -> Path:
        return self.root / commit

    def ensure(self, commit: str) -> Path:
        """The checkout of ``commit``, created when missing (a half-made one is replaced)."""
        path = self.path(commit)
        if (path / ".git").exists():
            head = _git(path, "rev-parse", "HEAD").strip()
            if head == commit:
                return path
        try:
            if path.exists():
                shutil.rmtree(path)
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CheckoutError(f"{path}: cannot prepare the checkout: {exc.strerror or exc}",
                                infrastructure=exc.errno in _MACHINE_ERRNOS) from exc
        _git(self.repo, "worktree", "prune")
        try:
            _git(self.repo, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
        except BackendError as exc:
            if isinstance(exc, CheckoutError) and exc.infrastructure:
                raise
            raise CheckoutError(f"commit {commit[:12]} is not in {self.repo}: cannot check it out",
                                infrastructure=False) from exc
        _git(self.repo, "worktree", "add", "--detach", "--force", str(path), commit)
        return path

    def collect(self, needed: Iterable[str]) -> list[str]:
        """Remove the checkouts of commits not in ``needed``; returns the commits removed."""
        keep = set(needed)
        removed: list[str] = []
        if not self.root.is_dir():
            return removed
        for path in sorted(self.root.iterdir()):
            if path.name in keep or not path.is_dir():
                continue
            try:
                _git(self.repo, "worktree", "remove", "--force", str(path))
            except BackendError:
                shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
        if removed:
            _git(self.repo, "worktree", "prune")
        return removed
