"""The ``expctl teams`` use cases: ``codeowners`` writes ``.github/CODEOWNERS`` from the teams of the working
tree's ``expctl.yaml`` (commit it with the teams; ``validate`` refuses a committed file that disagrees);
``team_usage`` is ``teams status`` (each team's quota, GPUs in use, runs running, pending and waiting)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from expctl.config import codeowners, source
from expctl.config.desired_state import Desired, load_settings
from expctl.core import quota
from expctl.core.errors import ExpctlError
from expctl.core.model import ObservedRun, Phase, Plan
from expctl.engine.plan import teams_of
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


@dataclass(frozen=True)
class TeamUsage:
    """One team's line of ``expctl teams status``: its quota (None: none), the GPUs its running and queued runs
    hold, its runs running, pending on the backend, and waiting for its quota in the plan (not started yet); when
    teams declare ``mlflow:``, its MLflow workspace and how many runs of its are tracked (every attempt, finished
    ones included: what its workspace holds of the committed experiments)."""

    team: str
    quota_gpus: int | None
    gpus_in_use: int
    running: int
    pending: int
    waiting: int
    workspace: str | None = None
    runs: int = 0


def team_usage(desired: Desired, plan: Plan, observed: Sequence[ObservedRun]) -> list[TeamUsage]:
    """Each declared team's usage, in expctl.yaml's order, from one plan and the observation it was made from."""
    teams = desired.settings.teams
    if not teams:
        raise ExpctlError("expctl.yaml declares no teams (docs/teams.md)")
    owner = teams_of(desired, (r.experiment for r in observed))
    used = quota.in_use(observed, quota.Quotas({}, owner))
    live = [r for r in observed if r.live and not r.phase.finished and not r.cancelled]
    out = []
    in_mlflow = any(t.mlflow is not None for t in teams)
    for team in teams:
        mine = [r for r in live if owner.get(r.experiment) == team.name]
        tracked = sum(1 for r in observed if r.mlflow_run_id and owner.get(r.experiment) == team.name)
        waiting = sum(1 for c in plan.changes if quota.waits_for_quota(c) and c.desired is not None
                      and c.desired.job.team == team.name)
        out.append(TeamUsage(team.name, team.gpus, used.get(team.name, 0),
                             sum(1 for r in mine if r.phase is Phase.RUNNING),
                             sum(1 for r in mine if r.phase is Phase.PENDING), waiting,
                             team.mlflow_workspace() if in_mlflow else None, tracked))
    return out
