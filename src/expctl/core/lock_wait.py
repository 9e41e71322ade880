"""Every lock wait says what it waits for and who holds the lock, instead of waiting in silence.

A lock taken within ``QUIET_WAIT_SECONDS`` is not news; a longer wait is announced once, as one warning line
(``<where>: waiting up to N s for the <what> lock, held by pid P (since HH:MM:SS)``), and then waited for the
rest of its timeout. The holder notes itself next to the lock (``<lock file>.holder``: pid and since when) once
it has the lock. Pure: the lock is any object with ``acquire(timeout=...)`` that raises ``timeout_error``
(``filelock``'s ``Timeout`` in the backends and in the MLflow session), so this module imports no lock library.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

from expctl.core.bounded import read_text
from expctl.core.errors import ExpctlError

QUIET_WAIT_SECONDS = 0.5  # a lock taken within this is not news; longer, the wait is announced


def holder(lock_file: str) -> str:
    """Who holds a lock, as its holder noted it (``<lock file>.holder``: pid and since when)."""
    try:
        text = read_text(lock_file + ".holder", 200, "lock holder", errors="replace").split()
        pid, since = int(text[0]), float(text[1])
    except (OSError, ExpctlError, ValueError, IndexError):
        return "another expctl"
    return f"pid {pid} (since {time.strftime('%H:%M:%S', time.localtime(since))})"


def note_holder(lock_file: str) -> None:
    """Say, next to the lock just taken, that this process holds it (for whoever waits for it next)."""
    try:
        Path(lock_file + ".holder").write_text(f"{os.getpid()} {time.time():.0f}\n")
    except OSError:
        pass  # a read-only directory: the lock still works, a waiter just cannot say who holds it


def acquire(lock: Any, lock_file: str, where: object, what: str, timeout: float | None,
            timeout_error: type[BaseException], stacklevel: int = 3) -> None:
    """``lock.acquire`` for at most ``timeout`` seconds (None: the lock's own), announcing a wait longer than
    ``QUIET_WAIT_SECONDS`` in one warning line; the holder is noted once the lock is taken. Raises
    ``timeout_error`` when the wait runs out (the caller words it)."""
    limit = lock.timeout if timeout is None else timeout
    try:
        lock.acquire(timeout=min(QUIET_WAIT_SECONDS, limit) if limit >= 0 else QUIET_WAIT_SECONDS)
    except timeout_error:
        if 0 <= limit <= QUIET_WAIT_SECONDS:
            raise
        bound = f"up to {limit:g} s" if limit >= 0 else "with no time limit"
        warnings.warn(f"{where}: waiting {bound} for the {what} lock, held by {holder(lock_file)}",
                      stacklevel=stacklevel)
        lock.acquire(timeout=max(0.0, limit - QUIET_WAIT_SECONDS) if limit >= 0 else -1)
    if getattr(lock, "lock_counter", 1) == 1:
        note_holder(lock_file)
