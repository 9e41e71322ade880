"""Which GPUs a job's system metrics sample: the devices CUDA_VISIBLE_DEVICES gives it (pure selection)."""

from __future__ import annotations

import pytest
from training.gpu_metrics import nvml_indices

UUIDS = ["GPU-0aaa", "GPU-1bbb", "GPU-2ccc", "GPU-3ddd"]


@pytest.mark.parametrize(("visible", "expected"), [
    (None, None),  # not restricted (a pod sees only its own GPUs anyway)
    ("", []),  # no GPU for this job
    ("2,3", [2, 3]),  # what the local backend hands a replica
    ("3,1", [3, 1]),  # the job's order: cuda:0 is NVML device 3, charted as gpu_0
    ("GPU-2ccc,GPU-0", [2, 0]),  # UUIDs, or unique prefixes of them
    ("1,7,2", [1]),  # like CUDA, the list ends at the first entry naming no device
    ("GPU-", []),  # ambiguous prefix
    ("1,1", [1]),
    ("MIG-abc", []),
    (" 0 , 1 ", [0, 1]),
])
def test_nvml_indices(visible: str | None, expected: list[int] | None) -> None:
    assert nvml_indices(visible, len(UUIDS), UUIDS) == expected
