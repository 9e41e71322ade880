"""Files the local and Slurm backends keep their jobs' state in: written atomically, read defensively.

``write_json`` / ``stage_json`` write JSON a reader sees whole or not at all; ``read_exit`` reads the record a
job's wrapper leaves when it ends; ``read_new_lines`` follows a log by offset; ``warn_once`` reports a damaged
file once per process. Shared here so that no backend imports another (``backends.local`` and
``backends.slurm`` are independent: the import-linter contract).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from expctl.core import bounded, safe_json
from expctl.core.errors import ExpctlError
from expctl.core.sanitize import one_line


def write_json(path: Path, data: Any, durable: bool = True) -> None:
    """Write ``data`` as JSON atomically: a reader sees the old file or the new one, never half of one (even
    if the writer is killed). ``durable``: on disk before returning (survives a power loss, costs a sync)."""
    os.replace(_written(path, data, durable), path)


def stage_json(path: Path, data: Any) -> Path:
    """The slow half of a durable ``write_json``, done before taking a lock: ``data`` written and synced to a
    temporary file beside ``path``; ``os.replace(staged, path)`` under the lock puts it in place."""
    return _written(path, data, durable=True)


def _written(path: Path, data: Any, durable: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


_warned: set[str] = set()


def warn_once(message: str) -> None:
    """One ``warning:`` line on stderr, once per process (observe runs many times while waiting)."""
    if message not in _warned:
        _warned.add(message)
        print(f"warning: {one_line(message)}", file=sys.stderr, flush=True)


def read_exit(path: Path) -> dict[str, Any] | None:
    """The wrapper's record of how a replica ended: ``{"returncode": int, "finished_at": float}``; None when
    there is none or it is damaged (then the replica counts as vanished if it no longer runs)."""
    try:
        data = safe_json.loads(bounded.read_text(path, 4096, "an exit record"))
    except (OSError, ValueError, ExpctlError):
        return None
    if not isinstance(data, dict) or type(data.get("returncode")) is not int or \
            not isinstance(data.get("finished_at"), (int, float)) or isinstance(data.get("finished_at"), bool):
        return None
    return data


def read_new_lines(path: Path, offset: int, final: bool) -> tuple[int, list[str]]:
    """Lines appended to ``path`` after ``offset`` (complete ones, or all if ``final``), and the new offset."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return offset, []
    end = len(data) if final else data.rfind(b"\n") + 1
    return offset + end, data[:end].decode("utf-8", errors="replace").splitlines()
