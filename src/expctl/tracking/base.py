"""The tracker seam: remember runs (read in one go), find-or-create a run before its job starts, follow job
phases, and keep the audit trail (one record per apply).

``Tracker`` is what every tracker does. A tracker may also have optional capabilities, each a Protocol here
(callers probe them with ``isinstance``; a tracker without one simply goes without the feature):

* ``Settles``: it takes runs nothing will change any more out of its view's search (plans cost the open runs);
* ``LogStore``: it keeps finished runs' logs, read once their jobs are gone (``engine/logs``);
* ``CheckpointRecords``: it knows attempts' checkpoints, so a retry resumes (``engine/resume``);
* ``ReportsResults``: it reads runs' metrics, histories and champions back (``engine/report``);
* ``ResolvesModels`` and ``RecordsOutputs``: pipelines' model inputs, and the datasets runs produce.

``MlflowStore`` has all four. ``tests/contract/tracker_suite.py`` is what a tracker must pass.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from expctl.core.audit import AuditRecord
from expctl.core.errors import TrackingError
from expctl.core.inputs import InputDecl, ModelVersion
from expctl.core.model import Checkpoint, ObservedRun, ResumeFrom, RunSpec, TrackingRef
from expctl.core.report import Reference, TrackedRun


class TrackerUnavailable(TrackingError):
    """The tracking store cannot be reached at all (connection refused, timed out): stop launching."""


class TrackerBusy(TrackerUnavailable):
    """The tracking server rate-limits expctl (HTTP 429/503 with a ``Retry-After`` beyond what expctl waits):
    stop launching, and say so (it is not down)."""


@dataclass
class TrackerView:
    """Everything the tracker knows, read once per apply: every managed run (``records``, live=False; runs
    whose job was never created included) and the audit records of applies that were killed before they
    completed them. ``index`` is the tracker's own lookup table; ``ensure_run`` reuses and extends it, so that
    an apply needs no per-run search."""

    records: list[ObservedRun]
    open_audits: list[AuditRecord] = field(default_factory=list)
    index: Any = None


class Tracker(Protocol):
    def check(self) -> None:
        """Raise TrackingError with a one-line message when the store cannot be used."""
        ...

    def view(self) -> TrackerView:
        """Read every managed run and every open audit record: one paginated search."""
        ...

    def records(self) -> list[ObservedRun]:
        """What the store remembers of every run (live=False): joined with the backend's objects."""
        ...

    def ensure_run(self, spec: RunSpec, attempt: int, applied_by: str,
                   view: TrackerView | None = None) -> TrackingRef:
        """The run tagged (run key, spec hash, attempt), created if ``view`` has none; never two. Without a
        view it searches (safe against a concurrent expctl that holds no lock)."""
        ...

    def sync(self, observed: Sequence[ObservedRun], desired: Sequence[RunSpec],
             view: TrackerView | None = None) -> None:
        """Follow job phases into run status; apply the validation gate to newly succeeded runs."""
        ...

    def mark_killed(self, run_id: str, by: str = "") -> None:
        """A cancelled run: status KILLED, tagged as cancelled."""
        ...

    def fail_launch(self, run_id: str, reason: str) -> None:
        """A run whose job could not be launched (it would stay RUNNING with no job): status FAILED, tagged
        ``expctl.launch_failed`` with ``reason`` as an infrastructure failure (retried by policy)."""
        ...

    def begin_audit(self, record: AuditRecord) -> AuditRecord:
        """Store the intent of an apply (before its first write); returns it with its ``record_id``."""
        ...

    def complete_audit(self, record: AuditRecord) -> None:
        """Store the results of an apply begun with ``begin_audit`` (the record is no longer open)."""
        ...

    def record_audit(self, entry: dict[str, Any]) -> None:
        """Append one completed single-change entry (an operator's cancel) to the audit trail."""
        ...

    def audit_entries(self, experiment: str | None = None, limit: int = 50,
                      team: str | None = None) -> list[dict[str, Any]]:
        """The applied changes of the audit trail (of one experiment, or of one team's runs), newest first."""
        ...


@runtime_checkable
class Settles(Protocol):
    """A tracker that takes runs nothing will change any more out of its view's search (MlflowStore does:
    ``tracking/mlflow/ledger``), so that a plan's cost follows the open runs, not every run ever launched."""

    def settle(self, observed: Sequence[ObservedRun], desired: Sequence[RunSpec], view: TrackerView,
               stop: Callable[[], bool] = ...) -> int:
        """Settle what ``view`` shows settled (written under the apply lock, after the apply's writes)."""
        ...


@runtime_checkable
class ResolvesModels(Protocol):
    """A tracker with a model registry: which version a model input names now (``core.pipeline`` resolves the
    inputs of a plan with it; a tracker without one leaves model inputs waiting)."""

    def model_version(self, decl: InputDecl) -> ModelVersion | None:
        """The version ``decl`` names (by alias or number) and its run's spec hash; None when none does yet."""
        ...


@runtime_checkable
class RecordsOutputs(Protocol):
    """A tracker that keeps the datasets runs produced (``outputs:``): the files and their manifest on the
    producer's run, and its digest in its record (``ObservedRun.output_digest``: what consumers resolve)."""

    def record_output(self, run_id: str, dataset: str, directory: str | None, manifest: str, digest: str) -> None:
        """Keep ``directory``'s files (None: the job stored them on the run already) and ``manifest`` (its
        text) as the run's dataset; idempotent."""
        ...

    def fetch_output(self, run_id: str, dataset: str, into: str) -> str:
        """Download the files a job stored on its run as ``dataset`` under ``into``: the directory holding
        them (it may not exist: the job stored none)."""
        ...


@runtime_checkable
class LogStore(Protocol):
    """A tracker that keeps logs (MlflowStore does, in ``tracking/mlflow/logs``): the tail of each replica's log
    of a finished run, at most ``log_tail_bytes`` each."""

    log_tail_bytes: int

    def logs_kept(self, run_id: str) -> bool:
        """Whether the run's logs were kept (or found unavailable) already."""
        ...

    def keep_logs(self, run_id: str, logs: dict[str, str] | None, why_not: str = "") -> None:
        """Keep ``{replica: text}`` (None: record ``why_not`` there were none to keep)."""
        ...

    def kept_logs(self, run_id: str) -> dict[str, str] | None:
        """The kept logs of the run, or None when none were kept."""
        ...

    def records(self) -> list[ObservedRun]: ...


@runtime_checkable
class CheckpointRecords(Protocol):
    """A tracker that knows attempts' checkpoints (MlflowStore does; a tracker without it never resumes)."""

    def checkpoint_of(self, run_id: str) -> Checkpoint | None:
        """The latest checkpoint the attempt logged (or the one it resumed from), if any."""
        ...

    def record_resume(self, run_id: str, resume: ResumeFrom) -> None:
        """Tag the new attempt's run with what it resumed from (idempotent)."""
        ...


@runtime_checkable
class ReportsResults(Protocol):
    """A tracker that reads results back for ``expctl report`` (MlflowStore does: ``tracking/mlflow/results``)."""

    def experiment_runs(self, experiment: str) -> list[TrackedRun]:
        """Every run recorded for ``experiment`` (every commit, every attempt, sweep parents included)."""
        ...

    def metric_history(self, run_id: str, metric: str) -> list[tuple[int, float]]:
        """``(step, value)`` of one metric of one run, finite values, in step order."""
        ...

    def champion(self, model: str, alias: str, metric: str, mine: Collection[str] = ()) -> Reference | None:
        """The holder of ``model@alias`` and its value of ``metric`` (None: no holder); when the holder's run is
        one of ``mine`` (the commit's own runs), the version it took the alias from."""
        ...

    def promotion(self, model_version: str) -> str:
        """What promotion did with a registered version ``name/version``, in a few words."""
        ...

    def log_report_files(self, run_id: str, files: Sequence[Path], artifact_path: str = "expctl-report") -> None:
        """Log the report's files (plots) as artifacts of a run."""
        ...
