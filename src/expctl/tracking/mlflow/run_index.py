"""The tracker's lookup table of one apply, built from the one search of every managed run.

``ensure_run`` finds a run by (run key, spec hash, attempt) and a sweep's parent by (experiment, commit) here
instead of searching MLflow once per run; runs it creates are added, under a lock, so that the threads of one
apply never create the same run twice. Two runs of one identity (a create whose answer was lost and was sent
again by an older expctl or by MLflow's own retries) resolve to one; the other is a duplicate.
Duck-typed on MLflow's ``Run`` objects: no MLflow import.
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
    duplicates: dict[str, str] = field(default_factory=dict)  # run id of a duplicate -> the run id that won
    lock: threading.RLock = field(default_factory=threading.RLock)

    @classmethod
    def of(cls, runs: Iterable[Any]) -> RunIndex:
        """Index searched runs. When a lost answer or a race of old left two runs of one identity, the one whose
        params were recorded (``expctl.ready``: the one its job was started with) wins, then the oldest; the
        others are ``duplicates`` (not in ``raw``: nothing observes them), which ``sync`` closes."""
        index, sources = cls(), dict[str, str]()  # winner's run id -> its source
        ordered = sorted(runs, key=lambda r: (r.data.tags.get("expctl.ready") != "true",
                                              r.info.start_time or 0, r.info.run_id))
        for run in ordered:
            tags = run.data.tags
            if tags.get("expctl.parent") == "true":  # children name their parent: a parent is never closed
                index.parents.setdefault((tags.get("expctl.experiment", ""), tags.get("expctl.commit", "")),
                                         run.info.run_id)
                index.raw.append(run)
                continue
            identity = (tags.get("expctl.run_key"), tags.get("expctl.spec_hash"), tags.get("expctl.attempt"))
            if not all(identity):
                index.raw.append(run)
                continue
            known = index.runs.setdefault(identity, KnownRun(run.info.run_id, tags.get("expctl.ready") == "true"))
            winner = sources.setdefault(known.run_id, tags.get("mlflow.source.name", ""))
            # a duplicate is closed only when it surely never had a job: no params recorded, same source
            if known.run_id != run.info.run_id and known.ready and tags.get("expctl.ready") != "true" and \
                    tags.get("mlflow.source.name", "") == winner:
                index.duplicates[run.info.run_id] = known.run_id
            else:
                index.raw.append(run)
        index.raw.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id))
        return index
