"""The apply lock: one ``expctl apply`` at a time per repository (a file lock under .expctl/) or per cluster
(a Lease, ``backends.kubernetes.lease``). The engine calls ``check()`` before every write."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from expctl.core import bounded, lock_wait
from expctl.core.errors import BackendError, ExpctlError, LockError
from expctl.core.lock_wait import holder


class ApplyLock(Protocol):
    def check(self) -> None:
        """Raise LockError when the lock is no longer held (lost, expired, taken over)."""
        ...


def scope_of(lock: object) -> str:
    """What an apply lock serialises, as a short name (``""``: unknown): applies under different locks (two
    projects, two namespaces) share a tracking server but not each other's jobs."""
    scope = getattr(lock, "scope", "")
    return scope if isinstance(scope, str) else ""


def _file_scope(path: Path) -> str:
    """The scope of the file lock ``path`` (held): random, kept next to it (``<name>.scope``), so that it
    follows the directory wherever it is moved or mounted."""
    where = path.with_suffix(".scope")
    try:
        text = bounded.read_text(where, 64, "a lock scope").strip()
    except (OSError, ExpctlError):
        text = ""
    if re.fullmatch(r"[0-9a-f]{16}", text):
        return text
    text = secrets.token_hex(8)
    try:
        temp = where.with_name(f"{where.name}.{os.getpid()}.tmp")
        temp.write_text(text + "\n")
        os.replace(temp, where)
    except OSError:
        return ""  # a read-only directory: unknown scope (as an older expctl's)
    return text


class HeldFileLock:
    """A held file lock: held until released (the OS drops it only with the process)."""

    def __init__(self, lock: Any, path: Path) -> None:
        self._lock, self.path = lock, path
        self.scope = _file_scope(path)

    def check(self) -> None:
        if not self._lock.is_locked:
            raise LockError(f"lost the apply lock {self.path.name} while applying")


@contextlib.contextmanager
def file_lock(path: Path, timeout: float) -> Iterator[HeldFileLock]:
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), thread_local=False)  # checked from the apply pool's threads
    try:  # a wait is announced (who holds it), as every lock wait is
        lock_wait.acquire(lock, str(path), path.parent, "apply", timeout, Timeout, stacklevel=5)
    except Timeout as exc:
        raise LockError(f"another expctl apply holds {path.name}: {holder(str(path))} (waited {timeout:g}s; "
                        "see --lock-timeout)") from exc
    try:
        yield HeldFileLock(lock, path)
    finally:
        lock.release()


@contextlib.contextmanager
def state_lock(lock: Any, where: Path, what: str) -> Iterator[None]:
    """Hold a backend's state lock (a ``filelock.FileLock``) for the ``with`` block; a timeout or an OS error
    (read-only or missing directory) is one ``BackendError`` line naming ``where``. Waiting for another process
    (``status`` while an apply writes) is said in one warning line naming the holder, not done in silence."""
    from filelock import Timeout

    try:
        lock_wait.acquire(lock, lock.lock_file, where, what, None, Timeout, stacklevel=4)
    except Timeout as exc:
        raise BackendError(f"{where}: another expctl holds the {what} lock ({holder(lock.lock_file)})") from exc
    except OSError as exc:
        raise BackendError(f"{where}: cannot lock the {what} state: {exc.strerror or exc}") from exc
    try:
        yield
    finally:
        lock.release()
