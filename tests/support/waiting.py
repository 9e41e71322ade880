"""Waiting for state outside the test (a scheduler, a server) to become true: poll, with a generous deadline
that only turns a hang into a failure (never a timed assertion)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(what: str, check: Callable[[], bool], timeout: float = 120.0, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)
