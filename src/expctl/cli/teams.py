"""``expctl teams``: what a platform admin runs about teams (``codeowners``)."""

from __future__ import annotations

import click

from expctl.cli.common import workspace


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
