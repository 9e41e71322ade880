"""What expctl remembers of one Slurm job, in ``<workdir>/runs/<name>/record.json``: identity, job id, how it
ended, whether it was cancelled. Slurm forgets a job ``MinJobAge`` after it ends; this record does not.
``record_from_json`` refuses a damaged, foreign or hand-edited file (``backends.slurm`` skips it with a warning).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from expctl.backends.job_record import IDENTITY_TYPES, JobIdentity


@dataclass
class JobRecord(JobIdentity):
    """What expctl remembers of one Slurm job (persisted as JSON; survives Slurm forgetting the job): its
    identity (``backends.job_record``), its job id and how it ended."""

    job_id: int | None = None
    phase: str | None = None  # set once the job has ended: final
    failure: str | None = None
    message: str = ""
    finished_at: float | None = None
    cancelled: bool = False
    cancelled_by: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def record_from_json(data: Any) -> JobRecord:
    """A parsed ``record.json``; ValueError when it is not one (damaged, foreign or hand-edited)."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    for key, kind in IDENTITY_TYPES.items():
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise ValueError(f"{key}: missing or of the wrong type")
    if not isinstance(data.get("job_id"), (int, type(None))) or isinstance(data.get("job_id"), bool):
        raise ValueError("job_id: of the wrong type")
    try:
        return JobRecord(**data)
    except TypeError as exc:  # unknown fields
        raise ValueError(str(exc).replace("__init__() ", "")) from None
