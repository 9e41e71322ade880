"""Datasets runs produced (``outputs:``): the apply that sees a producer's run succeed records what its job wrote.

Once per observation, before the plan resolves its consumers: for every live run that succeeded, whose
experiment declares ``outputs: {dataset: NAME}`` and whose tracked record has no digest yet, the backend's output
directory of that attempt (``ProducesOutputs``: local, or a file system expctl shares with the jobs) becomes a
manifest (``data.produced``), kept with the files on the run (``RecordsOutputs``). Idempotent: the digest is
written last, so a crash before it leaves the run to the next apply. A failure is a warning: the consumers wait.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from expctl.backends.base import Backend, ProducesOutputs
from expctl.core.errors import ExpctlError
from expctl.core.model import ObservedRun, Phase, RunSpec
from expctl.data.produced import manifest_of
from expctl.data.scan import DataError
from expctl.tracking.base import RecordsOutputs, Tracker

log = logging.getLogger(__name__)


def record_outputs(backend: Backend, tracker: Tracker, desired: Sequence[RunSpec], live: Sequence[ObservedRun],
                   remembered: Sequence[ObservedRun]) -> list[str]:
    """Record the outputs of the succeeded runs that produce a dataset and have none recorded; the names of
    the runs recorded (none: nothing to do, or the backend or tracker cannot)."""
    if not isinstance(backend, ProducesOutputs) or not isinstance(tracker, RecordsOutputs):
        return []
    produces = {(s.run_key, s.spec_hash): s.job.outputs for s in desired if s.job.outputs and not s.validates}
    if not produces:
        return []
    recorded = {r.mlflow_run_id for r in remembered if r.output_digest and r.mlflow_run_id}
    done: list[str] = []
    for run in live:
        dataset = produces.get((run.run_key, run.spec_hash))
        if (dataset is None or run.phase is not Phase.SUCCEEDED or run.cancelled or not run.mlflow_run_id
                or run.mlflow_run_id in recorded or run.output_digest):
            continue
        directory = backend.output_dir(run.name)
        if directory is None:
            continue
        try:
            manifest = manifest_of(dataset, directory)
            tracker.record_output(run.mlflow_run_id, dataset, directory, manifest.text(), manifest.digest)
        except (DataError, ExpctlError) as exc:
            log.warning("could not record the dataset %s that %s produced (the next apply tries again): %s",
                        dataset, run.name, exc)
            continue
        done.append(run.name)
    return done
