"""Git worktrees for the local backend: one detached checkout per pinned commit, shared by its runs.

Runs never execute in the user's (possibly dirty) working tree: ``ensure`` checks the run's commit out under
``<state>/worktrees/<commit>`` with ``git worktree add --detach``; ``collect`` removes the checkouts that no
unfinished run needs any more. Callers hold the local backend's state lock, so two expctl processes never
race on the same checkout.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from expctl.core.errors import BackendError, truncate


def _git(repo: Path, *args: str) -> str:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise BackendError("git is not installed") from exc
    if proc.returncode != 0:
        why = truncate(proc.stderr or str(proc.returncode))
        raise BackendError(f"git {' '.join(args[:2])} failed: {why}")
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
        if path.exists():
            shutil.rmtree(path)
        self.root.mkdir(parents=True, exist_ok=True)
        _git(self.repo, "worktree", "prune")
        try:
            _git(self.repo, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
        except BackendError as exc:
            raise BackendError(f"commit {commit[:12]} is not in {self.repo}: cannot check it out") from exc
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
