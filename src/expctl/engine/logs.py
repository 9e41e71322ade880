"""A run's logs outlive its job: kept in the tracker when the run finishes, read from there once it is gone.

``keep_finished`` runs after every sync (apply, ``apply --wait``): for each finished run whose logs the tracker
does not hold yet, it reads the tail of each replica's log from the backend (capped at the tracker's
``log_tail_bytes``, ``expctl.yaml``: ``logs.tail_bytes``) and stores it — once; when the backend has nothing
left to read (pods already gone), it records why instead. ``live_or_kept`` is what ``expctl logs`` reads: the
backend's live logs while they exist, else the kept ones, and says which.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain

from expctl.backends.base import Backend, ReplicaNames
from expctl.core.errors import ExpctlError
from expctl.core.model import ObservedRun
from expctl.tracking.base import LogStore, Tracker

log = logging.getLogger(__name__)

_KEEPERS = 4  # runs whose logs are read and stored at once
COMBINED = "all"  # the artifact name when a backend cannot name its replicas: every line, as logs() gives them


def tail(lines: Iterable[str], max_bytes: int) -> str:
    """Pure: the last whole lines that fit in ``max_bytes`` (UTF-8), led by a note of what was cut (counted)."""
    kept: deque[str] = deque()
    size = cut = 0

    def note() -> str:
        return f"[expctl: {cut} earlier bytes not kept (tail of {max_bytes} bytes)]\n" if cut else ""

    for line in lines:
        text = line if line.endswith("\n") else line + "\n"
        kept.append(text)
        size += len(text.encode())
        while kept and size + len(note().encode()) > max_bytes:
            dropped = len(kept.popleft().encode())
            size, cut = size - dropped, cut + dropped
    return note() + "".join(kept)


def read_tails(backend: Backend, name: str, max_bytes: int) -> dict[str, str]:
    """``{replica: tail}`` of a run's logs (one combined tail when the backend cannot name replicas). A backend
    that names replicas and has none for the run has nothing left to read: said at once (ExpctlError), with
    no further request (a sweep that just finished on Kubernetes: thousands of jobs whose pods are gone)."""
    if not isinstance(backend, ReplicaNames):
        return {COMBINED: tail(backend.logs(name), max_bytes)}
    names = backend.replicas(name)
    if not names:
        raise ExpctlError(f"run {name} has no replica with logs left (its pods or log files are gone)")
    return {replica: tail(backend.logs(name, replica=replica), max_bytes) for replica in names}


def keep_finished(backend: Backend, tracker: Tracker, observed: Sequence[ObservedRun]) -> list[str]:
    """Store the logs of every finished live run that has none kept yet (a few at once: a sweep that just
    finished has thousands); the names of the runs kept."""
    if not isinstance(tracker, LogStore):
        return []
    store = tracker

    def keep(run: ObservedRun) -> str | None:
        assert run.mlflow_run_id is not None
        try:  # keeping logs is a courtesy: it never fails the apply (the next sync tries again)
            if store.logs_kept(run.mlflow_run_id):
                return None
            try:
                logs = read_tails(backend, run.name, store.log_tail_bytes)
            except ExpctlError as exc:
                store.keep_logs(run.mlflow_run_id, None, why_not=str(exc))
                return None
            store.keep_logs(run.mlflow_run_id, logs)
        except ExpctlError as exc:
            log.warning("could not keep the logs of %s: %s", run.name, exc)
            return None
        return run.name

    finished = [run for run in observed if run.live and run.phase.finished and run.mlflow_run_id]
    with ThreadPoolExecutor(max_workers=_KEEPERS) as pool:
        return [name for name in pool.map(keep, finished) if name is not None]


def live_or_kept(backend: Backend, tracker: Callable[[], Tracker], name: str, replica: str | None,
                 follow: bool) -> tuple[str, Iterator[str]]:
    """Where the lines come from (for the user), and the lines: live from the backend while it has them, else
    from the logs the tracker kept (``tracker`` is opened only then)."""
    try:
        lines = iter(backend.logs(name, replica=replica, follow=follow))
        first = next(lines, None)  # a backend may say "no such run / no pods" only when first read
    except ExpctlError as exc:
        found = _kept(tracker(), name)
        if found is None:
            raise
        run_id, logs = found
        return f"from MLflow artifacts of run {run_id} (the job's own logs are gone: {exc})", \
            _lines(logs, name, replica)
    return f"live from the {backend.name} backend", chain(() if first is None else (first,), lines)


def _kept(tracker: Tracker, name: str) -> tuple[str, dict[str, str]] | None:
    if not isinstance(tracker, LogStore):
        return None
    runs = sorted((r for r in tracker.records() if r.name == name and r.mlflow_run_id),
                  key=lambda r: r.created_at or 0.0)
    if not runs or runs[-1].mlflow_run_id is None:
        return None
    logs = tracker.kept_logs(runs[-1].mlflow_run_id)
    return None if logs is None else (runs[-1].mlflow_run_id, logs)


def _lines(logs: dict[str, str], name: str, replica: str | None) -> Iterator[str]:
    if replica is not None:
        if replica not in logs:
            raise ExpctlError(f"{name}: no kept logs of replica {replica!r} (kept: {', '.join(sorted(logs))})")
        logs = {replica: logs[replica]}
    prefix = len(logs) > 1
    for replica_name, text in sorted(logs.items()):
        for line in text.splitlines():
            yield f"[{replica_name}] {line}" if prefix else line
