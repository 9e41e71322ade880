"""Logs kept in MLflow: the tail of each replica's log, stored as artifacts of the run when it finishes.

Artifacts ``expctl/logs/<replica>.log`` (each capped by ``engine.logs.tail``) and the tag ``expctl.logs``
(``kept``, or ``unavailable: <why>`` when the backend had no logs left to read), so each run is stored once.
The functions take an ``MlflowClient`` (``load_local``: the embedded store's artifact directory, read without
MLflow); ``KeptLogs`` puts the capability on ``MlflowStore``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from expctl.core import bounded
from expctl.core.errors import TrackingError
from expctl.tracking.mlflow import tags as g
from expctl.tracking.mlflow.session import MlflowSession
from expctl.tracking.mlflow.sqlite_search import Unsupported

LOGS_DIR = "expctl/logs"
TAG = g.LOGS
DEFAULT_TAIL_BYTES = 1_000_000
KEPT_LOG_LIMIT = 256 << 20  # a downloaded artifact is read whole: bounded, as any file expctl did not write


def store(client: Any, run_id: str, logs: Mapping[str, str]) -> None:
    """Each replica's (already capped) log as ``expctl/logs/<replica>.log`` (the ``kept`` tag comes after)."""
    for replica, text in sorted(logs.items()):
        client.log_text(run_id, text, f"{LOGS_DIR}/{replica}.log")


def load(client: Any, run_id: str) -> dict[str, str] | None:
    """``{replica: text}`` of the kept logs of ``run_id``, or None when none were kept."""
    entries = [a for a in client.list_artifacts(run_id, LOGS_DIR) if not a.is_dir and a.path.endswith(".log")]
    if not entries:
        return None
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for entry in entries:
            local = client.download_artifacts(run_id, entry.path, tmp)
            out[Path(entry.path).name[: -len(".log")]] = bounded.read_text(local, KEPT_LOG_LIMIT, "a kept log",
                                                                              errors="replace")
    return out


def load_local(artifacts: Path) -> dict[str, str] | None:
    """``load`` from a run's artifact directory on this machine (the embedded store's): the files
    ``client.list_artifacts`` lists and ``download_artifacts`` copies, read in place (no MLflow import)."""
    try:
        entries = sorted(p for p in (artifacts / LOGS_DIR).iterdir() if p.name.endswith(".log") and not p.is_dir())
        if not entries:
            return None
        return {p.name[: -len(".log")]: bounded.read_text(p, KEPT_LOG_LIMIT, "a kept log", errors="replace")
                for p in entries}
    except (FileNotFoundError, NotADirectoryError):  # none were kept (as list_artifacts: nothing there)
        return None
    except OSError as exc:
        raise TrackingError(f"{artifacts / LOGS_DIR}: cannot read the kept logs: {exc.strerror or exc}") from exc


class KeptLogs(MlflowSession):
    """The store's side of ``tracking.base.LogStore``: it uses the tags its last view saw (``seen_tags``), so
    checking which finished runs still need their logs kept is free."""

    log_tail_bytes: int = DEFAULT_TAIL_BYTES

    def logs_kept(self, run_id: str) -> bool:
        """Whether the run's logs were stored (or found unavailable) already."""
        tags = self.seen_tags.get(run_id)
        if tags is None:
            with self.calling(f"read run {run_id}"):
                tags = dict(self.client.get_run(run_id).data.tags)
        return TAG in tags

    def keep_logs(self, run_id: str, logs: dict[str, str] | None, why_not: str = "") -> None:
        """Store ``logs`` (None: record why there were none to keep)."""
        self.touch(run_id)
        if logs is not None:
            with self.calling(f"keep the logs of run {run_id}"):
                store(self.client, run_id, logs)
        value = "kept" if logs is not None else f"unavailable: {why_not}"[:500]
        self.set_run_tags(run_id, {TAG: value})  # takes a settled run back into the search too
        self.seen_tags.setdefault(run_id, {})[TAG] = value

    def kept_logs(self, run_id: str) -> dict[str, str] | None:
        """The run's kept logs: read in place from the embedded store's artifact directory when the store's
        file says where it is (``sqlite_search``), else through MLflow's client."""
        if self.local is not None:
            try:
                artifacts = self.local.artifact_dir(run_id)
            except Unsupported:
                artifacts = None
            if artifacts is not None:
                return load_local(artifacts)
        with self.calling(f"read the kept logs of run {run_id}"):
            return load(self.client, run_id)
