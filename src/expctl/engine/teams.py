"""The ``expctl teams`` use cases: ``codeowners`` writes ``.github/CODEOWNERS`` from the teams of the working
tree's ``expctl.yaml`` (commit it with the teams; ``validate`` refuses a committed file that disagrees)."""

from __future__ import annotations

from pathlib import Path

from expctl.config import codeowners, source
from expctl.config.desired_state import load_settings
from expctl.core.errors import ExpctlError
from expctl.engine.workspace import Workspace


def write_codeowners(ws: Workspace) -> tuple[Path, bool]:
    """Write ``.github/CODEOWNERS`` from the working tree's teams: its path, and whether it changed."""
    snap = source.snapshot(ws.repo, "HEAD", worktree=True)
    settings = load_settings(source.read_files(snap, ["expctl.yaml"]))
    if not settings.teams:
        raise ExpctlError("expctl.yaml declares no teams: nothing to write to .github/CODEOWNERS (docs/teams.md)")
    target = ws.repo / codeowners.PATH
    text = codeowners.render(settings.teams)
    if target.is_file() and target.read_text(errors="replace") == text:
        return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".expctl-tmp")
    tmp.write_text(text)
    tmp.replace(target)  # never half a file
    return target, True
