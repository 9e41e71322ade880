"""``expctl validate``, ``plan``, ``apply`` and ``render``: from committed configs to applied runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from expctl import backend_registry
from expctl.backends.base import Backend
from expctl.cli.common import (
    applied_by,
    open_lock,
    output_option,
    progress_printer,
    warn_dirty,
    workspace,
)
from expctl.errors import ExpctlError
from expctl.model import Change, Plan
from expctl.project import Desired
from expctl.reconcile import PlanOptions, check_fresh, compute_plan, desired_state, options_of, read_saved_plan
from expctl.tracking.base import Tracker
from expctl.workspace import Workspace, check_runnable

_rev = click.option("--rev", default="HEAD", show_default=True, help="Commit to read experiments from.")
_worktree = click.option("--worktree", is_flag=True,
                         help="Read the working tree instead of a commit (for local iteration; not appliable).")
_backend = click.option("--backend", "backend_name", default=None, type=click.Choice(backend_registry.names()),
                        help="Where runs run (default: $EXPCTL_BACKEND, expctl.yaml, else local).")


@click.command()
@_rev
@_worktree
@_backend
@click.pass_context
def validate(ctx: click.Context, rev: str, worktree: bool, backend_name: str | None) -> None:
    """Compose every experiment and report all errors at once (also: kinds the backend cannot run)."""
    ws = workspace(ctx)
    if not worktree:
        warn_dirty(ws.repo)
    desired = desired_state(ws.repo, PlanOptions(rev=rev, worktree=worktree))
    check_runnable(ws.backend_name(desired.settings, backend_name), desired.runs)
    click.echo(f"{len(desired.experiments)} experiments, {len(desired.runs)} runs: valid.")


def _render_plan(plan: Plan, output: str) -> str:
    from expctl import views

    if output == "json":
        return views.as_json(plan)
    if output == "markdown":
        return views.markdown(plan)
    return views.human(plan)


def _connect(ws: Workspace, desired: Desired, requested: str | None) -> tuple[str, Backend, Tracker]:
    """The backend (by --backend, EXPCTL_BACKEND or expctl.yaml) and the tracker the plan is made against."""
    name = ws.backend_name(desired.settings, requested)
    check_runnable(name, desired.runs)
    return name, ws.open_backend(name, desired.settings), ws.open_tracker(desired.settings, name)


@click.command()
@_rev
@_worktree
@_backend
@output_option
@click.option("--prune", is_flag=True, help="Delete runs whose experiments were removed.")
@click.option("--replace-running", is_flag=True, help="Replace pending or running runs whose spec changed.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes to apply.")
@click.option("--out", "out", type=click.Path(dir_okay=False), help="Save the plan (JSON) for `expctl apply`.")
@click.pass_context
def plan(ctx: click.Context, rev: str, worktree: bool, backend_name: str | None, output: str, prune: bool,
         replace_running: bool, detailed_exitcode: bool, out: str | None) -> None:
    """Show what apply would do, and why."""
    from expctl import views

    ws = workspace(ctx)
    if not worktree:
        warn_dirty(ws.repo)
    opts = PlanOptions(rev=rev, worktree=worktree, prune=prune, replace_running=replace_running)
    desired = desired_state(ws.repo, opts)
    _name, backend, tracker = _connect(ws, desired, backend_name)
    result, _ = compute_plan(desired, backend, tracker, opts)
    if out:
        Path(out).write_text(views.as_json(result))
    click.echo(_render_plan(result, output), nl=False)
    if detailed_exitcode and (result.has_writes or views.summary(result)["blocked"]):
        ctx.exit(2)


@click.command()
@click.argument("planfile", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@_rev
@_backend
@click.option("--prune", is_flag=True, help="Delete runs whose experiments were removed.")
@click.option("--force-prune", is_flag=True, help="Prune even when no run at all is desired.")
@click.option("--replace-running", is_flag=True, help="Replace pending or running runs whose spec changed.")
@click.option("--wait", is_flag=True, help="Follow the runs until they finish.")
@click.option("--lock-timeout", default=600.0, show_default=True, help="Seconds to wait for another apply.")
@click.option("--timeout", "wait_timeout", default=3600.0, show_default=True, help="Seconds --wait waits.")
@click.pass_context
def apply(ctx: click.Context, planfile: str | None, yes: bool, rev: str, backend_name: str | None, prune: bool,
          force_prune: bool, replace_running: bool, wait: bool, lock_timeout: float,
          wait_timeout: float) -> None:
    """Apply the plan (or a saved plan file): deletes first, then creates."""
    from expctl import views
    from expctl.apply import apply_plan, sync
    from expctl.operations import record_applied
    from expctl.waiting import wait_for_runs

    ws = workspace(ctx)
    saved = read_saved_plan(Path(planfile)) if planfile else None
    if saved is not None:
        opts = options_of(saved)
        backend_name = backend_name or str(saved["backend"])
    else:
        warn_dirty(ws.repo)
        opts = PlanOptions(rev=rev, prune=prune, replace_running=replace_running, force_prune=force_prune)
    desired = desired_state(ws.repo, opts)
    name, backend, tracker = _connect(ws, desired, backend_name)
    tracker.check()
    with open_lock(ws, name, desired.settings, lock_timeout):
        sync(backend, tracker, desired.runs)
        result, _ = compute_plan(desired, backend, tracker, opts)
        if saved is not None:
            check_fresh(saved, result, Path(planfile or ""))
        click.echo(views.human(result), nl=False)
        if result.has_writes:
            if not yes:
                if not sys.stdin.isatty():
                    raise ExpctlError("refusing to prompt: stdin is not a terminal (pass -y to apply)")
                click.confirm("Apply these changes?", abort=True)
            who = applied_by(ws.repo, desired.snapshot.commit)
            show = progress_printer()

            def audited(change: Change, status: str) -> None:  # each change is audited as soon as it is done
                show(change, status)
                if status == "done":
                    record_applied(tracker, result, [change], who)

            outcome = apply_plan(result, backend, tracker, who, progress=audited)
            click.echo(f"Applied {len(outcome.done)} changes" + (f", {len(outcome.failed)} failed." if
                                                                  outcome.failed else "."))
            for change, message in outcome.failed:
                click.echo(f"error: {change.name}: {message}", err=True)
            if not outcome.ok:
                ctx.exit(3)
    if wait:
        waiter = applied_by(ws.repo, desired.snapshot.commit)
        finished = wait_for_runs(backend, tracker, desired.runs, timeout=wait_timeout,
                                 quiet=not sys.stderr.isatty() or bool(os.environ.get("CI")), applied_by=waiter,
                                 on_applied=lambda p, c: record_applied(tracker, p, [c], waiter))
        click.echo(finished.summary)
        if not finished.ok:
            ctx.exit(1 if finished.timed_out else 0)


@click.command()
@_rev
@_worktree
@click.option("--experiment", default=None, help="Only this experiment.")
@click.pass_context
def render(ctx: click.Context, rev: str, worktree: bool, experiment: str | None) -> None:
    """Print the Kubernetes manifests of the desired runs (like `helm template`)."""
    from expctl.render import render_all

    ws = workspace(ctx)
    desired = desired_state(ws.repo, PlanOptions(rev=rev, worktree=worktree))
    runs = [r for r in desired.runs if experiment in (None, r.experiment)]
    if experiment and not runs:
        raise ExpctlError(f"--experiment {experiment}: no such experiment")
    click.echo(render_all(runs, desired.settings, ws.repo), nl=False)
