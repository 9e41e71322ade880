"""The tracker seam: remember runs (read in one go), find-or-create a run before its job starts, follow job
phases, and keep the audit trail (one record per apply)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from expctl.core.audit import AuditRecord
from expctl.core.errors import TrackingError
from expctl.core.model import ObservedRun, RunSpec, TrackingRef


class TrackerUnavailable(TrackingError):
    """The tracking store cannot be reached at all (connection refused, timed out): stop launching."""


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

    def begin_audit(self, record: AuditRecord) -> AuditRecord:
        """Store the intent of an apply (before its first write); returns it with its ``record_id``."""
        ...

    def complete_audit(self, record: AuditRecord) -> None:
        """Store the results of an apply begun with ``begin_audit`` (the record is no longer open)."""
        ...

    def record_audit(self, entry: dict[str, Any]) -> None:
        """Append one completed single-change entry (an operator's cancel) to the audit trail."""
        ...

    def audit_entries(self, experiment: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The applied changes of the audit trail, newest first."""
        ...


@runtime_checkable
class Settles(Protocol):
    """A tracker that takes runs nothing will change any more out of its view's search (MlflowStore does:
    ``tracking/mlflow_ledger``), so that a plan's cost follows the open runs, not every run ever launched."""

    def settle(self, observed: Sequence[ObservedRun], desired: Sequence[RunSpec], view: TrackerView,
               stop: Callable[[], bool] = ...) -> int:
        """Settle what ``view`` shows settled (written under the apply lock, after the apply's writes)."""
        ...
