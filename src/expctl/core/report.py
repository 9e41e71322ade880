"""The results of a commit's experiments as data: rows of runs, and the judgements a reviewer wants.

Pure: values in, values out (no clock, no I/O). ``engine/report`` collects what the tracker and the backend know
into ``RunResult``s; ``experiment_report`` turns one experiment's rows into an ``ExperimentReport`` (best run,
gate and promotion outcome, deltas against the champion of its model and against the same experiment at the
parent commit); ``summary_line`` is the commit status's one line. Values are kept raw here (a metric may be NaN
or infinite, a name may hold Markdown): ``report_render`` escapes and bounds them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class RunResult:
    """One desired run of the commit and what is known of it (``state`` ``Waiting`` when not launched yet)."""

    name: str
    overrides: tuple[str, ...]
    state: str
    reason: str = ""  # why it waits, or why it failed
    attempt: int = 0
    wall_seconds: float | None = None
    gpu_hours: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    run_id: str | None = None
    url: str | None = None
    failure: str | None = None  # the failure class
    log_tail: tuple[str, ...] = ()
    gate: str = ""  # the gate's outcome tag: passed | failed | "" (not judged)
    gate_reason: str = ""
    promotion: str = ""  # e.g. "blobs-classifier/3 promoted to champion"


@dataclass(frozen=True)
class Reference:
    """A value to compare against: the champion of the model, or the experiment at the parent commit."""

    label: str  # "blobs-classifier@champion (v3)" or the parent commit
    value: float | None
    readable: bool = True
    why_not: str = ""  # e.g. "its run is not readable from here"
    url: str | None = None


@dataclass(frozen=True)
class Plot:
    """A plot of an experiment: ``file`` under the output directory, ``url`` where a browser finds it."""

    title: str
    file: str
    url: str | None = None


@dataclass(frozen=True)
class ExperimentReport:
    experiment: str
    gate_metric: str | None
    mode: str  # "max" | "min"
    metrics: tuple[str, ...]  # the columns: the gate metric first
    runs: tuple[RunResult, ...]
    best: RunResult | None = None
    champion: Reference | None = None
    parent: Reference | None = None
    url: str | None = None
    plots: tuple[Plot, ...] = ()

    @property
    def best_value(self) -> float | None:
        return metric(self.best, self.gate_metric) if self.best is not None else None

    def counts(self) -> dict[str, int]:
        """Runs per state, in a stable order."""
        out: dict[str, int] = {}
        for run in self.runs:
            out[run.state] = out.get(run.state, 0) + 1
        return dict(sorted(out.items()))

    def promoted(self) -> list[RunResult]:
        return [r for r in self.runs if r.promotion]


@dataclass(frozen=True)
class Report:
    commit: str
    parent: str | None
    experiments: tuple[ExperimentReport, ...]
    ui_url: str | None = None


def finite(value: object) -> float | None:
    """``value`` as a finite float, else None (NaN, ±inf, absent or not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def metric(run: RunResult | None, name: str | None) -> float | None:
    if run is None or name is None:
        return None
    return finite(run.metrics.get(name))


def sort_key(gate_metric: str | None, mode: str) -> Callable[[RunResult], tuple[int, float, str]]:
    """Order runs best first by the gate metric; runs without a finite value last, then by name."""
    def key(run: RunResult) -> tuple[int, float, str]:
        value = metric(run, gate_metric)
        if value is None:
            return (1, 0.0, run.name)
        return (0, -value if mode == "max" else value, run.name)
    return key


def ranked(runs: Sequence[RunResult], gate_metric: str | None, mode: str) -> list[RunResult]:
    return sorted(runs, key=sort_key(gate_metric, mode))


def best_run(runs: Sequence[RunResult], gate_metric: str | None, mode: str) -> RunResult | None:
    """The succeeded run with the best finite gate metric (None when no run has one)."""
    candidates = [r for r in runs if r.state == "Succeeded" and metric(r, gate_metric) is not None]
    return ranked(candidates, gate_metric, mode)[0] if candidates else None


def delta(value: float | None, reference: Reference | None) -> float | None:
    if value is None or reference is None or reference.value is None:
        return None
    return finite(value - reference.value)


def columns(gate_metric: str | None, extra: Sequence[str]) -> tuple[str, ...]:
    """The metric columns: the gate metric first, then the ``report.metrics`` asked for (no repeats)."""
    names = [gate_metric] if gate_metric else []
    return tuple(dict.fromkeys([*names, *extra]))


def experiment_report(experiment: str, gate_metric: str | None, mode: str, extra: Sequence[str],
                      runs: Sequence[RunResult], *, champion: Reference | None = None,
                      parent: Reference | None = None, url: str | None = None,
                      plots: Sequence[Plot] = ()) -> ExperimentReport:
    return ExperimentReport(
        experiment=experiment, gate_metric=gate_metric, mode=mode if mode in ("max", "min") else "max",
        metrics=columns(gate_metric, extra), runs=tuple(runs), best=best_run(runs, gate_metric, mode),
        champion=champion, parent=parent, url=url, plots=tuple(plots))


def succeeded(report: Report) -> tuple[int, int]:
    runs = [r for e in report.experiments for r in e.runs]
    return sum(r.state == "Succeeded" for r in runs), len(runs)


def summary_line(report: Report, limit: int = 140) -> str:
    """``expctl: 7/8 succeeded, champion 0.790 → 0.812``: the commit status's description (GitHub keeps 140
    characters). The champion part names the first experiment with a champion and a best run."""
    done, total = succeeded(report)
    text = f"expctl: {done}/{total} succeeded"
    for exp in report.experiments:
        best, champ = exp.best_value, exp.champion
        if best is not None and champ is not None and champ.value is not None:
            text += f", champion {number(champ.value)} → {number(best)}"
            break
    return text[:limit]


def number(value: float | None) -> str:
    """A metric as people read it: 3 decimals for ordinary values, else 4 significant digits."""
    if value is None:
        return "—"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.4g}"
    return f"{value:.3f}"


def signed(value: float | None) -> str:
    return "—" if value is None else ("+" if value >= 0 else "") + number(value)


def aggregates(runs: Sequence[RunResult], name: str | None) -> dict[str, float | int | None]:
    """Count, finite count, min, median and max of one metric over ``runs``."""
    values = sorted(v for v in (metric(r, name) for r in runs) if v is not None)
    if not values:
        return {"runs": len(runs), "with_value": 0, "min": None, "median": None, "max": None}
    mid = len(values) // 2
    median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return {"runs": len(runs), "with_value": len(values), "min": values[0], "median": median, "max": values[-1]}


@dataclass(frozen=True)
class TrackedRun:
    """What the tracker recorded of one run of an experiment (a sweep's parent run too: ``parent``)."""

    run_id: str
    experiment_id: str
    run_key: str = ""
    spec_hash: str = ""
    attempt: int = 0
    commit: str = ""
    status: str = ""
    start: float | None = None  # seconds since the epoch
    end: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    gpus: int = 0
    replicas: int = 1
    parent: bool = False
    gate: str = ""
    gate_reason: str = ""
    model_version: str = ""  # "name/version" when the gate registered its model
    validates_run_id: str = ""  # a validation job's: the training run it validated
    parent_run_id: str = ""  # a sweep point's: its sweep's parent run


def with_validation(tracked: Sequence[TrackedRun], prefix: str) -> list[TrackedRun]:
    """The training runs with the metrics of their latest validation job as ``<prefix><name>`` (where the
    platform's gate reads them: a ``validation.command`` job logs into its own run). The validation job's values
    win over what a training run logged under the same names, as they do in the gate."""
    validated: dict[str, TrackedRun] = {}
    for run in sorted(tracked, key=lambda r: (r.attempt, r.start or 0.0)):
        if run.validates_run_id:
            validated[run.validates_run_id] = run
    out = []
    for run in tracked:
        job = validated.get(run.run_id)
        if job is None or run.validates_run_id:
            out.append(run)
            continue
        measured = {prefix + k: v for k, v in job.metrics.items() if not k.startswith("system/")}
        out.append(replace(run, metrics={**run.metrics, **measured}))
    return out
