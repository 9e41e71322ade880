"""``expctl ui``'s server: the MLflow UI as a child process, a browser opened once it answers, a clean stop.

The child gets Ctrl-C with expctl (same process group); on SIGTERM expctl stops it before exiting, so no
server outlives the command.
"""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from types import FrameType

READY_SECONDS = 120.0
STOP_SECONDS = 15.0


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def serve(command: list[str], env: dict[str, str], url: str,
          on_ready: Callable[[], object] | None = None) -> int:
    """Run the server until it exits or expctl is interrupted; call ``on_ready`` once ``url`` answers."""
    proc = subprocess.Popen(command, env=env)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        if on_ready is not None:
            deadline = time.monotonic() + READY_SECONDS
            while proc.poll() is None and time.monotonic() < deadline and not _answers(url):
                time.sleep(0.3)
            if proc.poll() is None and _answers(url):
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
