"""Views of a plan: human (Terraform-like), JSON (``schema_version`` 1) and Markdown (PR comments).

Pure: a plan in, text out. The plan itself is data (expctl.model.Plan); these are only renderings.
"""

from __future__ import annotations

import json
from typing import Any

from expctl.core.model import Action, Change, Plan, Reason
from expctl.core.quota import waits_for_quota
from expctl.core.sanitize import md_code, md_text, one_line

SCHEMA_VERSION = 1

_SYMBOL = {
    Action.CREATE: "+",
    Action.RETRY: "↻",
    Action.REPLACE: "-/+",
    Action.DELETE: "-",
    Action.BLOCKED: "!",
    Action.GAVE_UP: "x",
    Action.NOOP: " ",
}


def summary(plan: Plan) -> dict[str, int]:
    noops = [c for c in plan.changes if c.action is Action.NOOP]
    return {
        "create": plan.count(Action.CREATE),
        "retry": plan.count(Action.RETRY),
        "replace": plan.count(Action.REPLACE),
        "delete": plan.count(Action.DELETE),
        "blocked": plan.count(Action.BLOCKED),
        "gave_up": plan.count(Action.GAVE_UP),
        "unchanged": sum(1 for c in noops if c.reason is Reason.UNCHANGED),
        "waiting": sum(1 for c in noops if c.reason is Reason.BACKOFF),
        "cancelled": sum(1 for c in noops if c.reason is Reason.CANCELLED),
        "would_prune": sum(1 for c in noops if c.reason is Reason.WOULD_PRUNE),
        "waiting_quota": sum(1 for c in noops if waits_for_quota(c)),
    }


def summary_line(plan: Plan) -> str:
    s = summary(plan)
    if not plan.has_writes and not s["blocked"]:
        head = "No changes."
    else:
        head = (f"Plan: {s['create']} to create, {s['retry']} to retry, {s['replace']} to replace, "
                f"{s['delete']} to delete.")
    extras = [f"{s['unchanged']} unchanged"]
    for key, label in (("blocked", "blocked"), ("gave_up", "gave up"), ("waiting", "waiting to retry"),
                       ("waiting_quota", "waiting for their team's GPU quota"),
                       ("cancelled", "cancelled"), ("would_prune", "would prune")):
        if s[key]:
            extras.append(f"{s[key]} {label}")
    return f"{head} ({', '.join(extras)})"


def _shown(change: Change) -> bool:
    return not (change.action is Action.NOOP and change.reason is Reason.UNCHANGED)


def _label(change: Change) -> str:
    return f"{change.action.value}" if change.action is not Action.NOOP else change.reason.value


def team_of(change: Change) -> str | None:
    """The team owning the change's run (expctl.yaml's ``teams:``; None: no team, or a run no longer desired)."""
    return change.desired.job.team if change.desired is not None else None


def by_team(changes: list[Change]) -> list[tuple[str | None, list[Change]]]:
    """Changes grouped by team, teams in name order (runs of no team last), each group in plan order."""
    groups: dict[str | None, list[Change]] = {}
    for c in changes:
        groups.setdefault(team_of(c), []).append(c)
    return sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))


def human(plan: Plan) -> str:
    where = "working tree (uncommitted)" if plan.worktree else plan.commit[:12]
    lines = [f"expctl plan · {where} · backend {plan.backend}", ""]
    shown = [c for c in plan.changes if _shown(c)]
    width = max((len(c.name) for c in shown), default=0)
    exp_width = max((len(c.experiment) for c in shown), default=0)
    groups = by_team(shown)
    for team, changes in groups:
        if len(groups) > 1 or team is not None:
            lines.append(f"  team {team}" if team is not None else "  no team")
        lines.extend(_human_line(c, width, exp_width) for c in changes)
    if shown:
        lines.append("")
    lines.append(summary_line(plan))
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(one_line(ln) for ln in lines) + "\n"  # an orphan's name and experiment come from the store


def _human_line(c: Change, width: int, exp_width: int) -> str:
    point = " ".join(one_line(o) for o in c.overrides) or "-"
    why = c.reason.value if c.action is not Action.NOOP else ""
    detail = one_line("; ".join(p for p in (why, c.detail) if p))
    return (f"  {_SYMBOL[c.action]:>3} {_label(c):<11} {c.name:<{width}}  {c.experiment:<{exp_width}}  "
            f"{point}" + (f"  ({detail})" if detail else ""))


def change_dict(change: Change) -> dict[str, Any]:
    return {
        "action": change.action.value,
        "reason": change.reason.value,
        "detail": change.detail,
        "experiment": change.experiment,
        "run_key": change.run_key,
        "name": change.name,
        "attempt": change.attempt,
        "overrides": list(change.overrides),
        "spec_hash": change.spec_hash,
        "deletes": list(change.deletes),
        "team": team_of(change),
    }


def as_dict(plan: Plan) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "commit": plan.commit,
        "backend": plan.backend,
        "worktree": plan.worktree,
        "prune": plan.prune,
        "replace_running": plan.replace_running,
        "fingerprint": plan.fingerprint,
        "changes": [change_dict(c) for c in plan.changes],
        "summary": summary(plan),
        "notes": list(plan.notes),
    }


def as_json(plan: Plan) -> str:
    return json.dumps(as_dict(plan), indent=2) + "\n"


def markdown(plan: Plan) -> str:
    where = "the working tree" if plan.worktree else f"`{plan.commit[:12]}`"
    lines = [f"### expctl plan for {where} on `{plan.backend}`", "", f"**{summary_line(plan)}**", ""]
    shown = [c for c in plan.changes if _shown(c)]
    groups = by_team(shown)
    for team, changes in groups:
        if len(groups) > 1 or team is not None:
            lines += [""] * (lines[-1] != "") + [f"#### team {md_text(team)}" if team else "#### no team", ""]
        lines += ["| | action | run | experiment | overrides | reason |", "|---|---|---|---|---|---|"]
        for c in changes:
            point = ", ".join(md_code(o) for o in c.overrides) or "—"
            reason = md_text("; ".join(p for p in (c.reason.value, c.detail) if p))
            lines.append(f"| {_SYMBOL[c.action]} | {_label(c)} | {md_code(c.name)} | {md_text(c.experiment)} | "
                         f"{point} | {reason} |")
    lines += [""] * bool(plan.notes) + [f"> note: {md_text(n)}" for n in plan.notes]
    return "\n".join(lines) + "\n"
