"""Operator commands in Slurm's and Arena's spirit: status, cancel, logs, describe, history, ui."""

from __future__ import annotations

import os
import re
import sys
import time
from typing import Any

import click

from expctl.cli import say
from expctl.cli.common import echo_json, is_terminal, workspace
from expctl.core import backend_registry
from expctl.core.errors import ExpctlError
from expctl.core.model import ObservedRun, Phase
from expctl.core.sanitize import log_line, one_line

_backend = click.option("--backend", "backend_name", default=None, type=click.Choice(backend_registry.names()),
                        help="Where runs run (default: $EXPCTL_BACKEND, expctl.yaml, else local).")
_team = click.option("--team", default=None, help="Only the runs of this team's experiments (expctl.yaml's teams:).")
_json = click.option("--output", "-o", "output", type=click.Choice(["human", "json"]), default="human",
                     show_default=True)


def _age(created: float | None) -> str:
    if created is None:
        return "-"
    seconds = max(0, int(time.time() - created))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _row(run: ObservedRun, team: str | None = None) -> dict[str, object]:
    return {
        "run": run.name, "experiment": run.experiment, "team": team, "run_key": run.run_key, "kind": run.kind or "-",
        "replicas": run.replicas,
        "gpus": run.gpus, "state": run.state, "attempt": run.attempt, "age": _age(run.created_at),
        "user": (run.user or "-").split(" <")[0], "applied_by": run.user, "mlflow_run": run.mlflow_run_id or "-",
        "live": run.live,
        "reason": run.message, "spec_hash": run.spec_hash, "namespace": run.namespace,
        "created": run.created_at, "finished": run.finished_at,
    }



def _short_user(user: object) -> str:
    """``Ada Lovelace <ada@example.com> via github:ada`` → ``Ada Lovelace via github:ada`` (the table's USER)."""
    return re.sub(r"\s*<[^>]*>", "", str(user)) or "-"


_COLUMNS = ("run", "experiment", "kind", "replicas", "gpus", "state", "attempt", "age", "user", "mlflow_run",
            "reason")


def _pending_reason(row: dict[str, object]) -> str:
    """Why a pending run waits (like squeue's REASON): the scheduler's reason or the local queue; else blank."""
    if row["state"] in ("Waiting", "Blocked"):  # held by a pipeline: what it waits for, or whose failure
        return " ".join(str(row["reason"]).split())[:80]
    return " ".join(str(row["reason"]).split())[:60] if row["state"] == "Pending" else ""


def _table(rows: list[dict[str, object]]) -> list[str]:
    headers = [c.upper().replace("_", " ") for c in _COLUMNS]
    cells = [[one_line(_short_user(r[c]) if c == "user" else str(r[c])[:12] if c == "mlflow_run"
                       else _pending_reason(r) if c == "reason" else r[c]) for c in _COLUMNS] for r in rows]
    widths = [max([len(h), *(len(line[i]) for line in cells)]) for i, h in enumerate(headers)]
    return ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in [headers, *cells]]


@click.command()
@click.option("--experiment", default=None, help="Only runs of this experiment.")
@click.option("--state", default=None, type=click.Choice([*(p.value for p in Phase), "Waiting", "Blocked"],
                                                          case_sensitive=False),
              help="Only runs in this state.")
@click.option("--user", default=None, help="Only runs applied by this user (substring match).")
@click.option("--all", "show_all", is_flag=True, help="Include runs whose objects are gone (from MLflow).")
@_team
@_backend
@_json
@click.pass_context
def status(ctx: click.Context, experiment: str | None, state: str | None, user: str | None, show_all: bool,
           team: str | None, backend_name: str | None, output: str) -> None:
    """A squeue-like table of runs."""
    from expctl.tracking.mlflow.sqlite_search import reads_only

    reads_only()  # this command never writes to the tracking store
    from expctl.engine.operate import held_rows, observe_all, team_owner

    ws = workspace(ctx)
    runs = observe_all(ws, backend_name, include_gone=show_all, team=team)
    owner = team_owner(ws)
    rows = [_row(r, owner(r.experiment)) for r in runs
            if experiment in (None, r.experiment)
            and (state is None or r.state.lower() == state.lower())
            and (user is None or user.lower() in (r.user or "").lower())]
    if user is None:  # a held run was applied by nobody yet
        rows += [{**r, "team": owner(str(r["experiment"]))} for r in held_rows(ws, backend_name, team)
                 if experiment in (None, r["experiment"])
                 and (state is None or str(r["state"]).lower() == state.lower())]
    if output == "json":
        echo_json(rows)
        return
    for line in _table(rows):
        click.echo(line)
    if not rows:
        click.echo("(no runs)", err=True)


@click.command()
@click.argument("runs", nargs=-1)
@click.option("--experiment", default=None, help="Cancel every unfinished run of this experiment (a whole sweep).")
@click.option("--cascade", is_flag=True,
              help="With --experiment: cancel the unfinished runs of the experiments that consume it too.")
@_team
@_backend
@click.pass_context
def cancel(ctx: click.Context, runs: tuple[str, ...], experiment: str | None, cascade: bool, team: str | None,
           backend_name: str | None) -> None:
    """Stop runs; apply will not relaunch them until their spec changes."""
    from rich.console import Console
    from rich.progress import Progress

    from expctl.engine.operate import cancel_runs, unfinished_dependents

    if not runs and not experiment and not team:
        raise ExpctlError("name runs to cancel, or --experiment X, or --team T")
    if cascade and not experiment:
        raise ExpctlError("--cascade goes with --experiment X (the experiments that consume X)")
    also: list[str] = []
    downstream = unfinished_dependents(workspace(ctx), backend_name, experiment) if experiment else {}
    if downstream:
        listed = ", ".join(f"{name} ({n} unfinished)" for name, n in downstream.items())
        if not cascade:
            if not sys.stdin.isatty():
                raise ExpctlError(f"--experiment {experiment}: {listed} consume it; pass --cascade to cancel "
                                  "them too (without it they are blocked once it is cancelled)")
            cascade = click.confirm(f"{listed} consume {experiment}. Cancel them too?", default=False)
        also = list(downstream) if cascade else []
    with Progress(console=Console(stderr=True), disable=not is_terminal(), transient=True) as bar:
        task = bar.add_task("cancelling", total=None)
        result = cancel_runs(workspace(ctx), backend_name, runs, experiment,
                             progress=lambda run: bar.advance(task), team=team, also=also)
    for warning in result.warnings:
        say(f"warning: {warning}")
    for name in result.cancelled:
        click.echo(f"cancelled {one_line(name)}")
    for name, why in result.skipped:
        say(f"{name}: {why}")
    for name, why in result.unrecorded:
        say(f"error: {name}: cancelled, but not yet recorded in MLflow (the next apply or cancel records it): {why}")
    if not result.cancelled and not result.skipped:
        click.echo("nothing to cancel: no unfinished run matched", err=True)
    if result.unrecorded:
        ctx.exit(3)


@click.command()
@click.argument("run")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the run ends.")
@click.option("--replica", default=None, help="One replica, e.g. worker-1 (default: all, prefixed).")
@click.option("--raw", is_flag=True, help="Pass terminal escape sequences (colours) through unescaped.")
@_backend
@click.pass_context
def logs(ctx: click.Context, run: str, follow: bool, replica: str | None, raw: bool,
         backend_name: str | None) -> None:
    """Print (or follow) a run's logs. Control characters are escaped (``\\x1b[2J``) unless ``--raw``."""
    from expctl.tracking.mlflow.sqlite_search import reads_only

    reads_only()  # this command never writes to the tracking store
    from expctl.engine.logs import live_or_kept
    from expctl.engine.operate import open_for_operations

    ws = workspace(ctx)
    backend, _tracker, settings = open_for_operations(ws, backend_name, tracker=False)
    try:
        source, lines = live_or_kept(backend, lambda: ws.open_tracker(settings, backend.name), run, replica,
                                     follow)
        click.echo(f"expctl: logs of {one_line(run)} {one_line(source)}", err=True)
        for line in lines:
            shown = line if raw else log_line(line)
            # --raw means as the job wrote it: click would strip CSI sequences (colours, ESC[2J) on a pipe
            click.echo(shown, nl=not shown.endswith("\n"), color=True if raw else None)
            sys.stdout.flush()
    except KeyboardInterrupt:
        ctx.exit(130)


@click.command()
@click.argument("run")
@_backend
@_json
@click.pass_context
def describe(ctx: click.Context, run: str, backend_name: str | None, output: str) -> None:
    """Everything about one run: config, overrides, hashes, commit, attempts, MLflow run."""
    from expctl.tracking.mlflow.sqlite_search import reads_only

    reads_only()  # this command never writes to the tracking store
    from expctl.engine.operate import describe_run

    info = describe_run(workspace(ctx), backend_name, run)
    if output == "json":
        echo_json(info)
        return
    click.echo(_describe_human(info))


def _describe_human(info: dict[str, Any]) -> str:
    import yaml

    info = dict(info)
    config, attempts, phases = info.pop("config", None), info.pop("attempts"), info.pop("phases")
    inputs, dependents = info.pop("inputs", []), info.pop("dependents", [])
    lines = [f"{key + ':':<19}{'-' if value is None else one_line(value)}" for key, value in info.items()
             if key != "overrides"]
    lines.insert(3, f"{'overrides:':<19}{' '.join(one_line(o) for o in info['overrides']) or '-'}")
    lines.append("attempts:")
    for a in attempts:
        ended = f" → {a['finished']}" if a["finished"] else ""
        why = f"  ({one_line(a['message'])})" if a["message"] else ""
        lines.append(f"  {a['attempt']}  {a['name']}  {a['state']:<9}  spec {a['spec_hash'][:12]}  "
                     f"{a['created']}{ended}  mlflow {a['mlflow_run'] or '-'}  [{a['object']}]{why}")
        if a.get("resumed_from"):
            r = a["resumed_from"]
            at = f" at epoch {r['epoch']}" if r["epoch"] is not None else ""
            lines.append(f"     ↳ resumed from attempt {r['attempt']}{at} (mlflow {r['mlflow_run'] or '-'}): "
                         f"{r['checkpoint']}")
    for i in inputs:
        got = i["resolved"]
        now = f"{got['label']}  {got['uri']}" if got else "not resolvable yet (waiting)"
        lines.append(f"input {i['name']}: {i['wants']}{' (each)' if i['each'] else ''} → {now}")
    if dependents:
        lines.append(f"{'dependents:':<19}{', '.join(dependents)}")
    lines.append("phase history:")
    for e in phases:
        detail = f"  {one_line(e['detail'])}" if e.get("detail") else ""
        lines.append(f"  {e['time'] or 'now':<20}  attempt {e['attempt']}  spec {e['spec_hash'][:12]}  "
                     f"{e['phase']}{detail}")
    if config is not None:
        lines.append("config (composed at HEAD):")
        lines.extend("  " + ln for ln in yaml.safe_dump(config, sort_keys=False).rstrip().split("\n"))
    else:
        lines.append("config: - (the experiment is no longer desired at HEAD)")
    return "\n".join(one_line(ln) for ln in lines)  # every value in a line is data: no line can forge another


@click.command()
@click.option("--experiment", default=None, help="Only changes to this experiment.")
@click.option("--limit", default=50, type=click.IntRange(min=1), show_default=True,
              help="At most this many entries (newest first).")
@_team
@_json
@click.pass_context
def history(ctx: click.Context, experiment: str | None, limit: int, team: str | None, output: str) -> None:
    """The audit trail: who applied which change to which run, when, from which commit."""
    from expctl.tracking.mlflow.sqlite_search import reads_only

    reads_only()  # this command never writes to the tracking store
    from expctl.engine.operate import audit_history

    entries = audit_history(workspace(ctx), experiment, limit, team)
    if output == "json":
        echo_json(entries)
        return
    if not entries:
        click.echo("(no applied changes recorded)", err=True)
    for e in entries:  # anyone can write an audit entry into MLflow: every field is shown as data
        field = {k: one_line(str(e.get(k, "?"))) for k in ("action", "run", "experiment", "commit", "who")}
        click.echo(f"{_when(e.get('time'))}  {field['action']:<8} {field['run']:<30} {field['experiment']:<16} "
                   f"commit {field['commit'][:12]}  by {field['who']}")


def _when(value: object) -> str:
    """An entry's time (seconds since the epoch) as UTC; a value that is not one is shown as it is, escaped."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(float(value)))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return one_line(str(value))[:20].ljust(20)


@click.command()
@click.option("--port", default=5000, type=click.IntRange(1, 65535), show_default=True, help="Port on 127.0.0.1.")
@click.option("--experiment", default=None, help="Print (and open) this experiment's runs.")
@click.option("--open", "open_browser", is_flag=True, help="Open the address in a web browser once the UI answers.")
@click.pass_context
def ui(ctx: click.Context, port: int, experiment: str | None, open_browser: bool) -> None:
    """Serve the MLflow UI for the configured store on 127.0.0.1; print where the training runs are."""
    import webbrowser

    from expctl.engine.operate import ui_links

    found = ui_links(workspace(ctx), port, experiment)
    if found.command is not None:
        from expctl.engine.ui_server import port_taken

        if port_taken(port):  # its answers are not expctl's UI: no links to it
            raise ExpctlError(f"127.0.0.1:{port} is in use by another program: choose another --port")
    if found.warning:
        say(f"warning: {found.warning}")
    target = found.experiments[experiment] if experiment else found.runs
    click.echo(f"Training runs: {one_line(target)}")
    if not experiment:
        width = max((len(one_line(name)) for name in found.experiments), default=0)
        for name, url in found.experiments.items():
            click.echo(f"  {one_line(name):<{width}}  {one_line(url)}")
        click.echo(f"Model registry: {one_line(found.models)}")
    if found.command is None:
        say(f"The tracking store is a server: {found.base}")
        if open_browser:
            webbrowser.open(target)
        return
    from expctl.engine.ui_server import serve

    say(f"MLflow UI on {found.base} (Ctrl-C to stop)")
    sys.stdout.flush()
    on_ready = (lambda: webbrowser.open(target)) if open_browser else None
    ctx.exit(serve(found.command, {**os.environ, **found.env}, found.base, on_ready))
