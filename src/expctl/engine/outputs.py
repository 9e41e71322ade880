"""Datasets runs produced (``outputs:``): the apply that sees a producer's run succeed records what its job wrote.

Once per observation, before the plan resolves its consumers: for every live run that succeeded, whose
experiment declares ``outputs: {dataset: NAME}`` and whose tracked record has no digest yet, what the job wrote
becomes a manifest (``data.produced``), kept with the files on the run (``RecordsOutputs``). Where the files
are depends on the backend, not on this module: in the attempt's output directory (``ProducesOutputs``: local,
or a file system expctl shares with the jobs), or already on the run, stored by the job itself
(``UploadsOutputs``: Kubernetes), then downloaded into a temporary directory and hashed here, so the digest
always says what consumers will read. Idempotent: the digest is written last, so a crash before it leaves the
run to the next apply. A failure is a warning: the consumers wait.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence

from expctl.backends.base import Backend, ProducesOutputs, UploadsOutputs
from expctl.core.errors import ExpctlError
from expctl.core.inputs import output_uri
from expctl.core.model import ObservedRun, Phase, RunSpec
from expctl.data.produced import manifest_of
from expctl.data.scan import DataError
from expctl.tracking.base import RecordsOutputs, Tracker

log = logging.getLogger(__name__)


def record_outputs(backend: Backend, tracker: Tracker, desired: Sequence[RunSpec], live: Sequence[ObservedRun],
                   remembered: Sequence[ObservedRun]) -> list[str]:
    """Record the outputs of the succeeded runs that produce a dataset and have none recorded; the names of
    the runs recorded (none: nothing to do, or the backend or tracker cannot)."""
    if not isinstance(backend, ProducesOutputs | UploadsOutputs) or not isinstance(tracker, RecordsOutputs):
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
        try:
            if not _record(backend, tracker, run.name, run.mlflow_run_id, dataset):
                continue
        except (DataError, ExpctlError) as exc:
            log.warning("could not record the dataset %s that %s produced (the next apply tries again): %s",
                        dataset, run.name, exc)
            continue
        done.append(run.name)
    return done


def _record(backend: Backend, tracker: RecordsOutputs, name: str, run_id: str, dataset: str) -> bool:
    """Record one run's dataset from where its backend put the files; False: they are nowhere here."""
    directory = backend.output_dir(name) if isinstance(backend, ProducesOutputs) else None
    if directory is not None:
        manifest = manifest_of(dataset, directory)
        tracker.record_output(run_id, dataset, directory, manifest.text(), manifest.digest)
        return True
    if not isinstance(backend, UploadsOutputs) or not backend.uploads_outputs(name):
        return False
    with tempfile.TemporaryDirectory(prefix="expctl-outputs-") as scratch:
        stored = tracker.fetch_output(run_id, dataset, scratch)
        manifest = manifest_of(dataset, stored, location=output_uri(run_id, dataset))
    tracker.record_output(run_id, dataset, None, manifest.text(), manifest.digest)
    return True
