"""The tracker's lookup table of one apply, built from the one search of every managed run.

``ensure_run`` finds a run by (run key, spec hash, attempt) and a sweep's parent by (experiment, commit) here
instead of searching MLflow once per run; runs it creates are added, under a lock, so that the threads of one
apply never create the same run twice. Duck-typed on MLflow's ``Run`` objects: no MLflow import.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Identity = tuple[str, str, str]  # (run key, spec hash, attempt)


@dataclass(frozen=True)
class KnownRun:
    run_id: str
    ready: bool  # params logged (tag expctl.ready=true)


@dataclass
class RunIndex:
    runs: dict[Identity, KnownRun] = field(default_factory=dict)
    parents: dict[tuple[str, str], str] = field(default_factory=dict)  # (experiment, commit) -> run id
    raw: list[Any] = field(default_factory=list)  # the searched runs themselves (for sync)
    lock: threading.RLock = field(default_factory=threading.RLock)

    @classmethod
    def of(cls, runs: Iterable[Any]) -> RunIndex:
        """Index searched runs; when a race of old left duplicates, the oldest run of an identity wins."""
        index = cls()
        for run in sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id)):
            index.raw.append(run)
            tags = run.data.tags
            if tags.get("expctl.parent") == "true":
                index.parents.setdefault((tags.get("expctl.experiment", ""), tags.get("expctl.commit", "")),
                                         run.info.run_id)
                continue
            identity = (tags.get("expctl.run_key"), tags.get("expctl.spec_hash"), tags.get("expctl.attempt"))
            if all(identity):
                index.runs.setdefault(identity,
                                      KnownRun(run.info.run_id, tags.get("expctl.ready") == "true"))
        return index
