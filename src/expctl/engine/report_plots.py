"""The report's plots (matplotlib, Agg backend, PNG): a sweep's learning curves for the gate metric, and the
gate metric against each swept parameter.

matplotlib is imported when a plot is drawn (it costs a few hundred milliseconds), with the Agg backend (no
display). Labels come from runs (names, overrides, metric names): matplotlib's mathtext is switched off for
them (``$`` would start a formula), and they are cut to a bounded length.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from expctl.core.naming import slug
from expctl.core.report import RunResult, metric
from expctl.core.sanitize import one_line

MAX_POINTS = 10_000  # points per scatter plot


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["text.usetex"] = False
    return plt


def _label(text: str, limit: int = 60) -> str:
    return one_line(text, limit).replace("$", r"\$")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def learning_curves(path: Path, metric_name: str, curves: Mapping[str, Sequence[tuple[int, float]]]) -> bool:
    """One line per sweep point: ``metric_name`` by step. False (nothing drawn) when no point has a history."""
    drawn = {k: v for k, v in curves.items() if v}
    if not drawn:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    try:
        for label, points in drawn.items():
            ax.plot([s for s, _ in points], [v for _, v in points], marker=".", label=_label(label, 40))
        ax.set_xlabel("step")
        ax.set_ylabel(_label(metric_name))
        ax.set_title(_label(f"{metric_name} by step"))
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=90)
    finally:
        plt.close(fig)
    return True


def swept_parameters(rows: Sequence[RunResult]) -> list[str]:
    names: dict[str, None] = {}
    for row in rows:
        for override in row.overrides:
            key = override.partition("=")[0]
            if key:
                names[key] = None
    return list(names)


def metric_vs_parameter(path: Path, metric_name: str, parameter: str, rows: Sequence[RunResult]) -> bool:
    """The gate metric of every run against one swept parameter (numbers on a log or linear axis, other
    values as categories). False when no run has a finite value."""
    points: list[tuple[str, float]] = []
    for row in rows[:MAX_POINTS]:
        value = metric(row, metric_name)
        found = dict(o.partition("=")[::2] for o in row.overrides)
        if value is not None and parameter in found:
            points.append((found[parameter], value))
    if not points:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    try:
        numbers = [_number(x) for x, _ in points]
        if all(n is not None for n in numbers):
            xs = [float(n) for n in numbers if n is not None]
            ax.scatter(xs, [v for _, v in points])
            if min(xs) > 0 and max(xs) / min(xs) >= 100:
                ax.set_xscale("log")
        else:
            categories = sorted({x for x, _ in points})[:50]
            where = {c: i for i, c in enumerate(categories)}
            kept = [(where[x], v) for x, v in points if x in where]
            ax.scatter([i for i, _ in kept], [v for _, v in kept])
            ax.set_xticks(range(len(categories)), [_label(c, 20) for c in categories], rotation=30, fontsize=7)
        ax.set_xlabel(_label(parameter))
        ax.set_ylabel(_label(metric_name))
        ax.set_title(_label(f"{metric_name} against {parameter}"))
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=90)
    finally:
        plt.close(fig)
    return True


def file_name(experiment: str, what: str) -> str:
    return f"{slug(experiment)}-{re.sub(r'[^a-z0-9]+', '-', what.lower()).strip('-')[:60] or 'plot'}.png"


def experiment_plots(out: Path, experiment: str, metric_name: str,
                     curves: Mapping[str, Sequence[tuple[int, float]]],
                     rows: Sequence[RunResult], curve_metric: str | None = None) -> list[tuple[str, Path]]:
    """Every plot of one sweep, written under ``out``: ``(title, path)``. ``curves`` are histories of
    ``curve_metric`` (default: ``metric_name``)."""
    made: list[tuple[str, Path]] = []
    by_step = curve_metric or metric_name
    path = out / file_name(experiment, "learning-curves")
    if learning_curves(path, by_step, curves):
        made.append((f"{by_step} by step", path))
    for parameter in swept_parameters(rows)[:10]:
        path = out / file_name(experiment, f"vs-{parameter}")
        if metric_vs_parameter(path, metric_name, parameter, rows):
            made.append((f"{metric_name} against {parameter}", path))
    return made
