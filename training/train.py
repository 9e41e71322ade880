"""Train a small MLP classifier on seeded synthetic data, logging to the MLflow run expctl handed over.

Run as ``python -m training.train``. Reads the resolved config from ``EXPCTL_CONFIG`` (JSON, Kubernetes),
``EXPCTL_CONFIG_FILE`` (a JSON file, local) or, failing that, the ``expctl/config.json`` artifact that older
expctl versions uploaded to ``MLFLOW_RUN_ID``. With ``WORLD_SIZE > 1`` it trains with
``torch.distributed`` (gloo, ``MASTER_ADDR``/``MASTER_PORT``/``RANK``) and DistributedDataParallel.
Rank 0 logs the metrics per epoch (train_loss all-reduced over the ranks, val_loss, val_accuracy), the model as
``model`` and system metrics; every rank logs ``rank_<r>_train_samples`` into the same run.
``trainer.fail_first_attempts: N`` makes attempts <= N (``EXPCTL_ATTEMPT``) fail on purpose. Exits non-zero
on any failure.

Data: when expctl hands over a dataset (``EXPCTL_DATASET_MANIFEST`` — a local copy — or
``EXPCTL_DATASET_MANIFEST_URI`` in MLflow), it trains on exactly the manifest's ``train`` items and reports
``val_*`` on its ``validation`` items (the ``test`` split is held out for the platform's validation job);
otherwise it generates seeded Gaussian blobs from ``dataset.*``.

Pipelines: with ``EXPCTL_INPUT_BASE_URI`` (an experiment's ``expctl.inputs.base``, e.g. ``models:/NAME/VERSION``)
it starts from that model's weights (the same ``model.*``) and continues training it.

Checkpoints: after every ``trainer.checkpoint_every`` epochs rank 0 saves model, optimizer and epoch — into
``EXPCTL_CHECKPOINT_DIR`` when expctl hands one (the experiment declared ``checkpoints.dir``), else as the
artifact ``checkpoints/epoch-NNNN.pt`` of its MLflow run — and tags its run ``expctl.checkpoint`` (URI) and
``expctl.checkpoint_epoch``. With ``EXPCTL_RESUME_FROM`` (a ``runs:/`` or other artifact URI, a checkpoint file,
or a directory of them) it resumes after the checkpoint's epoch; every epoch draws from seeds of its own, so a
resumed run ends exactly like an uninterrupted one. ``trainer.sigkill_after_epoch: K`` makes the first
``trainer.sigkill_attempts`` attempts SIGKILL themselves after epoch K's checkpoint (an injected
infrastructure failure, for tests and demos).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pytorch
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from training import gpu_metrics

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "model": {"hidden": 32, "layers": 2, "dropout": 0.0},
    "optimizer": {"lr": 0.01, "weight_decay": 0.0},
    "trainer": {"epochs": 5, "batch_size": 64, "fail_first_attempts": 0, "checkpoint_every": 1,
                "sigkill_after_epoch": None, "sigkill_attempts": 1},
    "dataset": {"n_samples": 2000, "n_features": 16, "n_classes": 4, "noise": 1.0, "val_fraction": 0.2},
}


def load_config() -> dict[str, Any]:
    inline = os.environ.get("EXPCTL_CONFIG")  # Kubernetes: the composed config is in the job's env
    if inline:
        config: dict[str, Any] = json.loads(inline)
        return config
    path = os.environ.get("EXPCTL_CONFIG_FILE")
    if path and os.path.exists(path):
        from expctl.data.reader import load_manifest_file

        return load_manifest_file(path)  # bounded: a FIFO or a huge file is one line, not a hang
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


def load_manifest() -> dict[str, Any] | None:
    """The manifest expctl handed over (a local copy first, else the run's artifact in MLflow), or None."""
    path = os.environ.get("EXPCTL_DATASET_MANIFEST")
    if path and os.path.exists(path):
        from expctl.data.reader import load_manifest_file

        return load_manifest_file(path)  # bounded: a FIFO or a huge file is one line, not a hang
    uri = os.environ.get("EXPCTL_DATASET_MANIFEST_URI")
    if uri:
        from_run: dict[str, Any] = json.loads(mlflow.artifacts.load_text(uri))
        return from_run
    return None


def manifest_tensors(manifest: dict[str, Any], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Exactly the manifest's items of ``split`` (content hashes checked) as features and class indices."""
    from expctl.data.reader import label_names, read_split

    classes = {name: i for i, name in enumerate(label_names(manifest))}
    examples = read_split(manifest, split)
    if not examples.labels:
        raise RuntimeError(f"the manifest of {manifest['dataset']} has no {split!r} items")
    points = torch.tensor(examples.features, dtype=torch.float32)
    return points.reshape(len(examples.labels), -1), torch.tensor([classes[x] for x in examples.labels])


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


def make_model(config: dict[str, Any], features: int, classes: int) -> nn.Module:
    hidden, layers = int(setting(config, "model.hidden")), int(setting(config, "model.layers"))
    width = features
    blocks: list[nn.Module] = []
    for _ in range(max(1, layers)):
        blocks += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(float(setting(config, "model.dropout")))]
        width = hidden
    blocks.append(nn.Linear(width, classes))
    return nn.Sequential(*blocks)


def load_base(net: nn.Module) -> None:
    """Start from the weights of the model a pipeline hands over as the input ``base`` (``EXPCTL_INPUT_BASE_URI``,
    e.g. the pretrain champion ``models:/blobs-pretrained/3``; the same ``model.*``), if any."""
    uri = os.environ.get("EXPCTL_INPUT_BASE_URI")
    if uri:
        net.load_state_dict(mlflow.pytorch.load_model(uri, map_location="cpu").state_dict())
        print(f"continuing to train {uri}", flush=True)


def evaluate(model: nn.Module, points: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(points)
        loss = nn.functional.cross_entropy(logits, labels).item()
        accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
    model.train()
    return loss, accuracy


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """Each (rank, epoch) shuffles with a seed of its own: a resumed run draws what an uninterrupted one would."""
    return (seed * 1_000 + rank) * 1_000_003 + epoch


def find_checkpoint(source: str) -> Path | None:
    """The checkpoint file ``EXPCTL_RESUME_FROM`` names: an artifact URI (downloaded), a file, or the latest
    ``epoch-*.pt`` of a directory (None: the previous attempt died before its first checkpoint)."""
    if "://" in source or source.startswith("runs:/"):
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tempfile.mkdtemp()))
    path = Path(source)
    if path.is_dir():
        found = sorted(path.glob("epoch-*.pt"))
        return found[-1] if found else None
    return path if path.exists() else None


def save_checkpoint(state: dict[str, Any], epoch: int, run: Any) -> None:
    """Rank 0: the checkpoint of ``epoch`` on shared storage or as an MLflow artifact, and its URI as tags."""
    name = f"epoch-{epoch:04d}.pt"
    shared = os.environ.get("EXPCTL_CHECKPOINT_DIR")
    if shared:
        target = Path(shared) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, target.with_suffix(".tmp"))
        os.replace(target.with_suffix(".tmp"), target)  # a reader sees the whole file or none
        uri = str(target)
    elif run is not None:
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(state, Path(tmp) / name)
            mlflow.log_artifact(str(Path(tmp) / name), artifact_path="checkpoints")
        uri = f"runs:/{run.info.run_id}/checkpoints/{name}"
    else:
        return
    if run is not None:
        mlflow.set_tags({"expctl.checkpoint": uri, "expctl.checkpoint_epoch": str(epoch)})


def start_tracking(rank: int) -> Any:
    """Rank 0 resumes the MLflow run it was handed (system metrics on); other ranks do not log."""
    if rank != 0 or not os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    os.environ.setdefault("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")
    os.environ.setdefault("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    gpu_metrics.restrict()  # GPU metrics of this job's own GPUs, not every GPU of the host
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
    manifest = load_manifest()
    if manifest is not None:
        from expctl.data.reader import label_names

        train_x, train_y = manifest_tensors(manifest, "train")
        val_x, val_y = manifest_tensors(manifest, "validation")
        features, classes = train_x.shape[1], len(label_names(manifest))
    else:
        points, labels = make_data(config)
        n_val = max(1, int(len(points) * float(setting(config, "dataset.val_fraction"))))
        val_x, val_y, train_x, train_y = points[:n_val], labels[:n_val], points[n_val:], labels[n_val:]
        features, classes = int(setting(config, "dataset.n_features")), int(setting(config, "dataset.n_classes"))
    n_val = len(val_x)
    shard_x, shard_y = train_x[rank::world], train_y[rank::world]  # each rank trains on its own shard
    net = make_model(config, features, classes)
    load_base(net)
    model: nn.Module = DistributedDataParallel(net) if world > 1 else net
    optimizer = torch.optim.Adam(model.parameters(), lr=float(setting(config, "optimizer.lr")),
                                 weight_decay=float(setting(config, "optimizer.weight_decay")))
    batch, epochs = int(setting(config, "trainer.batch_size")), int(setting(config, "trainer.epochs"))
    seed = int(setting(config, "seed"))
    print(f"rank {rank}/{world}: {len(shard_x)} training samples, {n_val} validation samples", flush=True)
    first = 0
    resume_from = os.environ.get("EXPCTL_RESUME_FROM")
    checkpoint = find_checkpoint(resume_from) if resume_from else None
    if checkpoint is not None:
        state = torch.load(checkpoint, weights_only=True)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        first = int(state["epoch"]) + 1
        print(f"rank {rank}: resuming after epoch {first - 1} from {resume_from}", flush=True)
    elif resume_from:
        print(f"rank {rank}: no checkpoint in {resume_from}; starting from scratch", flush=True)
    every = int(setting(config, "trainer.checkpoint_every"))
    kill_after = setting(config, "trainer.sigkill_after_epoch")
    kill = kill_after is not None and attempt <= int(setting(config, "trainer.sigkill_attempts"))
    run = start_tracking(rank)
    try:
        for epoch in range(first, epochs):
            torch.manual_seed(epoch_seed(seed, rank, epoch))  # dropout
            gen = torch.Generator().manual_seed(epoch_seed(seed, rank, epoch))
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
                if every > 0 and ((epoch + 1) % every == 0 or epoch == epochs - 1):
                    save_checkpoint({"epoch": epoch, "model": net.state_dict(),
                                     "optimizer": optimizer.state_dict()}, epoch, run)
            if kill and epoch == int(kill_after):
                print(f"rank {rank}: SIGKILL after epoch {epoch} (trainer.sigkill_after_epoch)", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
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
