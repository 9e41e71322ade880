"""``expctl teams``: what a platform admin runs about teams (``codeowners``, ``status``)."""

from __future__ import annotations

from dataclasses import asdict

import click

from expctl.cli.common import echo_json, workspace
from expctl.core import backend_registry


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
@click.option("--backend", "backend_name", default=None, type=click.Choice(backend_registry.names()),
              help="Where runs run (default: $EXPCTL_BACKEND, expctl.yaml, else local).")
@click.option("--output", "-o", "output", type=click.Choice(["human", "json"]), default="human", show_default=True)
@click.pass_context
def status(ctx: click.Context, backend_name: str | None, output: str) -> None:
    """Per team: its GPU quota, the GPUs in use, runs running, pending and waiting for the quota."""
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
    headers = ("TEAM", "QUOTA", "GPUS IN USE", "RUNNING", "PENDING", "WAITING")
    cells = [[str(r["team"]), "-" if r["quota_gpus"] is None else str(r["quota_gpus"]), str(r["gpus_in_use"]),
              str(r["running"]), str(r["pending"]), str(r["waiting"])] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    for line in (headers, *cells):
        click.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
