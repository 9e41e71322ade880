"""The validation gate's decision and the alias rules: policy, beside the plan rules.

Pure: values in, a verdict out; no tracker, no I/O. ``evaluate`` says whether a succeeded run's metric passes
its experiment's gate, and why; ``promotion`` says whether ``promote: {alias, when}`` moves the alias to a newly
registered version, and why; ``sweep_alias`` says whether ``alias`` moves to it (``alias_to: best``: to the best
of the experiment's current points, whatever order they finish in). Comparisons are exact, and ``shown`` prints
two compared values with as many digits as it takes to tell them apart. The MLflow adapter
(``tracking/mlflow/promote``) reads the metrics, applies the verdicts and records them: the outcome strings
below are the values of the run tag ``expctl.gate``.
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
    mine, bar = shown(value, gate.threshold)
    if gate.passes(value):
        return GateResult(PASSED, f"{metric}={mine} {op} {bar}", value)
    return GateResult(FAILED, f"{metric}={mine} is not {op} {bar}", value)


def shown(value: float, other: float) -> tuple[str, str]:
    """Two compared values as printed: 6 significant digits, more when it takes more to tell them apart, so
    that two different values never print the same ("0.85 > 0.85")."""
    for digits in range(6, 18):
        left, right = _printed(value, digits), _printed(other, digits)
        if left != right or value == other:
            return left, right
    return repr(value), repr(other)


def _printed(value: float, digits: int) -> str:
    """``value`` with ``digits`` significant digits; beyond 6, its shortest exact form when that is shorter."""
    exact = repr(value)
    mantissa = exact.split("e")[0].replace("-", "").replace(".", "").strip("0")
    return exact if digits > 6 and len(mantissa) <= digits else f"{value:.{digits}g}"


ROUNDED_DIGITS = 6  # older expctl recorded a version's validation metrics with 6 significant digits


@dataclass(frozen=True)
class Holder:
    """The version holding an alias, as the registry records it."""

    version: str
    value: float | None = None  # its gate metric; None: it has none (an alias set outside expctl, say)
    rounded: bool = False  # the value is known only as an older expctl recorded it (6 significant digits)
    run_key: str = ""
    current_point: bool = False  # a version of one of the experiment's current points (its sweep as it is now)


@dataclass(frozen=True)
class Promotion:
    """An alias rule's verdict: whether the alias moves to the new version, and the comparison made."""

    moves: bool
    reason: str


BETTER, WORSE, TIE, UNKNOWN = "better", "worse", "tie", "unknown"


def compare(gate: ValidationGate, value: float, holder: float, rounded: bool = False) -> str:
    """``value`` against the holder's, exactly, by the gate's mode: better, worse, tie — or unknown when the
    holder's value was recorded rounded and ``value`` lies within the rounding."""
    if rounded and holder != 0 and math.isfinite(holder):
        half = 0.5 * 10 ** (math.floor(math.log10(abs(holder))) - (ROUNDED_DIGITS - 1))
        low, high = holder - half, holder + half
        if low <= value <= high:
            return UNKNOWN
    if value == holder:
        return TIE
    return BETTER if gate.better(value, holder) else WORSE


def _versus(gate: ValidationGate, value: float, holder: Holder) -> tuple[str, str, str]:
    """The comparison, and the two values as a verdict prints them."""
    assert holder.value is not None
    mine, theirs = shown(value, holder.value)
    return compare(gate, value, holder.value, holder.rounded), mine, theirs


def promotion(gate: ValidationGate, version: str, value: float | None, holder: Holder | None) -> Promotion:
    """``promote: {alias, when}``: with ``better_than_current`` the alias moves only when the new version is
    strictly better than the version holding it on the gate metric (a tie keeps the holder). A holder without
    the metric keeps it unless ``promote.if_holder_unmeasured: replace``."""
    alias, metric = gate.promote_alias, gate.gate_metric
    if holder is not None and holder.version == version:
        return Promotion(False, f"version {version} already holds {alias}")
    if holder is None:
        return Promotion(True, f"promoted to {alias}: no version held it")
    if gate.promote_when == "always":
        return Promotion(True, f"promoted to {alias} (when: always), replacing version {holder.version}")
    if value is None or math.isnan(value):
        return Promotion(False, f"not promoted to {alias}: no {metric} to compare")
    if holder.value is None or math.isnan(holder.value):
        if gate.promote_unmeasured == "replace":
            return Promotion(True, f"promoted to {alias}, replacing version {holder.version}, which has no "
                                   f"{metric} to compare (promote.if_holder_unmeasured: replace)")
        return Promotion(False, f"not promoted to {alias}: version {holder.version} holds it with no {metric} to "
                                f"compare (set outside expctl?) and keeps it (promote.if_holder_unmeasured: keep)")
    verdict, mine, theirs = _versus(gate, value, holder)
    op = ">" if gate.mode == "max" else "<"
    if verdict == BETTER:
        return Promotion(True, f"promoted to {alias}: {metric} {mine} {op} {theirs} of version {holder.version}")
    if verdict == UNKNOWN:
        return Promotion(False, f"not promoted to {alias}: {metric} {mine} cannot be told from {theirs} of version "
                                f"{holder.version} (recorded rounded to {ROUNDED_DIGITS} digits), which keeps it")
    return Promotion(False, f"not promoted to {alias}: {metric} {mine} is not {op} {theirs} of version "
                            f"{holder.version}, which keeps it")


def sweep_alias(gate: ValidationGate, version: str, value: float | None, run_key: str,
                holder: Holder | None) -> Promotion:
    """``alias`` with ``alias_to: best`` (the default): the alias goes to the best version among the
    experiment's current points — it moves from a holder that is not one of them, and from one that is only
    when the new version is strictly better (an exact tie goes to the smaller run key). Each point's decision
    is made once, when it registers; the best point ends up holding the alias whatever order the points
    finish in, over one apply or several. ``alias_to: latest``: every passing version takes it."""
    alias, metric = gate.alias, gate.gate_metric
    if holder is None:
        return Promotion(True, f"{alias}: no version held it")
    if holder.version == version:
        return Promotion(False, f"version {version} already holds {alias}")
    if gate.alias_to == "latest":
        return Promotion(True, f"{alias} moved from version {holder.version} (alias_to: latest)")
    if not holder.current_point:
        return Promotion(True, f"{alias} moved from version {holder.version}, not one of this experiment's "
                               "current points")
    if value is None or math.isnan(value) or holder.value is None or math.isnan(holder.value):
        moves = value is not None and not math.isnan(value)
        return Promotion(moves, f"{alias} moved from version {holder.version}, which has no {metric}" if moves
                         else f"{alias} stays on version {holder.version}: no {metric} to compare")
    verdict, mine, theirs = _versus(gate, value, holder)
    op = ">" if gate.mode == "max" else "<"
    if verdict == BETTER:
        return Promotion(True, f"{alias} moved from version {holder.version}: {metric} {mine} {op} {theirs}, "
                               "the best of the current points so far")
    if verdict == TIE and run_key < holder.run_key:
        return Promotion(True, f"{alias} moved from version {holder.version}: {metric} {mine} = {theirs}, a tie "
                               "that goes to the smaller run key")
    if verdict == UNKNOWN:
        return Promotion(False, f"{alias} stays on version {holder.version}: {metric} {mine} cannot be told from "
                                f"{theirs} (recorded rounded to {ROUNDED_DIGITS} digits)")
    return Promotion(False, f"{alias} stays on version {holder.version}: {metric} {mine} is not {op} {theirs}, "
                            "the best of the current points so far")
