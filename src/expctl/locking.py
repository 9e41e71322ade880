"""The local apply lock: one ``expctl apply`` at a time per repository (a file lock under .expctl/)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from expctl.errors import LockError


@contextlib.contextmanager
def file_lock(path: Path, timeout: float) -> Iterator[None]:
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=timeout)
    except Timeout as exc:
        raise LockError(f"another expctl apply holds {path.name} (waited {timeout:g}s; see --lock-timeout)"
                        ) from exc
    try:
        yield
    finally:
        lock.release()
