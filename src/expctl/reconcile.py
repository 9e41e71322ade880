"""Compute a plan end to end: desired runs from git, observed runs from a backend joined with the tracker.

I/O at the edge: it reads git, asks the backend and the tracker, then hands values to the pure core.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expctl import source
from expctl.backends.base import Backend
from expctl.diff import join_observed
from expctl.errors import ExpctlError, StalePlanError
from expctl.model import ObservedRun, Plan
from expctl.plan import PlanRefused, make_plan
from expctl.project import Desired, load_desired
from expctl.tracking.base import Tracker
from expctl.views import SCHEMA_VERSION


@dataclass(frozen=True)
class PlanOptions:
    rev: str = "HEAD"
    worktree: bool = False
    prune: bool = False
    replace_running: bool = False
    force_prune: bool = False


def observe(backend: Backend, tracker: Tracker | None) -> list[ObservedRun]:
    live = backend.observe()
    return join_observed(live, tracker.records() if tracker is not None else [])


def compute_plan(desired: Desired, backend: Backend, tracker: Tracker | None, opts: PlanOptions,
                 now: float | None = None) -> tuple[Plan, list[ObservedRun]]:
    observed = observe(backend, tracker)
    try:
        plan = make_plan(
            desired.runs, observed, commit=desired.snapshot.commit, backend=backend.name,
            now=time.time() if now is None else now, prune=opts.prune,
            replace_running=opts.replace_running, force_prune=opts.force_prune, worktree=opts.worktree,
        )
    except PlanRefused as exc:
        raise ExpctlError(str(exc)) from exc
    return plan, observed


def desired_state(repo: Path, opts: PlanOptions) -> Desired:
    return load_desired(source.snapshot(repo, opts.rev, worktree=opts.worktree))


def read_saved_plan(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ExpctlError(f"cannot read saved plan: {exc}", file=str(path)) from exc
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise ExpctlError(f"not an expctl plan (schema_version {SCHEMA_VERSION} expected)", file=str(path))
    if data.get("worktree"):
        raise ExpctlError("a plan of the working tree cannot be applied: commit first", file=str(path))
    return data


def options_of(saved: dict[str, Any]) -> PlanOptions:
    return PlanOptions(rev=str(saved["commit"]), prune=bool(saved.get("prune")),
                       replace_running=bool(saved.get("replace_running")))


def check_fresh(saved: dict[str, Any], plan: Plan, path: Path) -> None:
    """Refuse a saved plan when what is observed (or the plan it yields) moved on since it was made."""
    if saved.get("backend") != plan.backend:
        raise StalePlanError(f"saved plan is for backend {saved.get('backend')}, not {plan.backend}",
                             file=str(path))
    ours = [(c.action.value, c.name, c.spec_hash) for c in plan.changes]
    theirs = [(c["action"], c["name"], c["spec_hash"]) for c in saved.get("changes", [])]
    if saved.get("fingerprint") != plan.fingerprint or ours != theirs:
        raise StalePlanError("saved plan is stale: the observed runs changed since it was made; "
                             "run `expctl plan` again", file=str(path))
