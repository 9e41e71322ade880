"""The ``expctl`` command line (click). Thin: commands call library functions and print their views.

Imports here stay light (click and the standard library): ``expctl --help`` must not import Hydra, MLflow
or Kubernetes. Errors are one line each on stderr (``EXPCTL_DEBUG=1`` shows the traceback). The process entry
(``python -m expctl``, the console script) is ``program.run``: ``main``, then an exit without the interpreter's
teardown.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
import warnings
from typing import Any, NoReturn

import click

# command name → (module, function, one-line help): modules are imported only when a command runs.
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "validate": ("expctl.cli.planning", "validate", "Compose every experiment and report all errors."),
    "plan": ("expctl.cli.planning", "plan", "Show what apply would do, and why."),
    "apply": ("expctl.cli.planning", "apply", "Apply the plan (or a saved plan file)."),
    "render": ("expctl.cli.planning", "render", "Print what apply would submit (manifests, batch scripts)."),
    "status": ("expctl.cli.operate", "status", "A squeue-like table of runs."),
    "cancel": ("expctl.cli.operate", "cancel", "Stop runs; apply will not relaunch them."),
    "logs": ("expctl.cli.operate", "logs", "Print (or follow) a run's logs."),
    "describe": ("expctl.cli.operate", "describe", "Everything about one run."),
    "history": ("expctl.cli.operate", "history", "The audit trail of applied changes."),
    "ui": ("expctl.cli.operate", "ui", "Serve the MLflow UI on the configured store."),
    "lineage": ("expctl.cli.lineage", "lineage", "Where a registered model came from: run, commit, config, data."),
    "report": ("expctl.cli.report", "report", "The results of a commit's experiments: tables, plots, champion."),
    "teams": ("expctl.cli.teams", "teams", "Teams of expctl.yaml: CODEOWNERS from their paths and members."),
}


def _hidden(text: str) -> str:
    """``text`` without credentials: URLs' user information, the values of ``sanitize.SECRET_ENV`` and the
    secret query values of ``MLFLOW_TRACKING_URI``."""
    from expctl.core.sanitize import SECRET_ENV, redact, uri_secrets

    secrets = [os.environ.get(name, "") for name in SECRET_ENV]
    return redact(text, [*secrets, *uri_secrets(os.environ.get("MLFLOW_TRACKING_URI", ""))])


def _pipe_closed() -> NoReturn:
    """The reader of stdout went away (``expctl history | head``): stop quietly, as a Unix tool killed by SIGPIPE
    would (exit 141), with stdout pointed at /dev/null so that nothing complains when Python flushes it."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    sys.exit(141)


def say(line: str) -> None:
    """One line on stderr without credentials: a message may quote a tracking URI (``postgresql://u:pw@db``) or
    a server's answer, and neither a URI's password nor MLflow's token from the environment is ever printed
    (nor a secret query value of ``MLFLOW_TRACKING_URI``, wherever a message quotes it). A message quotes values
    (a run name, a ``--rev``, a file's key): its control characters are escaped, so a value cannot forge a
    second ``error:`` line or send terminal escapes."""
    from expctl.core.sanitize import one_line

    click.echo(one_line(_hidden(line)), err=True)


def _print_traceback(exc: BaseException) -> None:
    """``EXPCTL_DEBUG=1``'s traceback, without credentials as ``say``: the exceptions it chains are the
    libraries' own (MLflow's quote the request URL with its user information)."""
    click.echo(_hidden("".join(traceback.format_exception(exc))).rstrip("\n"), err=True)


def _excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    """An exception no command handles (a bug) still prints its traceback, without credentials."""
    _print_traceback(exc)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """A Python warning (Hydra's, a library's) as one ``warning:`` line, like expctl's own: not two lines of
    source location and code."""
    text = " ".join(str(message).split())
    say(f"warning: {text}")


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = _COMMANDS.get(cmd_name)
        if entry is None:
            return None
        if ctx.resilient_parsing or "--help" in sys.argv[1:2]:
            return click.Command(cmd_name, help=entry[2], short_help=entry[2])
        command = getattr(importlib.import_module(entry[0]), entry[1])
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, entry[2]) for name, entry in _COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Like click's, but a usage error is one line too (``error: ...``, exit 2), like every other error."""
        base: Any = super().main
        if not kwargs.pop("standalone_mode", True):
            return base(*args, standalone_mode=False, **kwargs)
        sys.excepthook = _excepthook
        try:
            code = base(*args, standalone_mode=False, **kwargs)
        except BrokenPipeError:
            _pipe_closed()
        except click.ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # plain `expctl`: the help, as click prints it
                exc.show()
                sys.exit(exc.exit_code)
            where = f" (see '{exc.ctx.command_path} --help')" if isinstance(exc, click.UsageError) and exc.ctx \
                else ""
            message = " ".join(exc.format_message().split())
            say(f"error: {message}{where}")
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        try:
            sys.stdout.flush()  # what is still buffered meets a closed pipe here, not at the interpreter's exit
        except BrokenPipeError:
            _pipe_closed()
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        from expctl.core.errors import ConfigErrors, ExpctlError

        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # `expctl history | head`: the reader has what it wanted
            _pipe_closed()
        except ExpctlError as exc:
            if os.environ.get("EXPCTL_DEBUG"):
                _print_traceback(exc)
            for error in exc.errors if isinstance(exc, ConfigErrors) else [exc]:  # one line each
                say(f"error: {error.render()}")
            ctx.exit(exc.exit_code)
        except OSError as exc:  # a read-only or full disk, a permission: one line naming the file
            if os.environ.get("EXPCTL_DEBUG"):
                _print_traceback(exc)
            where = f"{exc.filename}: " if exc.filename else ""
            say(f"error: {where}{exc.strerror or exc}")
            ctx.exit(1)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-C", "--repo", "repo", type=click.Path(file_okay=False), default=None,
              help="Repository to work in (default: the git repository of the current directory).")
@click.version_option(package_name="expctl")
@click.pass_context
def main(ctx: click.Context, repo: str | None) -> None:
    """expctl — Hydra experiment configs in git as the desired state of your training runs.

    Plan and apply them as local processes, Kubeflow training jobs or Slurm batch jobs, tracked in MLflow.
    """
    ctx.ensure_object(dict)
    ctx.obj.setdefault("repo", repo)
    warnings.showwarning = _show_warning
    plain_reads = sys.modules.get("expctl.tracking.mlflow.sqlite_search")
    if plain_reads is not None:  # each command says again whether it only reads (in-process callers: tests)
        plain_reads.reads_only(False)
