"""Who acts, as the audit trail and MLflow record it: the operator who cancels, and who applies.

In GitHub Actions (``GITHUB_ACTOR`` set) the CI actor is named too; the one reader of that variable.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path


def ci_actor() -> str:
    """The GitHub Actions actor, or "" outside CI."""
    return os.environ.get("GITHUB_ACTOR", "")


def operator() -> str:
    """Who cancels: ``github:<actor>`` in GitHub Actions, else the local user."""
    actor = ci_actor()
    return f"github:{actor}" if actor else (os.environ.get("USER") or getpass.getuser())


def applied_by(repo: Path, commit: str) -> str:
    """Who is applying: the commit's author, and the CI actor when running in GitHub Actions."""
    from expctl.config.source import commit_author

    author = commit_author(repo, commit)
    actor = ci_actor()
    return f"{author} via github:{actor}" if actor else author
