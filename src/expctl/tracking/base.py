"""The tracker seam: find-or-create a run before its job starts, remember runs, follow job phases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from expctl.model import ObservedRun, RunSpec, TrackingRef


class Tracker(Protocol):
    def check(self) -> None:
        """Raise TrackingError with a one-line message when the store cannot be used."""
        ...

    def ensure_run(self, spec: RunSpec, attempt: int, applied_by: str) -> TrackingRef:
        """Find the run tagged (run key, spec hash, attempt) or create it; never two."""
        ...

    def records(self) -> list[ObservedRun]:
        """What the store remembers of every run (live=False): joined with the backend's objects."""
        ...

    def sync(self, observed: Sequence[ObservedRun], desired: Sequence[RunSpec]) -> None:
        """Follow job phases into run status; apply the validation gate to newly succeeded runs."""
        ...

    def mark_killed(self, run_id: str, by: str = "") -> None:
        """A cancelled run: status KILLED, tagged as cancelled."""
        ...

    def record_audit(self, entry: dict[str, Any]) -> None:
        """Append one entry (who, what, when, commit, plan fingerprint) to the durable audit trail."""
        ...

    def audit_entries(self, experiment: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The audit trail, newest first."""
        ...
