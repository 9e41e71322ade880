"""``expctl validate``, ``plan``, ``apply`` and ``render``: from committed configs to applied runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from expctl.backends.base import Backend
from expctl.cli import say
from expctl.cli.common import (
    SECONDS,
    output_option,
    progress_printer,
    warn_dirty,
    workspace,
)
from expctl.config import spec_cache
from expctl.config.desired_state import Desired
from expctl.core import backend_registry
from expctl.core.errors import ExpctlError
from expctl.core.model import Plan
from expctl.core.sanitize import one_line
from expctl.engine import identity
from expctl.engine.plan import PlanOptions, compute_plan, desired_state
from expctl.engine.workspace import Workspace, check_runnable
from expctl.tracking.base import Tracker

if TYPE_CHECKING:
    from expctl.core import planfile as saved_plans_types
    from expctl.engine import apply as engine_types

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
    name = ws.backend_name(desired.settings, backend_name)
    check_runnable(name, desired.runs)
    if name in backend_registry.BACKENDS:  # settings the backend cannot open with (slurm without a workdir)
        backend_registry.BACKENDS[name].check(desired.settings)
    click.echo(f"{len(desired.experiments)} experiments, {len(desired.runs)} runs: valid.")
    spec_cache.keep(desired)  # for describe: once the command succeeded


def _render_plan(plan: Plan, output: str) -> str:
    from expctl.core import views

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
    from expctl.tracking.mlflow.sqlite_search import reads_only

    reads_only()  # this command never writes to the tracking store
    from expctl.core import views

    if out == "":  # `--out "$PLAN"` with the variable unset: not silently "do not save"
        raise click.BadParameter("an empty path", param_hint="'--out'")
    ws = workspace(ctx)
    if not worktree:
        warn_dirty(ws.repo)
    opts = PlanOptions(rev=rev, worktree=worktree, prune=prune, replace_running=replace_running)
    desired = desired_state(ws.repo, opts)
    _name, backend, tracker = _connect(ws, desired, backend_name)
    result, _ = compute_plan(desired, backend, tracker, opts)
    if out is not None:
        try:
            Path(out).write_text(views.as_json(result))
        except OSError as exc:  # a full disk is an OSError without a file name
            raise ExpctlError(f"{out}: cannot save the plan: {exc.strerror or exc}") from exc
    click.echo(_render_plan(result, output), nl=False)
    spec_cache.keep(desired)  # for describe: once the command succeeded
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
@click.option("--wait", is_flag=True, help="Follow the runs until they finish (retrying them, under the lock).")
@click.option("--lock-timeout", default=600.0, type=SECONDS, show_default=True,
              help="Seconds to wait for another apply.")
@click.option("--timeout", "wait_timeout", default=3600.0, type=SECONDS, show_default=True,
              help="Seconds --wait waits.")
@click.pass_context
def apply(ctx: click.Context, planfile: str | None, yes: bool, rev: str, backend_name: str | None, prune: bool,
          force_prune: bool, replace_running: bool, wait: bool, lock_timeout: float,
          wait_timeout: float) -> None:
    """Apply the plan (or a saved plan file): deletes first, then creates. Exit 3 when a change failed."""
    from expctl.core import planfile as saved_plans
    from expctl.core import views
    from expctl.engine import apply as engine
    from expctl.engine import cancel_journal
    from expctl.engine.plan import options_of

    ws = workspace(ctx)
    ignored = [flag for flag, given in (("--rev", rev != "HEAD"), ("--prune", prune), ("--force-prune", force_prune),
                                        ("--replace-running", replace_running)) if given]
    if planfile and ignored:  # a saved plan carries its own commit and options: these would be silently ignored
        raise click.UsageError(f"{ignored[0]} cannot be combined with a saved plan (it applies the commit and "
                               "options it was made with)", ctx)
    saved = saved_plans.load(Path(planfile)) if planfile else None
    if saved is not None:
        _check_saved(ws, saved)
        opts = options_of(saved)
        backend_name = backend_name or saved.backend
    else:
        warn_dirty(ws.repo)
        opts = PlanOptions(rev=rev, prune=prune, replace_running=replace_running, force_prune=force_prune)
    desired = desired_state(ws.repo, opts)
    name, backend, tracker = _connect(ws, desired, backend_name)

    def confirm(_plan: Plan) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise ExpctlError("refusing to prompt: stdin is not a terminal (pass -y to apply)")
        click.confirm("Apply these changes?", abort=True)
        return True

    options = engine.ApplyOptions(
        plan=opts, who=identity.applied_by(ws.repo, desired.snapshot.commit), actor=identity.ci_actor(),
        saved=saved, concurrency=engine.write_concurrency(desired.settings, name), wait=wait,
        wait_timeout=wait_timeout, quiet=not sys.stderr.isatty() or bool(os.environ.get("CI")))
    hooks = engine.Hooks(show_plan=lambda p: click.echo(views.human(p), nl=False), confirm=confirm,
                         progress=progress_printer(), notice=say)
    lock = engine.apply_lock(ws.state_dir, name, desired.settings, lock_timeout)
    for warning in cancel_journal.replay(ws.state_dir, tracker):  # cancels MLflow did not take yet
        say(f"warning: {warning}")
    result = engine.run_apply(desired, backend, tracker, lock, options, hooks)
    report_apply(result)
    spec_cache.keep(desired)  # for describe: once the command succeeded
    ctx.exit(result.exit_code)


def _check_saved(ws: Workspace, saved: saved_plans_types.SavedPlan) -> None:
    """A saved plan of a commit this clone lacks, or for a backend there is none of, is refused naming the
    plan file and its key (not a --rev or --backend the user never typed)."""
    from expctl.config.schema import Settings
    from expctl.config.source import resolve
    from expctl.core.errors import SourceError

    try:
        ws.backend_name(Settings(), saved.backend)
    except ExpctlError:
        raise ExpctlError(f"unknown backend {saved.backend[:80]!r} (one of {', '.join(backend_registry.names())})",
                          file=str(saved.path), key="backend") from None
    try:
        resolve(ws.repo, saved.commit)
    except SourceError:
        raise ExpctlError(f"commit {saved.commit[:12]} is not in this repository (a plan made in another clone? "
                          "fetch it, or make the plan here)", file=str(saved.path), key="commit") from None


def report_apply(result: engine_types.EngineResult) -> None:
    """What was and was not applied: the summary on stdout, one line per failed or skipped change on stderr."""
    for outcome in result.applied:
        counts = f"Applied {len(outcome.done)} changes"
        extra = [f"{len(outcome.failed)} failed"] if outcome.failed else []
        extra += [f"{len(outcome.skipped)} not applied"] if outcome.skipped else []
        click.echo(counts + (f", {', '.join(extra)}." if extra else "."))
        for change, message in outcome.failed:
            say(f"error: {change.name}: {message}")
        for change in outcome.skipped:
            say(f"not applied: {change.name}")
        if outcome.stopped:
            say(f"error: apply stopped: {outcome.stopped}; run `expctl apply` again to finish")
    for warning in result.warnings:
        say(f"warning: {warning}")
    if result.waited is not None:
        click.echo(one_line(result.waited.summary))


@click.command()
@_rev
@_worktree
@click.option("--experiment", default=None, help="Only this experiment.")
@click.option("--backend", "backend_name", default=None, type=click.Choice(backend_registry.names()),
              help="Whose jobs to print (default: expctl.yaml's backend if it has any, else "
                   f"{backend_registry.rendering_default().name}).")
@click.pass_context
def render(ctx: click.Context, rev: str, worktree: bool, experiment: str | None, backend_name: str | None) -> None:
    """Print what apply would submit: Kubernetes manifests, or Slurm batch scripts (like `helm template`)."""
    ws = workspace(ctx)
    desired = desired_state(ws.repo, PlanOptions(rev=rev, worktree=worktree))
    runs = [r for r in desired.runs if experiment in (None, r.experiment)]
    if experiment is not None and not runs:
        raise ExpctlError(f"--experiment {experiment!r}: no such experiment")
    name = backend_name or ws.backend_name(desired.settings, None)
    info = backend_registry.lookup(name)
    if info.render is None:
        if backend_name:
            raise ExpctlError(f"--backend {name}: runs nothing that can be rendered (it starts processes here)")
        info = backend_registry.rendering_default()
    assert info.render is not None
    # The URI apply would give the jobs: --tracking-uri / MLFLOW_TRACKING_URI win over expctl.yaml, as there.
    settings = desired.settings.model_copy(update={"tracking_uri": ws.configured_tracking_uri(desired.settings)})
    click.echo(backend_registry.load(info.render)(runs, settings, ws.repo), nl=False)
