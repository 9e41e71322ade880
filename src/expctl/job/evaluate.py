"""expctl's default evaluator: the validation job the platform runs after a training run succeeded.

Run as ``python -m expctl.tracking.mlflow_evaluate`` (the default ``validation.command``; that module is a stable
shim to this one). It loads the model the
training run (``EXPCTL_VALIDATES_RUN_ID``) logged — with ``mlflow.pytorch`` (a classifier returning logits) or
``mlflow.sklearn`` (``predict``) — reads exactly the held-out split (``EXPCTL_VALIDATION_SPLIT``) of the
training run's dataset manifest, which training never saw, and logs ``accuracy`` (and ``loss`` for PyTorch)
and ``samples`` to its own run (``MLFLOW_RUN_ID``), which the gate reads, and as ``validation.<name>`` to the
training run. Class ``i`` is the i-th label of the dataset in sorted order. Exits non-zero on any failure, so
the validation job is retried by the experiment's retry policy.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
import traceback
from typing import Any

from expctl.core.errors import ExpctlError
from expctl.core.model import VALIDATION_PREFIX
from expctl.job.reader import Examples, ManifestMismatch, label_names, load_manifest_file, read_split


def load_manifest(client: Any) -> dict[str, Any]:
    """The manifest handed over: this machine's copy, else the run's artifact downloaded (read bounded either way:
    a FIFO, a device or a huge file is one line, not a hang)."""
    path = os.environ.get("EXPCTL_DATASET_MANIFEST")
    if path and os.path.exists(path):
        return load_manifest_file(path)
    uri = os.environ.get("EXPCTL_DATASET_MANIFEST_URI")
    if not uri:
        raise SystemExit("expctl evaluator: no dataset manifest (EXPCTL_DATASET_MANIFEST[_URI] is not set)")
    import mlflow.artifacts

    with tempfile.TemporaryDirectory(prefix="expctl-manifest-") as tmp:
        return load_manifest_file(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))


def model_uri(client: Any, run_id: str) -> tuple[str, dict[str, Any]]:
    """The training run's logged model (``model`` if several) and its flavors."""
    import mlflow.models

    run = client.get_run(run_id)
    models = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    if not models:
        raise SystemExit(f"expctl evaluator: training run {run_id} logged no model")
    model = max(models, key=lambda m: (m.name == "model", m.creation_timestamp))
    uri = f"models:/{model.model_id}"
    return uri, dict(mlflow.models.get_model_info(uri).flavors)


def evaluate(uri: str, flavors: dict[str, Any], examples: Examples, classes: list[str]) -> dict[str, float]:
    index = {name: i for i, name in enumerate(classes)}
    truth = [index[label] for label in examples.labels]
    if "pytorch" in flavors:
        import mlflow.pytorch
        import torch

        net = mlflow.pytorch.load_model(uri, map_location="cpu")
        if not isinstance(net, torch.nn.Module) and hasattr(net, "module"):
            net = net.module()
        try:
            net.eval()
        except NotImplementedError:  # a torch.export program's module (MLflow's export of a logged model)
            pass
        with torch.no_grad():
            logits = net(torch.tensor(examples.features, dtype=torch.float32))
            target = torch.tensor(truth)
            loss = float(torch.nn.functional.cross_entropy(logits, target).item())
            accuracy = float((logits.argmax(dim=1) == target).float().mean().item())
        return {"accuracy": accuracy, "loss": loss}
    if "sklearn" in flavors:
        import mlflow.sklearn

        predicted = mlflow.sklearn.load_model(uri).predict(examples.features)
        hits = sum(1 for p, t, label in zip(predicted, truth, examples.labels, strict=True)
                   if str(p) == label or (not isinstance(p, str) and int(p) == t))
        return {"accuracy": hits / len(truth)}
    raise SystemExit(f"expctl evaluator: no default evaluation for flavors {sorted(flavors)} "
                     "(pytorch and sklearn are supported; set validation.command)")


def main() -> int:
    try:
        from mlflow import MlflowClient
        from mlflow.entities import Metric

        target = os.environ["EXPCTL_VALIDATES_RUN_ID"]
        split = os.environ.get("EXPCTL_VALIDATION_SPLIT", "test")
        client = MlflowClient()
        manifest = load_manifest(client)
        examples = read_split(manifest, split)
        if not examples.labels:
            raise SystemExit(f"expctl evaluator: the {split!r} split of {manifest['dataset']} is empty")
        uri, flavors = model_uri(client, target)
        metrics = evaluate(uri, flavors, examples, label_names(manifest))
        metrics["samples"] = float(len(examples.labels))
        print(f"validated {target} on {len(examples.labels)} {split} items: "
              + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())), flush=True)
        if any(math.isnan(v) for v in metrics.values()):
            raise SystemExit("expctl evaluator: a metric is NaN")
        now = int(time.time() * 1000)
        own = os.environ.get("MLFLOW_RUN_ID")
        if own:
            client.log_batch(own, metrics=[Metric(k, v, now, 0) for k, v in sorted(metrics.items())])
        client.log_batch(target, metrics=[Metric(VALIDATION_PREFIX + k, v, now, 0) for k, v in sorted(metrics.items())])
    except SystemExit as exc:
        print(exc, file=sys.stderr, flush=True)
        return 1
    except (ExpctlError, ManifestMismatch) as exc:  # a file refused (a FIFO, too big) or changed: one line
        print(f"expctl evaluator: {exc}", file=sys.stderr, flush=True)
        return 1
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
