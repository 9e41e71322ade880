"""System metrics of the job's own GPUs: MLflow's GPU monitor restricted to ``CUDA_VISIBLE_DEVICES``.

MLflow samples GPUs through NVML (``pynvml``), which ignores ``CUDA_VISIBLE_DEVICES`` and sees every GPU of the
host. In a Kubernetes pod that is only the pod's GPUs, but on one shared machine (expctl's local backend, or a
Slurm node without device cgroups) it would chart the neighbours' GPUs as the run's own. ``restrict`` swaps in a
monitor that samples only the devices ``CUDA_VISIBLE_DEVICES`` names — by index (NVML's order, which is
nvidia-smi's and, with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` as expctl sets it, CUDA's) or by UUID — as
``gpu_0``, ``gpu_1``, … in the order the job sees them (``cuda:0`` is ``gpu_0``). ``nvml_indices`` is pure.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any


def nvml_indices(visible: str | None, count: int, uuids: Sequence[str]) -> list[int] | None:
    """The NVML indices of the devices a job may use (in its order), or None when it may use all of them.

    ``visible`` is ``CUDA_VISIBLE_DEVICES``: comma-separated indices or UUIDs (``GPU-…``, a unique prefix is
    enough). Like CUDA, the list ends at the first entry that names no device; ``""`` means no GPU at all.
    """
    if visible is None:
        return None
    chosen: list[int] = []
    for raw in visible.split(","):
        entry = raw.strip()
        if entry.isdigit():
            index = int(entry)
        elif entry.startswith("GPU-"):
            matches = [i for i, uuid in enumerate(uuids) if uuid.startswith(entry)]
            index = matches[0] if len(matches) == 1 else -1
        else:
            index = -1
        if not 0 <= index < count or index in chosen:
            break
        chosen.append(index)
    return chosen


def restrict() -> bool:
    """Make MLflow's system metrics sample only this job's GPUs; False when there is nothing to restrict or
    MLflow's monitor is not where this expects it (then MLflow samples every GPU, as it would anyway)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return False
    try:
        from mlflow.system_metrics import system_metrics_monitor
        from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor
    except ImportError:
        return False
    if not hasattr(system_metrics_monitor, "GPUMonitor"):
        return False

    class JobGPUMonitor(GPUMonitor):  # type: ignore[misc]
        """GPUMonitor over the job's own devices only (no device: no GPU monitor at all)."""

        def __init__(self) -> None:
            super().__init__()
            import pynvml

            uuids = [_text(pynvml.nvmlDeviceGetUUID(h)) for h in self.gpu_handles]
            chosen = nvml_indices(visible, self.num_gpus, uuids)
            if chosen is not None:
                self.gpu_handles = [self.gpu_handles[i] for i in chosen]
                self.num_gpus = len(chosen)
            if not self.gpu_handles:
                raise RuntimeError("CUDA_VISIBLE_DEVICES gives this job no GPU: no GPU metrics")

    system_metrics_monitor.GPUMonitor = JobGPUMonitor
    return True


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
