"""Cancels that are not yet in MLflow: a journal, so that a cancel is recorded exactly once whatever MLflow does.

``cancel`` stops a job first (durable: the backend remembers it), then marks its MLflow run KILLED and appends
the cancel to the audit trail. When MLflow fails in between (a 500, an outage), the job is stopped but MLflow
does not know yet: each cancel is written here first (``.expctl/pending-audit/<id>.json``, atomically), and
removed once MLflow has it. The next ``cancel`` or ``apply`` replays what is left (``replay``); replaying is
idempotent, because the audit record carries the journal entry's id (``expctl.audit.apply_id``), which is
searched before it is written. ``teams apply`` journals each of its writes the same way (an entry without an
MLflow run).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from expctl.core import audit as a
from expctl.core import safe_json
from expctl.core.errors import TrackingError
from expctl.tracking.base import Tracker

_MOST = 1 << 20  # bytes of one journal entry (a cancel is a few hundred)


def journal_dir(state_dir: Path) -> Path:
    return state_dir / "pending-audit"


def write(state_dir: Path, entry: dict[str, Any], mlflow_run_id: str | None, by: str) -> Path:
    """Journal one cancel before its job is stopped; its audit entry gets the journal's id (``apply``)."""
    folder = journal_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    entry = {**entry, "apply": entry.get("apply") or a.new_id()}
    item = {"entry": entry, "mlflow_run_id": mlflow_run_id or "", "by": by}
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(item, out, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    path = folder / f"{entry['apply']}.json"
    os.replace(tmp, path)
    return path


def record(tracker: Tracker, path: Path) -> None:
    """Tell MLflow about one journalled cancel (run KILLED, audit entry), then forget it. TrackingError: kept."""
    item = _read(path)
    if item is None:
        path.unlink(missing_ok=True)
        return
    if item["mlflow_run_id"]:
        tracker.mark_killed(item["mlflow_run_id"], by=item["by"])
    tracker.record_audit(item["entry"])
    path.unlink(missing_ok=True)


def replay(state_dir: Path, tracker: Tracker) -> list[str]:
    """Record every cancel left in the journal; the warnings of those MLflow still refuses (kept for next time)."""
    folder = journal_dir(state_dir)
    if not folder.is_dir():
        return []
    warnings: list[str] = []
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            record(tracker, path)
        except TrackingError as exc:
            warnings.append(f"a cancel is not yet recorded in MLflow (the next apply or cancel tries again): {exc}")
            break  # MLflow is failing: the others wait too
    return warnings


def _read(path: Path) -> dict[str, Any] | None:
    """One journal entry; None when it is damaged (a crash mid-write cannot leave one: ``os.replace``)."""
    try:
        if not path.is_file() or path.stat().st_size > _MOST:
            return None
        item = safe_json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(item, dict) or not isinstance(item.get("entry"), dict):
        return None
    return {"entry": item["entry"], "mlflow_run_id": str(item.get("mlflow_run_id") or ""),
            "by": str(item.get("by") or "")}
