"""Datasets runs produced (``outputs:``) in MLflow: on the producer's run, its files, its manifest and two tags.

``record_output`` keeps what a succeeded job wrote into its output directory as the run's artifacts
(``expctl/outputs/<NAME>/``: the URI a consumer gets), the manifest beside them (``expctl/outputs/<NAME>.json``)
and, last, the tags ``expctl.output.dataset`` and ``expctl.output.digest``: a record cut short by a crash has no
digest, so the next apply records it again (the same artifact paths, written over). A consumer's run records the
dataset as an MLflow dataset input (``datasets.log_produced``), as the datasets of ``data:`` are. A job that
stored its files on its run itself (Kubernetes: ``backends/kubernetes/upload_outputs.py``) has them read back
(``fetch_output``), so that expctl hashes what consumers will read; only the manifest and the tags are written.
"""

from __future__ import annotations

import os

from expctl.core.inputs import OUTPUT_ARTIFACT_DIR
from expctl.tracking.mlflow.session import MlflowSession
from expctl.tracking.mlflow.tags import OUTPUT_DATASET, OUTPUT_DIGEST


def record_output(session: MlflowSession, run_id: str, dataset: str, directory: str | None, manifest: str,
                  digest: str) -> None:
    """The files under ``directory`` (None: on the run already) and their ``manifest`` as the run's artifacts,
    then its digest tags."""
    with session.calling(f"record the dataset {dataset} of run {run_id}"):
        if directory is not None and os.path.isdir(directory) and any(True for _ in os.scandir(directory)):
            session.client.log_artifacts(run_id, directory, f"{OUTPUT_ARTIFACT_DIR}/{dataset}")
        session.client.log_text(run_id, manifest, f"{OUTPUT_ARTIFACT_DIR}/{dataset}.json")
    session.set_run_tags(run_id, {OUTPUT_DATASET: dataset, OUTPUT_DIGEST: digest})


def fetch_output(session: MlflowSession, run_id: str, dataset: str, into: str) -> str:
    """The files the run's job stored as ``dataset``, downloaded under ``into``: the directory holding them (it
    does not exist when the job stored none)."""
    path = f"{OUTPUT_ARTIFACT_DIR}/{dataset}"
    with session.calling(f"read the dataset {dataset} of run {run_id}"):
        if not session.client.list_artifacts(run_id, path):
            return os.path.join(into, path)
        return str(session.client.download_artifacts(run_id, path, into))
