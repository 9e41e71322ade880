"""Checkpoints in MLflow: which checkpoint an attempt left, and what a new attempt resumed from.

The training code records its latest checkpoint on its own run as tags (a convention, see docs/tracking.md):
``expctl.checkpoint`` (a URI such as ``runs:/<id>/checkpoints/epoch-0003.pt``, or a path on shared storage)
and ``expctl.checkpoint_epoch``. expctl tags a resumed attempt's run with ``expctl.resumed_from.*``; an
attempt that died before its first checkpoint hands on the checkpoint it resumed from itself.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from expctl.core.model import Checkpoint, ResumeFrom

CHECKPOINT = "expctl.checkpoint"
CHECKPOINT_EPOCH = "expctl.checkpoint_epoch"
RESUMED_FROM = "expctl.resumed_from"  # prefix: .uri .attempt .run_id .epoch


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def checkpoint_in(tags: dict[str, str]) -> Checkpoint | None:
    """Pure: the latest checkpoint a run's tags name — its own, else the one it resumed from."""
    if tags.get(CHECKPOINT):
        return Checkpoint(tags[CHECKPOINT], _int(tags.get(CHECKPOINT_EPOCH)))
    if tags.get(f"{RESUMED_FROM}.uri"):
        return Checkpoint(tags[f"{RESUMED_FROM}.uri"], _int(tags.get(f"{RESUMED_FROM}.epoch")))
    return None


def resume_tags(resume: ResumeFrom) -> dict[str, str]:
    tags = {f"{RESUMED_FROM}.uri": resume.uri, f"{RESUMED_FROM}.attempt": str(resume.attempt),
            f"{RESUMED_FROM}.run_id": resume.run_id}
    if resume.epoch is not None:
        tags[f"{RESUMED_FROM}.epoch"] = str(resume.epoch)
    return tags


def resumed_from(tags: dict[str, str]) -> ResumeFrom | None:
    """Pure: what a run's tags say it resumed from."""
    uri, attempt = tags.get(f"{RESUMED_FROM}.uri"), _int(tags.get(f"{RESUMED_FROM}.attempt"))
    if not uri or attempt is None:
        return None
    return ResumeFrom(uri, attempt, tags.get(f"{RESUMED_FROM}.run_id", ""), _int(tags.get(f"{RESUMED_FROM}.epoch")))


def checkpoint_of(client: Any, run_id: str) -> Checkpoint | None:
    """The latest checkpoint of the run ``run_id`` (one ``get_run``)."""
    return checkpoint_in(dict(client.get_run(run_id).data.tags))


class Checkpoints:
    """``MlflowStore``'s side of ``expctl.resume.CheckpointRecords`` (a mixin: it uses the store's client)."""

    client: Any
    _calling: Callable[[str], AbstractContextManager[None]]
    set_run_tags: Callable[[str, dict[str, str]], None]

    def checkpoint_of(self, run_id: str) -> Checkpoint | None:
        with self._calling(f"read run {run_id}"):
            return checkpoint_of(self.client, run_id)

    def record_resume(self, run_id: str, resume: ResumeFrom) -> None:
        self.set_run_tags(run_id, resume_tags(resume))
