"""``expctl report``: the results of a commit's experiments as Markdown (a comment), JSON or one HTML page;
``--publish`` keeps the report as one comment on the commit (or ``--publish-pr N``: on a pull request) and sets
the commit status line."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from expctl.cli import say
from expctl.cli.common import workspace


def status_of(states: list[str]) -> str:
    """The commit status's state: failure when a run failed, pending while any is unfinished, else success."""
    if any(s == "Failed" for s in states):
        return "failure"
    if any(s not in ("Succeeded", "Cancelled") for s in states):
        return "pending"
    return "success"


@click.command()
@click.option("--rev", default="HEAD", show_default=True, help="The commit whose runs to report.")
@click.option("--output", "-o", "output", type=click.Choice(["markdown", "json", "html"]), default="markdown",
              show_default=True)
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A directory for the plots (and report.<ext>); without it, no plots (HTML: inline ones; --publish: "
              "logged to MLflow only).")
@click.option("--all", "all_experiments", is_flag=True, help="Every experiment, not only those the commit changed.")
@click.option("--backend", default=None, help="The backend whose runs to read (default: expctl.yaml's).")
@click.option("--top", type=click.IntRange(1, 500), default=20, show_default=True, help="Runs per table.")
@click.option("--publish", is_flag=True, help="Keep the report as the commit's comment and set its status "
              "(GitHub Actions: GITHUB_TOKEN, GITHUB_REPOSITORY).")
@click.option("--publish-pr", "publish_pr", type=click.IntRange(1), default=None,
              help="Keep the report as this pull request's comment instead.")
@click.pass_context
def report(ctx: click.Context, rev: str, output: str, out: Path | None, all_experiments: bool,
           backend: str | None, top: int, publish: bool, publish_pr: int | None) -> None:
    """Per experiment the commit changed: its runs, the best, the gate, deltas vs champion and parent commit."""
    from expctl.core import report_render as render
    from expctl.core.report import summary_line
    from expctl.engine.report import ReportOptions, build_report

    ws = workspace(ctx)
    with tempfile.TemporaryDirectory(prefix="expctl-report-") as scratch:
        publishing = publish or publish_pr is not None
        plots_dir = out if out is not None else (Path(scratch) if output == "html" or publishing else None)
        built = build_report(ws, ReportOptions(rev=rev, all_experiments=all_experiments, backend=backend,
                                               out=plots_dir, log_plots=out is not None or publishing))
    for line in built.warnings:
        say(f"warning: {line}")
    rep = built.report
    if output == "json":
        text = render.as_json(rep) + "\n"
    elif output == "html":
        text = render.as_html(rep, built.images)
    else:
        text = render.markdown(rep, top=top)
    if out is not None:
        (out / f"report.{ {'markdown': 'md'}.get(output, output) }").write_text(text, encoding="utf-8")
    click.echo(text, nl=False)
    if publish or publish_pr is not None:
        from expctl.engine.github_publish import publish as to_github

        body = text if output == "markdown" else render.markdown(rep, top=top)
        states = [r.state for e in rep.experiments for r in e.runs]
        done = to_github(body, render.MARKER, pr=publish_pr, commit=rep.commit,
                         status=(status_of(states), summary_line(rep)) if publish_pr is None else None)
        for problem in done.problems:
            say(f"warning: GitHub: {problem}" + (" (the report is in the job summary)" if done.summary_written
                                                 else ""))
        if done.comment_url:
            say(f"GitHub: report comment {done.comment_url}")
