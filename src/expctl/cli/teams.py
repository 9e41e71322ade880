"""``expctl teams``: what a platform admin runs about teams (``codeowners``, ``status``, ``plan``, ``apply``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click

from expctl.cli.common import echo_json, is_terminal, workspace
from expctl.core import backend_registry
from expctl.core.errors import ExpctlError
from expctl.core.sanitize import one_line

_backend = click.option("--backend", "backend_name", default=None, type=click.Choice(backend_registry.names()),
                        help="Where runs run (default: $EXPCTL_BACKEND, expctl.yaml, else local).")
_output = click.option("--output", "-o", "output", type=click.Choice(["human", "json"]), default="human",
                       show_default=True)


@click.group()
def teams() -> None:
    """Teams declared in expctl.yaml: who owns which experiments (docs/teams.md)."""


@teams.command()
@click.pass_context
def codeowners(ctx: click.Context) -> None:
    """Write .github/CODEOWNERS from the teams (each team's paths → its reviewers, else its members)."""
    from expctl.engine.teams import write_codeowners

    path, changed = write_codeowners(workspace(ctx))
    rel = path.relative_to(workspace(ctx).repo)
    click.echo(f"wrote {rel}: commit it with expctl.yaml" if changed else f"{rel} is up to date")


@teams.command("status")
@_backend
@_output
@click.pass_context
def status(ctx: click.Context, backend_name: str | None, output: str) -> None:
    """Per team: its GPU quota, the GPUs in use, runs running, pending and waiting for the quota (and, when
    teams declare mlflow:, its MLflow workspace and the runs tracked there)."""
    from expctl.engine.plan import PlanOptions, compute_plan, desired_state
    from expctl.engine.teams import team_usage

    ws = workspace(ctx)
    opts = PlanOptions()
    desired = desired_state(ws.repo, opts)
    name = ws.backend_name(desired.settings, backend_name)
    backend = ws.open_backend(name, desired.settings)
    plan, observed = compute_plan(desired, backend, ws.open_tracker(desired.settings, name), opts)
    rows = [asdict(u) for u in team_usage(desired, plan, observed)]
    if output == "json":
        echo_json(rows)
        return
    headers: tuple[str, ...] = ("TEAM", "QUOTA", "GPUS IN USE", "RUNNING", "PENDING", "WAITING")
    cells = [[str(r["team"]), "-" if r["quota_gpus"] is None else str(r["quota_gpus"]), str(r["gpus_in_use"]),
              str(r["running"]), str(r["pending"]), str(r["waiting"])] for r in rows]
    if any(r["workspace"] for r in rows):  # teams in MLflow: each one's workspace and the runs tracked there
        headers += ("MLFLOW WORKSPACE", "RUNS")
        cells = [[*c, str(r["workspace"]), str(r["runs"])] for c, r in zip(cells, rows, strict=True)]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    for line in (headers, *cells):
        click.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


_SYMBOL = {"create": "+", "update": "~", "delete": "-", "blocked": "!", "would-prune": " ", "unchanged": " "}
_prune = click.option("--prune", is_flag=True, help="Delete the objects of teams no longer declared.")
_rotate = click.option("--rotate", is_flag=True,
                       help="Give every team's MLflow job identity a new password (teams that declare mlflow:).")


def _plan_text(plan: Any) -> str:
    shown = [c for c in plan.changes if c.action.value != "unchanged"]
    lines = [f"expctl teams plan · {plan.commit[:12]} · backend {plan.backend}", ""]
    width = max((len(c.obj.shown) for c in shown), default=0)
    for c in shown:
        team = f"team {c.obj.team}" if c.obj.team else "shared"
        detail = f"  ({c.detail})" if c.detail else ""
        lines.append(f"  {_SYMBOL[c.action.value]:>1} {c.action.value:<11} {c.obj.shown:<{width}}  {team}{detail}")
    counts = {a: sum(1 for c in plan.changes if c.action.value == a) for a in _SYMBOL}
    lines += [""] if shown else []
    head = (f"Plan: {counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete."
            if plan.writes else "No changes.")
    extras = [f"{counts['unchanged']} unchanged"] + [f"{counts[k]} {k}" for k in ("blocked", "would-prune")
                                                     if counts[k]]
    if plan.fingerprint or plan.mlflow is None:  # the backend's reconciler ran
        lines.append(f"{head} ({', '.join(extras)})")
    lines += [f"note: {n}" for n in getattr(plan, "notes", ())]
    if plan.mlflow is not None:
        lines += plan.mlflow.lines()
        n = len(plan.mlflow.changes)
        lines.append(f"MLflow: {n} to change." if n else "MLflow: no changes.")
    return "\n".join(one_line(ln) for ln in lines) + "\n"


def _plan_json(plan: Any) -> list[dict[str, Any]]:
    rows = [{"action": c.action.value, "kind": c.obj.kind, "name": c.obj.name, "namespace": c.obj.namespace or None,
             "team": c.obj.team or None, "detail": c.detail} for c in plan.changes]
    mlflow = plan.mlflow.changes if plan.mlflow is not None else ()
    kept = plan.mlflow.kept if plan.mlflow is not None else ()
    return rows + [{"action": c.action if i < len(mlflow) else "kept", "kind": f"mlflow-{c.kind}", "name": c.name,
                    "namespace": c.args.get("workspace") or None, "team": c.team or None, "detail": c.reason}
                   for i, c in enumerate((*mlflow, *kept))]


@teams.command("plan")
@_backend
@_prune
@_rotate
@_output
@click.pass_context
def plan_cmd(ctx: click.Context, backend_name: str | None, prune: bool, rotate: bool, output: str) -> None:
    """What `teams apply` would create, update or delete for the teams (namespaces, RBAC, quotas, queues; MLflow
    workspaces, roles, users when the teams declare mlflow:)."""
    from expctl.engine.team_platform import teams_plan

    plan = teams_plan(workspace(ctx), backend_name, prune, rotate)
    if output == "json":
        echo_json(_plan_json(plan))
        for note in plan.notes:
            click.echo(one_line(f"note: {note}"), err=True)
    else:
        click.echo(_plan_text(plan), nl=False)


@teams.command("apply")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@_backend
@_prune
@_rotate
@click.option("--lock-timeout", default=600.0, type=float, show_default=True, help="Seconds to wait for another apply.")
@click.pass_context
def apply_cmd(ctx: click.Context, yes: bool, backend_name: str | None, prune: bool, rotate: bool,
              lock_timeout: float) -> None:
    """Create and update the teams' platform objects (with --prune, delete those of teams no longer declared)."""
    from expctl.engine.team_platform import TeamsPlan, teams_apply

    def confirm(plan: TeamsPlan) -> bool:
        click.echo(_plan_text(plan), nl=False)
        if yes:
            return True
        if not is_terminal():
            raise ExpctlError("teams apply needs -y when stdin is not a terminal")
        return click.confirm("Apply these changes?", default=False)

    result = teams_apply(workspace(ctx), backend_name, prune, confirm, lock_timeout, rotate)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not result.plan.total_writes:
        click.echo(_plan_text(result.plan), nl=False)
        return
    if result.declined:
        click.echo("Nothing applied.")
        return
    for line in result.failures:
        click.echo(one_line(f"error: {line}"), err=True)
    click.echo(f"Applied: {result.done_count} of {result.plan.total_writes} changes.")
    if result.failures:
        ctx.exit(3)  # as `expctl apply` when a write failed
