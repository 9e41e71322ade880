"""The gate's verdicts and the alias rules, pure and table-driven: exact comparisons, values printed so that two
different values never read the same, a holder with no metric or a rounded one, and a sweep's alias that ends on
its best point whatever order the points finish in."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest

from expctl.core.gate import BETTER, TIE, UNKNOWN, WORSE, Holder, compare, evaluate, promotion, shown, sweep_alias
from expctl.core.model import ValidationGate

GATE = ValidationGate(metric="accuracy", threshold=0.5, split="test", register_as="m", promote_alias="champion")
SWEEP = ValidationGate(metric="val_accuracy", threshold=0.7, register_as="m", alias="candidate")


@pytest.mark.parametrize(("value", "other", "expected"), [
    (0.85, 0.8500001, ("0.85", "0.8500001")),
    (0.8500004, 0.8500001, ("0.8500004", "0.8500001")),
    (0.1 + 0.2, 0.3, ("0.30000000000000004", "0.3")),
    (0.8075, 0.79, ("0.8075", "0.79")),
    (0.85, 0.85, ("0.85", "0.85")),
    (1e-300, 1.0000001e-300, ("1e-300", "1.0000001e-300")),
    (-0.0, 0.0, ("-0", "0")),
], ids=["seventh digit", "both rounded alike", "seventeen digits", "plain", "equal", "tiny", "signed zero"])
def test_two_different_values_never_print_the_same(value: float, other: float, expected: tuple[str, str]) -> None:
    left, right = shown(value, other)
    assert (left, right) == expected
    assert left != right or value == other
    assert float(left) == value or len(left) >= 6  # exact when short, else 6 significant digits at least


@pytest.mark.parametrize(("value", "threshold", "mode", "outcome", "reason"), [
    (0.6999999, 0.7, "max", "failed", "accuracy=0.6999999 is not >= 0.7"),
    (0.7, 0.7, "max", "passed", "accuracy=0.7 >= 0.7"),
    (0.70000001, 0.7, "max", "passed", "accuracy=0.70000001 >= 0.7"),
    (0.3000001, 0.3, "min", "failed", "accuracy=0.3000001 is not <= 0.3"),
    (0.727272727, 0.6, "max", "passed", "accuracy=0.727273 >= 0.6"),
    (math.nan, 0.6, "max", "failed", "accuracy is NaN"),
], ids=["just under", "equal passes", "just over", "min just over", "six digits suffice", "nan"])
def test_the_gate_compares_and_prints_exactly(value: float, threshold: float, mode: str, outcome: str,
                                              reason: str) -> None:
    gate = ValidationGate(metric="accuracy", threshold=threshold, mode=mode)
    result = evaluate(gate, {"accuracy": value})
    assert (result.outcome, result.reason) == (outcome, reason)


@pytest.mark.parametrize(("mode", "value", "holder", "rounded", "expected"), [
    ("max", 0.8500001, 0.8500004, False, WORSE),
    ("max", 0.8500004, 0.8500001, False, BETTER),
    ("max", 0.85, 0.85, False, TIE),
    ("max", 0.8500001, 0.85, True, UNKNOWN),  # 0.85 recorded from anything in [0.849995, 0.850005]
    ("max", 0.850006, 0.85, True, BETTER),
    ("max", 0.849994, 0.85, True, WORSE),
    ("min", 0.849994, 0.85, True, BETTER),
    ("max", 0.0, 0.0, True, TIE),  # 0 rounds to itself
    ("max", 123456.7, 123457.0, True, UNKNOWN),
    ("max", 123457.6, 123457.0, True, BETTER),
])
def test_compare(mode: str, value: float, holder: float, rounded: bool, expected: str) -> None:
    assert compare(replace(GATE, mode=mode), value, holder, rounded) == expected


def _held(value: float | None, version: str = "1", rounded: bool = False) -> Holder:
    return Holder(version, value, rounded)


@pytest.mark.parametrize(("gate", "value", "holder", "moves", "reason"), [
    (GATE, 0.9, None, True, "promoted to champion: no version held it"),
    (GATE, 0.9, _held(0.8), True, "promoted to champion: validation.accuracy 0.9 > 0.8 of version 1"),
    (GATE, 0.7, _held(0.8), False,
     "not promoted to champion: validation.accuracy 0.7 is not > 0.8 of version 1, which keeps it"),
    (GATE, 0.8, _held(0.8), False,
     "not promoted to champion: validation.accuracy 0.8 is not > 0.8 of version 1, which keeps it"),
    (GATE, 0.8500001, _held(0.8500004), False,
     "not promoted to champion: validation.accuracy 0.8500001 is not > 0.8500004 of version 1, which keeps it"),
    (GATE, 0.8500004, _held(0.8500001), True,
     "promoted to champion: validation.accuracy 0.8500004 > 0.8500001 of version 1"),
    (GATE, 0.8500001, _held(0.85, rounded=True), False,
     "not promoted to champion: validation.accuracy 0.8500001 cannot be told from 0.85 of version 1 (recorded "
     "rounded to 6 digits), which keeps it"),
    (GATE, 0.86, _held(0.85, rounded=True), True,
     "promoted to champion: validation.accuracy 0.86 > 0.85 of version 1"),
    (replace(GATE, mode="min"), 0.7, _held(0.8), True,
     "promoted to champion: validation.accuracy 0.7 < 0.8 of version 1"),
    (GATE, 0.9, _held(0.1, version="2"), False, "version 2 already holds champion"),
    (GATE, 0.9, _held(None), False,
     "not promoted to champion: version 1 holds it with no validation.accuracy to compare (set outside "
     "expctl?) and keeps it (promote.if_holder_unmeasured: keep)"),
    (GATE, 0.9, _held(math.nan), False,
     "not promoted to champion: version 1 holds it with no validation.accuracy to compare (set outside "
     "expctl?) and keeps it (promote.if_holder_unmeasured: keep)"),
    (replace(GATE, promote_unmeasured="replace"), 0.9, _held(None), True,
     "promoted to champion, replacing version 1, which has no validation.accuracy to compare "
     "(promote.if_holder_unmeasured: replace)"),
    (GATE, math.nan, _held(0.8), False, "not promoted to champion: no validation.accuracy to compare"),
    (replace(GATE, promote_when="always"), 0.1, _held(0.9), True,
     "promoted to champion (when: always), replacing version 1"),
], ids=["no holder", "better", "worse", "tie keeps the holder", "worse in the seventh digit",
        "better in the seventh digit", "within a rounded record", "beyond a rounded record", "min mode",
        "already holds", "holder unmeasured: keep", "holder NaN: keep", "holder unmeasured: replace",
        "no value", "always"])
def test_promotion(gate: ValidationGate, value: float, holder: Holder | None, moves: bool, reason: str) -> None:
    verdict = promotion(gate, "2", value, holder)
    assert (verdict.moves, verdict.reason) == (moves, reason)


def _point(value: float | None, version: str, key: str, current: bool = True) -> Holder:
    return Holder(version, value, False, key, current)


@pytest.mark.parametrize(("gate", "value", "key", "holder", "moves", "reason"), [
    (SWEEP, 0.79, "k7", None, True, "candidate: no version held it"),
    (SWEEP, 0.79, "k7", _point(0.8075, "2", "k2"), False,
     "candidate stays on version 2: val_accuracy 0.79 is not > 0.8075, the best of the current points so far"),
    (SWEEP, 0.8075, "k2", _point(0.79, "7", "k7"), True,
     "candidate moved from version 7: val_accuracy 0.8075 > 0.79, the best of the current points so far"),
    (SWEEP, 0.5, "k2", _point(0.99, "1", "old", current=False), True,
     "candidate moved from version 1, not one of this experiment's current points"),
    (SWEEP, 0.8, "a", _point(0.8, "5", "b"), True,
     "candidate moved from version 5: val_accuracy 0.8 = 0.8, a tie that goes to the smaller run key"),
    (SWEEP, 0.8, "b", _point(0.8, "5", "a"), False,
     "candidate stays on version 5: val_accuracy 0.8 is not > 0.8, the best of the current points so far"),
    (SWEEP, 0.8, "b", _point(None, "5", "a"), True, "candidate moved from version 5, which has no val_accuracy"),
    (replace(SWEEP, mode="min"), 0.2, "b", _point(0.3, "5", "a"), True,
     "candidate moved from version 5: val_accuracy 0.2 < 0.3, the best of the current points so far"),
    (replace(SWEEP, alias_to="latest"), 0.1, "b", _point(0.9, "5", "a"), True,
     "candidate moved from version 5 (alias_to: latest)"),
    (SWEEP, 0.9, "b", _point(0.1, "9", "b"), False, "version 9 already holds candidate"),
], ids=["no holder", "worse point finishing last", "better point", "holder of an older sweep",
        "tie: smaller key takes it", "tie: larger key leaves it", "holder unmeasured", "min mode", "latest",
        "already holds"])
def test_sweep_alias(gate: ValidationGate, value: float, key: str, holder: Holder | None, moves: bool,
                     reason: str) -> None:
    verdict = sweep_alias(gate, "9", value, key, holder)
    assert (verdict.moves, verdict.reason) == (moves, reason)


# The README's lr-sweep: six points; two tie exactly, so the order of keys decides between them.
POINTS = {"k1": 0.79, "k2": 0.8075, "k3": 0.75, "k4": 0.8075, "k5": 0.7, "k6": 0.790000001}


def _finish(order: tuple[str, ...], gate: ValidationGate, holder: Holder | None = None) -> str:
    """Register the points in ``order`` (each decided once, against whatever holds the alias then)."""
    for version, key in enumerate(order, start=10):
        verdict = sweep_alias(gate, str(version), POINTS[key], key, holder)
        if verdict.moves:
            holder = _point(POINTS[key], str(version), key)
    assert holder is not None
    return holder.run_key


def test_a_sweeps_alias_ends_on_its_best_point_whatever_order_the_points_finish_in() -> None:
    outside = _point(0.999, "1", "old", current=False)  # a better version of an older sweep
    ends = {_finish(order, SWEEP, start) for order in itertools.permutations(POINTS)
            for start in (None, outside)}
    assert ends == {"k2"}  # the best; of the tie k2/k4, the smaller key
    assert {_finish(order, replace(SWEEP, mode="min")) for order in itertools.permutations(POINTS)} == {"k5"}


def test_with_alias_to_latest_the_last_point_to_finish_takes_it() -> None:
    gate = replace(SWEEP, alias_to="latest")
    assert {_finish(order, gate) for order in itertools.permutations(POINTS)} == set(POINTS)
