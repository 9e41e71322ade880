"""The validation gate's decision and the promotion rule: policy, beside the plan rules.

Pure: values in, a verdict out; no tracker, no I/O. ``evaluate`` says whether a succeeded run's metric passes
its experiment's gate, and why; ``promotion`` says whether ``promote: {alias, when}`` moves the alias to a newly
registered version, and why. The MLflow adapter (``tracking/mlflow/promote``) reads the metrics, applies the
verdicts and records them: the outcome strings below are the values of the run tag ``expctl.gate``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from expctl.core.model import ValidationGate

PASSED = "passed"
FAILED = "failed"
MISSING_METRIC = "missing-metric"


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
    """Whether the run's latest gate metric passes ``gate.threshold`` (mode max: >=, min: <=). When the platform
    validates, the gate metric is the validation job's ``validation.<metric>``, never the training's own."""
    metric = gate.gate_metric
    if metric not in metrics:
        known = ", ".join(sorted(metrics)[:10]) or "none"
        return GateResult(MISSING_METRIC, f"the run logged no metric {metric!r} (logged: {known})")
    value = float(metrics[metric])
    op = ">=" if gate.mode == "max" else "<="
    if math.isnan(value):
        return GateResult(FAILED, f"{metric} is NaN", value)
    if gate.passes(value):
        return GateResult(PASSED, f"{metric}={value:.6g} {op} {gate.threshold:g}", value)
    return GateResult(FAILED, f"{metric}={value:.6g} is not {op} {gate.threshold:g}", value)


@dataclass(frozen=True)
class Promotion:
    """A promotion rule's verdict: whether the alias moves to the new version, and the comparison made."""

    moves: bool
    reason: str


def promotion(gate: ValidationGate, version: str, value: float | None, holder: str | None,
              holder_value: float | None) -> Promotion:
    """``promote: {alias, when}``: with ``better_than_current`` the alias moves only when the new version is
    strictly better than the version holding it on the gate metric (a tie keeps the holder)."""
    alias, metric = gate.promote_alias, gate.gate_metric
    if holder == version:
        return Promotion(False, f"version {version} already holds {alias}")
    if holder is None:
        return Promotion(True, f"promoted to {alias}: no version held it")
    if gate.promote_when == "always":
        return Promotion(True, f"promoted to {alias} (when: always), replacing version {holder}")
    if value is None or math.isnan(value):
        return Promotion(False, f"not promoted to {alias}: no {metric} to compare")
    if holder_value is None or math.isnan(holder_value):
        return Promotion(True, f"promoted to {alias}: version {holder} has no {metric}")
    op = ">" if gate.mode == "max" else "<"
    if gate.better(value, holder_value):
        return Promotion(True, f"promoted to {alias}: {metric} {value:.6g} {op} {holder_value:.6g} of version {holder}")
    return Promotion(False, f"not promoted to {alias}: {metric} {value:.6g} is not {op} {holder_value:.6g} of "
                            f"version {holder}, which keeps it")
