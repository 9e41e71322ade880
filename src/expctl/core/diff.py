"""Pair desired runs with observed runs by run key, like Argo CD's reconcile: no I/O, no policy.

Pure: it only groups and orders values. What to do about each pair is plan.py's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from expctl.core.model import ObservedRun, RunSpec


@dataclass(frozen=True)
class Pair:
    """A run key's desired run (None when no longer desired) and its observed objects, oldest first."""

    run_key: str
    desired: RunSpec | None
    history: tuple[ObservedRun, ...]

    @property
    def current(self) -> ObservedRun | None:
        """The newest attempt: the one the plan rules look at."""
        return self.history[-1] if self.history else None


def _age_order(run: ObservedRun) -> tuple[float, int]:
    return (run.created_at if run.created_at is not None else 0.0, run.attempt)


def pair_runs(desired: Sequence[RunSpec], observed: Iterable[ObservedRun]) -> list[Pair]:
    """Pair by run key: desired runs in their own order, then observed-only keys (orphans) by name."""
    by_key: dict[str, list[ObservedRun]] = {}
    for run in observed:
        by_key.setdefault(run.run_key, []).append(run)
    pairs: list[Pair] = []
    seen: set[str] = set()
    for spec in desired:
        seen.add(spec.run_key)
        history = sorted(by_key.get(spec.run_key, ()), key=_age_order)
        pairs.append(Pair(spec.run_key, spec, tuple(history)))
    orphans = [key for key in by_key if key not in seen]
    for key in sorted(orphans, key=lambda k: min(r.name for r in by_key[k])):
        pairs.append(Pair(key, None, tuple(sorted(by_key[key], key=_age_order))))
    return pairs


def join_observed(live: Iterable[ObservedRun], remembered: Iterable[ObservedRun]) -> list[ObservedRun]:
    """The backend's live objects plus the tracker's finished runs whose objects are gone (TTL-deleted).

    A finished job that Kubernetes garbage-collected is still converged when its tracked run finished with
    the same spec hash: it must never be relaunched.
    """
    remembered = list(remembered)
    metrics = {(r.run_key, r.attempt, r.spec_hash): r.metrics for r in remembered if r.metrics}
    result = [replace(r, metrics=metrics[k]) if not r.metrics and (k := (r.run_key, r.attempt, r.spec_hash))
              in metrics else r for r in live]  # a live run's metrics are the tracker's (``best`` inputs)
    made = {(r.run_key, r.attempt, r.spec_hash): r.output_digest for r in remembered if r.output_digest}
    result = [replace(r, output_digest=made[k]) if not r.output_digest and (k := (r.run_key, r.attempt, r.spec_hash))
              in made else r for r in result]  # ... and so is the digest of the dataset it produced
    present = {(r.run_key, r.attempt, r.spec_hash) for r in result}
    present_names = {r.name for r in result}
    for rec in remembered:
        if (rec.run_key, rec.attempt, rec.spec_hash) in present or not rec.phase.finished:
            continue
        if rec.name in present_names:
            continue
        result.append(rec)
    return result
