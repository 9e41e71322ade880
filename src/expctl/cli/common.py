"""What the commands share: the workspace, output options, warnings, who applies, progress lines."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from expctl.cli import say
from expctl.core.model import Change
from expctl.core.sanitize import one_line
from expctl.engine.workspace import Workspace


class Seconds(click.ParamType[float]):
    """A duration in seconds: a finite number >= 0 (click's float takes ``nan``, ``inf`` and ``-1``, and the lock
    and the wait loop then fail with a traceback, wait forever or not at all)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        import math

        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds.", param, ctx)
        if not math.isfinite(seconds) or seconds < 0:
            self.fail(f"{value!r} is not a number of seconds (a finite number, 0 or more).", param, ctx)
        return seconds


SECONDS = Seconds()

output_option = click.option("--output", "-o", "output", type=click.Choice(["human", "json", "markdown"]),
                             default="human", show_default=True, help="Output format.")


def workspace(ctx: click.Context) -> Workspace:
    """The injected workspace (tests), or the git repository of --repo / the current directory."""
    obj = ctx.find_root().obj or {}
    if isinstance(obj.get("workspace"), Workspace):
        return obj["workspace"]  # type: ignore[no-any-return]
    from expctl.config.source import repo_root

    ws = Workspace(repo_root(Path(obj.get("repo") or ".").resolve()))
    obj["workspace"] = ws
    return ws


def warn_dirty(repo: Path) -> None:
    from expctl.config.source import dirty_paths

    dirty = dirty_paths(repo)
    if dirty:
        shown = ", ".join(one_line(p) for p in dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
        say(f"warning: uncommitted changes are not part of this plan: {shown} "
            "(commit them, or use --worktree to try them out)")



def progress_printer() -> Callable[[Change, str], None]:
    def show(change: Change, status: str) -> None:
        say(f"  {change.action.value:<8} {change.name}: {status}")

    return show


def echo_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, indent=2, default=str))


def is_terminal() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")
