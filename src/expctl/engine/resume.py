"""Resume on retry: which checkpoint a retried attempt starts from, found before its job is created.

``resumes`` is the pure decision: a retry resumes from the attempt it replaces when that attempt failed for a
reason the experiment's ``checkpoints.resume_on`` lists (default: infrastructure only — a code failure starts
from scratch unless the experiment asks). ``resume_point`` asks the tracker for that attempt's latest checkpoint
(what it logged, or what it resumed from itself when it died before its first checkpoint), falls back to the
attempt's directory under the experiment's declared checkpoint ``dir``, and records on the new attempt's run
what it resumed from. Backends hand the result to the job as ``EXPCTL_RESUME_FROM`` (``jobenv.checkpoint_env``).
"""

from __future__ import annotations

from expctl.core.model import Action, Change, Checkpoint, FailureClass, ObservedRun, Phase, ResumeFrom
from expctl.tracking.base import CheckpointRecords, Tracker


def resumes(change: Change) -> ObservedRun | None:
    """Pure: the failed attempt a retry resumes from, or None (not a retry, or a failure not to resume)."""
    spec, previous = change.desired, change.observed
    if change.action is not Action.RETRY or spec is None or previous is None:
        return None
    if previous.phase is not Phase.FAILED or previous.spec_hash != spec.spec_hash:
        return None
    if previous.attempt != change.attempt - 1:
        return None
    failure = previous.failure or FailureClass.CODE
    return previous if failure in spec.job.checkpoints.resume_on else None


def choose(previous: ObservedRun, found: Checkpoint | None, checkpoint_dir: str | None) -> ResumeFrom | None:
    """Pure: the tracked checkpoint wins; else the previous attempt's directory on declared shared storage."""
    run_id = previous.mlflow_run_id or ""
    if found is not None:
        return ResumeFrom(found.uri, previous.attempt, run_id, found.epoch)
    if checkpoint_dir:
        return ResumeFrom(f"{checkpoint_dir.rstrip('/')}/{previous.name}", previous.attempt, run_id, None)
    return None


def resume_point(change: Change, tracker: Tracker, new_run_id: str) -> ResumeFrom | None:
    """The checkpoint a retry resumes from (None: start from scratch), recorded on the new run ``new_run_id``."""
    previous = resumes(change)
    if previous is None or change.desired is None:
        return None
    records = tracker if isinstance(tracker, CheckpointRecords) else None
    found = records.checkpoint_of(previous.mlflow_run_id) if records and previous.mlflow_run_id else None
    resume = choose(previous, found, change.desired.job.checkpoints.dir)
    if resume is not None and records is not None:
        records.record_resume(new_run_id, resume)
    return resume
