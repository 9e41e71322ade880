"""``expctl`` run in-process (click's runner) in a repository, as a user would type it there."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from expctl.cli import main


def run_cli(repo: Path, *args: str, env: dict[str, str | None]) -> tuple[int, str]:
    """``expctl ARGS`` in ``repo`` with ``env`` (``$EXPCTL_BACKEND`` unset): its exit code, stdout + stderr."""
    old = os.getcwd()
    os.chdir(repo)
    try:
        result = CliRunner().invoke(main, list(args), env={"EXPCTL_BACKEND": None, **env})
    finally:
        os.chdir(old)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout + result.stderr
