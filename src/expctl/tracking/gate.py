"""The validation gate's decision, and the pure translations between expctl and MLflow run values.

Pure: no MLflow import, no I/O. ``evaluate`` says whether a succeeded run's metric passes its experiment's
gate and why; ``flatten_params`` turns a resolved config into MLflow params; the status maps translate
between backend phases and MLflow run statuses.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from expctl.model import Phase, ValidationGate

PASSED = "passed"
FAILED = "failed"
MISSING_METRIC = "missing-metric"

# MLflow's limits (mlflow.utils.validation): parameter values, keys and entries per log_batch call.
MAX_PARAM_VALUE = 6000
MAX_KEY = 250
MAX_PER_BATCH = 100

STATUS_OF_PHASE = {
    Phase.RUNNING: "RUNNING",
    Phase.SUCCEEDED: "FINISHED",
    Phase.FAILED: "FAILED",
    Phase.CANCELLED: "KILLED",
}
PHASE_OF_STATUS = {
    "SCHEDULED": Phase.PENDING,
    "RUNNING": Phase.RUNNING,
    "FINISHED": Phase.SUCCEEDED,
    "FAILED": Phase.FAILED,
    "KILLED": Phase.CANCELLED,
}
TERMINAL_STATUSES = frozenset({"FINISHED", "FAILED", "KILLED"})


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict on one run: ``passed``, ``failed`` or ``missing-metric``, with a reason."""

    outcome: str
    reason: str
    value: float | None = None

    @property
    def passed(self) -> bool:
        return self.outcome == PASSED


def evaluate(gate: ValidationGate, metrics: Mapping[str, float]) -> GateResult:
    """Whether the run's latest ``gate.metric`` passes ``gate.threshold`` (mode max: >=, min: <=)."""
    if gate.metric not in metrics:
        known = ", ".join(sorted(metrics)[:10]) or "none"
        return GateResult(MISSING_METRIC, f"the run logged no metric {gate.metric!r} (logged: {known})")
    value = float(metrics[gate.metric])
    op = ">=" if gate.mode == "max" else "<="
    if math.isnan(value):
        return GateResult(FAILED, f"{gate.metric} is NaN", value)
    if gate.passes(value):
        return GateResult(PASSED, f"{gate.metric}={value:.6g} {op} {gate.threshold:g}", value)
    return GateResult(FAILED, f"{gate.metric}={value:.6g} is not {op} {gate.threshold:g}", value)


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` → ``{"a.b": "1"}``; lists become JSON; values truncated to MLflow's limit."""
    params: dict[str, str] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            params.update(flatten_params(value, f"{path}."))
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        params[path[:MAX_KEY]] = text[:MAX_PARAM_VALUE]
    return params
