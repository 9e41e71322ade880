"""``expctl ui``'s server: the MLflow UI as a child process, a browser opened once it answers, a clean stop.

The port is checked before anything is printed (``port_taken``: another program's answers are not expctl's
UI); a child that exits before answering is one error line naming its exit code and its last log line. The
child's log is kept out of the terminal (``EXPCTL_DEBUG=1`` shows it). The child gets Ctrl-C with expctl (same
process group); on SIGTERM expctl stops it before exiting, so no server outlives the command.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from types import FrameType
from typing import IO

from expctl.core.errors import ExpctlError
from expctl.core.sanitize import one_line

READY_SECONDS = 120.0
STOP_SECONDS = 15.0


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """Whether another program listens on ``host:port`` (a bind as the server's own would fail)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server: TIME_WAIT is no owner
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _last_line(log: IO[bytes]) -> str:
    """The last error line the server logged, else its last line (a few KiB read at most)."""
    try:
        size = log.seek(0, os.SEEK_END)
        log.seek(max(0, size - 4096))
        lines = [ln for ln in log.read().decode(errors="replace").splitlines() if ln.strip()]
    except (OSError, ValueError):
        return ""
    errors = [ln for ln in lines if "Error" in ln or "error:" in ln.lower()]  # the cause, not a pointer to docs
    return one_line((errors or lines)[-1], 200) if lines else ""


def serve(command: list[str], env: dict[str, str], url: str,
          on_ready: Callable[[], object] | None = None) -> int:
    """Run the server until it exits or expctl is interrupted; call ``on_ready`` once ``url`` answers. A server
    that exits before it answers is an ``ExpctlError``."""
    debug = bool(os.environ.get("EXPCTL_DEBUG"))
    with tempfile.TemporaryFile() as log:
        out = None if debug else log
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=out)

        def stop(signum: int, frame: FrameType | None) -> None:
            raise SystemExit(128 + signum)

        previous = signal.signal(signal.SIGTERM, stop)
        try:
            deadline = time.monotonic() + READY_SECONDS
            while proc.poll() is None and time.monotonic() < deadline and not _answers(url):
                time.sleep(0.3)
            if proc.poll() is not None:
                last = _last_line(log)
                raise ExpctlError(f"the MLflow UI server exited (code {proc.returncode}) before answering on "
                                  f"{url}{': ' + last if last else ''}")
            if on_ready is not None and _answers(url):
                on_ready()
            return proc.wait()
        except KeyboardInterrupt:
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
