"""Train a small MLP classifier on seeded synthetic data, logging to the MLflow run expctl handed over.

Run as ``python -m training.train``. Reads the resolved config from ``EXPCTL_CONFIG`` (JSON, Kubernetes),
``EXPCTL_CONFIG_FILE`` (a JSON file, local) or, failing that, the ``expctl/config.json`` artifact that older
expctl versions uploaded to ``MLFLOW_RUN_ID``. With ``WORLD_SIZE > 1`` it trains with
``torch.distributed`` (gloo, ``MASTER_ADDR``/``MASTER_PORT``/``RANK``) and DistributedDataParallel.
Rank 0 logs the metrics per epoch (train_loss all-reduced over the ranks, val_loss, val_accuracy), the model as
``model`` and system metrics; every rank logs ``rank_<r>_train_samples`` into the same run.
``trainer.fail_first_attempts: N`` makes attempts <= N (``EXPCTL_ATTEMPT``) fail on purpose. Exits non-zero
on any failure.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

import mlflow
import mlflow.pytorch
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "model": {"hidden": 32, "layers": 2, "dropout": 0.0},
    "optimizer": {"lr": 0.01, "weight_decay": 0.0},
    "trainer": {"epochs": 5, "batch_size": 64, "fail_first_attempts": 0},
    "dataset": {"n_samples": 2000, "n_features": 16, "n_classes": 4, "noise": 1.0, "val_fraction": 0.2},
}


def load_config() -> dict[str, Any]:
    inline = os.environ.get("EXPCTL_CONFIG")  # Kubernetes: the composed config is in the job's env
    if inline:
        config: dict[str, Any] = json.loads(inline)
        return config
    path = os.environ.get("EXPCTL_CONFIG_FILE")
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            loaded: dict[str, Any] = json.load(fh)
        return loaded
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if run_id:
        text = mlflow.artifacts.load_text(f"runs:/{run_id}/expctl/config.json")
        from_run: dict[str, Any] = json.loads(text)
        return from_run
    return {}


def setting(config: dict[str, Any], dotted: str) -> Any:
    """``config["a"]["b"]`` for ``"a.b"``, falling back to DEFAULTS."""
    for source in (config, DEFAULTS):
        node: Any = source
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            return node
    raise KeyError(dotted)


def make_data(config: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian blobs around seeded class centres: deterministic for a given seed."""
    gen = torch.Generator().manual_seed(int(setting(config, "seed")))
    n = int(setting(config, "dataset.n_samples"))
    features, classes = int(setting(config, "dataset.n_features")), int(setting(config, "dataset.n_classes"))
    centres = torch.randn(classes, features, generator=gen) * 0.5
    labels = torch.randint(0, classes, (n,), generator=gen)
    noise = float(setting(config, "dataset.noise"))
    points = centres[labels] + torch.randn(n, features, generator=gen) * noise
    return points, labels


def make_model(config: dict[str, Any]) -> nn.Module:
    hidden, layers = int(setting(config, "model.hidden")), int(setting(config, "model.layers"))
    width = int(setting(config, "dataset.n_features"))
    blocks: list[nn.Module] = []
    for _ in range(max(1, layers)):
        blocks += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(float(setting(config, "model.dropout")))]
        width = hidden
    blocks.append(nn.Linear(width, int(setting(config, "dataset.n_classes"))))
    return nn.Sequential(*blocks)


def evaluate(model: nn.Module, points: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(points)
        loss = nn.functional.cross_entropy(logits, labels).item()
        accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
    model.train()
    return loss, accuracy


def start_tracking(rank: int) -> Any:
    """Rank 0 resumes the MLflow run it was handed (system metrics on); other ranks do not log."""
    if rank != 0 or not os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    os.environ.setdefault("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")
    os.environ.setdefault("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    mlflow.enable_system_metrics_logging()
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if run_id:
        return mlflow.start_run(run_id=run_id)
    mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "training"))
    return mlflow.start_run()


def log_rank_share(rank: int, samples: int) -> None:
    """Each rank records its shard in the run expctl handed over: all ranks of a job log to one MLflow run."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if run_id and os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.MlflowClient().log_metric(run_id, f"rank_{rank}_train_samples", samples)


def train(config: dict[str, Any]) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    attempt = int(os.environ.get("EXPCTL_ATTEMPT", "1"))
    if attempt <= int(setting(config, "trainer.fail_first_attempts")):
        raise RuntimeError(f"failing attempt {attempt} on purpose (trainer.fail_first_attempts)")
    if world > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(int(setting(config, "seed")))
    points, labels = make_data(config)
    n_val = max(1, int(len(points) * float(setting(config, "dataset.val_fraction"))))
    val_x, val_y, train_x, train_y = points[:n_val], labels[:n_val], points[n_val:], labels[n_val:]
    shard_x, shard_y = train_x[rank::world], train_y[rank::world]  # each rank trains on its own shard
    net = make_model(config)
    model: nn.Module = DistributedDataParallel(net) if world > 1 else net
    optimizer = torch.optim.Adam(model.parameters(), lr=float(setting(config, "optimizer.lr")),
                                 weight_decay=float(setting(config, "optimizer.weight_decay")))
    batch, epochs = int(setting(config, "trainer.batch_size")), int(setting(config, "trainer.epochs"))
    gen = torch.Generator().manual_seed(int(setting(config, "seed")) + rank)
    print(f"rank {rank}/{world}: {len(shard_x)} training samples, {n_val} validation samples", flush=True)
    run = start_tracking(rank)
    try:
        for epoch in range(epochs):
            order = torch.randperm(len(shard_x), generator=gen)
            total, count = torch.zeros(2), 0
            for start in range(0, len(order), batch):
                idx = order[start : start + batch]
                loss = nn.functional.cross_entropy(model(shard_x[idx]), shard_y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total[0] += loss.item() * len(idx)
                count += len(idx)
            total[1] = count
            if world > 1:
                dist.all_reduce(total)
            train_loss = (total[0] / total[1]).item()
            val_loss, val_accuracy = evaluate(net, val_x, val_y)
            if run is not None:
                mlflow.log_metrics({"train_loss": train_loss, "val_loss": val_loss,
                                    "val_accuracy": val_accuracy}, step=epoch)
            if rank == 0:
                print(f"epoch {epoch}: train_loss={train_loss:.4f} val_loss={val_loss:.4f} "
                      f"val_accuracy={val_accuracy:.4f}", flush=True)
        log_rank_share(rank, len(shard_x))  # every rank, into the one run (before rank 0 ends it)
        if world > 1:
            dist.barrier()
        if run is not None:
            net.eval()
            mlflow.pytorch.log_model(net, name="model", input_example=val_x[:4].numpy(),
                                     pip_requirements=[f"torch=={torch.__version__}"])
            mlflow.end_run("FINISHED")
    except BaseException:
        if run is not None:
            mlflow.end_run("FAILED")
        raise
    finally:
        if world > 1:
            dist.destroy_process_group()


def main() -> int:
    try:
        train(load_config())
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
