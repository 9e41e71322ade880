"""Crash trials: the real ``expctl`` command line in a forked process, SIGKILLed at a seeded random crash point.

Forking a process that has already imported expctl, Hydra and MLflow makes each trial cost milliseconds of
start-up instead of seconds, so that dozens of seeded trials stay cheap. The child runs ``expctl.cli.main``
in the repository with the given environment (``EXPCTL_TEST_CRASH_SEED`` picks the point, see
``expctl.crash``); its stdout and stderr go to files; the parent gets the exit status (``-9`` when killed).
"""

from __future__ import annotations

import os
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    @property
    def crashed(self) -> bool:
        return self.returncode == -signal.SIGKILL


def forked_cli(repo: Path, args: list[str], env: dict[str, str | None], timeout: float = 300) -> Outcome:
    import expctl.cli  # imported before forking: the child starts warm

    with tempfile.TemporaryDirectory(prefix="expctl-fork-") as tmp:
        out_path, err_path = Path(tmp) / "out", Path(tmp) / "err"
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 70
            try:
                os.chdir(repo)
                for key, value in env.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
                out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(out, 1)
                os.dup2(err, 2)
                import sys

                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
                try:
                    expctl.cli.main(args=args, prog_name="expctl")
                    code = 0
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
            finally:
                os._exit(code)
        import time

        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise TimeoutError(f"expctl {' '.join(args)} did not end in {timeout}s")
            time.sleep(0.02)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        return Outcome(code, out_path.read_text(), err_path.read_text())
