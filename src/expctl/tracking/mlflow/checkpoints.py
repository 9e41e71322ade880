"""Checkpoints in MLflow: which checkpoint an attempt left, and what a new attempt resumed from.

The training code records its latest checkpoint on its own run as tags (a convention, see docs/tracking.md):
``expctl.checkpoint`` (a URI such as ``runs:/<id>/checkpoints/epoch-0003.pt``, or a path on shared storage)
and ``expctl.checkpoint_epoch``. expctl tags a resumed attempt's run with ``expctl.resumed_from.*``; an
attempt that died before its first checkpoint hands on the checkpoint it resumed from itself. The tags are
read and written by ``tags`` (the codec); ``Checkpoints`` puts the capability on ``MlflowStore``.
"""

from __future__ import annotations

from expctl.core.model import Checkpoint, ResumeFrom
from expctl.tracking.mlflow import tags as g
from expctl.tracking.mlflow.session import MlflowSession


class Checkpoints(MlflowSession):
    """The store's side of ``tracking.base.CheckpointRecords``: one ``get_run`` to read, one tag batch to record."""

    def checkpoint_of(self, run_id: str) -> Checkpoint | None:
        """The latest checkpoint of the run ``run_id``: its own, else the one it resumed from."""
        with self.calling(f"read run {run_id}"):
            return g.checkpoint_in(dict(self.client.get_run(run_id).data.tags))

    def record_resume(self, run_id: str, resume: ResumeFrom) -> None:
        self.set_run_tags(run_id, g.resume_tags(resume))
