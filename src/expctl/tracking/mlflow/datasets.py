"""The datasets of a run in MLflow: each manifest as an artifact and as an MLflow dataset input (``mlflow.data``).

Called while a run is recorded, before its job starts: the job finds its manifest at
``runs:/<run id>/expctl/datasets/<name>.json`` (``EXPCTL_DATASET_MANIFEST_URI``) on every backend, and the MLflow
UI shows the dataset (name, digest, batches, split sizes) in the run's inputs. ``log_produced`` does the same for
the datasets another experiment's run produced that a run consumes (``inputs: {x: {dataset: NAME}}``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from expctl.core import bounded
from expctl.core.errors import TrackingError
from expctl.core.inputs import DATASET
from expctl.core.model import DATASET_ARTIFACT_DIR, RunSpec

SOURCE_TYPE = "expctl-manifest"
DIGEST_LIMIT = 36  # MLflow's maximum length of a dataset digest


def log_datasets(client: Any, run_id: str, spec: RunSpec) -> None:
    """Log every dataset of ``spec`` into the run: the manifest artifact and one dataset input each."""
    if not spec.datasets:
        return
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = []
    for ref in spec.datasets:
        path = Path(ref.manifest_file) if ref.manifest_file else None
        if path is None or not path.is_file():
            raise TrackingError(f"the manifest of dataset {ref.name!r} ({ref.digest}) is missing here: "
                                "run `expctl plan` again to rebuild it")
        text = bounded.read_text(path, 1 << 30, "a dataset manifest")
        client.log_text(run_id, text, f"{DATASET_ARTIFACT_DIR}/{ref.name}.json")
        profile = {"batches": [{"name": n, "digest": d, "items": c} for n, d, c in ref.batches],
                   "splits": dict(ref.splits), "digest": ref.digest}
        dataset = Dataset(name=ref.name, digest=ref.digest[:DIGEST_LIMIT], source_type=SOURCE_TYPE,
                          source=json.dumps({"artifact": f"{DATASET_ARTIFACT_DIR}/{ref.name}.json"}),
                          profile=json.dumps(profile, sort_keys=True))
        context = "evaluation" if spec.validates else "training"
        inputs.append(DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)]))
    _log_inputs(client, run_id, inputs)


def log_produced(client: Any, run_id: str, spec: RunSpec) -> None:
    """The produced datasets a run consumes, as MLflow dataset inputs (the UI lists them in the run's inputs)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = []
    for r in spec.inputs:
        if r.kind != DATASET:
            continue
        profile = {"digest": r.digest, "producer": r.producer, "run_id": r.run_id}
        dataset = Dataset(name=r.source, digest=r.digest[:DIGEST_LIMIT], source_type=SOURCE_TYPE,
                          source=json.dumps({"uri": r.uri, "manifest": f"{r.uri}.json"}),
                          profile=json.dumps(profile, sort_keys=True))
        inputs.append(DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")]))
    if inputs:
        _log_inputs(client, run_id, inputs)


def _log_inputs(client: Any, run_id: str, inputs: list[Any], attempts: int = 4) -> None:
    """MLflow gets-or-creates the dataset row per experiment without a lock: two runs of one sweep recording
    the same dataset at once collide on its unique key. The loser tries again and finds the row."""
    for attempt in range(1, attempts + 1):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except Exception as exc:
            if attempt == attempts or ("UNIQUE" not in str(exc).upper() and "ALREADY_EXISTS" not in str(exc)):
                raise
            time.sleep(0.2 * attempt)
