"""What the MLflow UI shows about a run: where it came from, what expctl launched, how a sweep stands.

Pure: no MLflow import, no I/O. ``source_tags`` fills the UI's Source and Version columns (MLflow's
``mlflow.source.*`` tags, in MLflow Projects' ``<repository>#<file>`` form), ``launch_note`` is the run's
one-line description, ``override_params`` makes a sweep point's overrides params the runs table can show
as columns, ``sweep_summary`` is a sweep parent's counts per state and best gate value, and
``experiment_view`` is the saved view expctl puts on each experiment (those columns, newest first).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from expctl.config.source import public_repo_url
from expctl.core import safe_json
from expctl.core.model import RunSpec, ValidationGate

# The experiment-kind tag of MLflow 3's UI: "custom_model_development" is its "Model training" kind.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
# An experiment's saved views (the UI's "Views" menu) are experiment tags with this prefix.
SAVED_VIEW_PREFIX = "mlflow.sharedViewState."
VIEW_KEY = "expctl"
VIEW_NAME = "expctl: runs, overrides, source"
NOTE_TAG = "mlflow.note.content"
SOURCE_TYPE = "PROJECT"  # a git repository and a file in it: the UI links the commit for this type
OVERRIDE_PREFIX = "override."
SWEEP_METRIC_PREFIX = "sweep_"  # no "/": the chart view keeps it beside the model metrics

# MLflow run statuses → the words expctl uses for states, in the order a summary lists them.
STATE_OF_STATUS = {"FINISHED": "succeeded", "FAILED": "failed", "KILLED": "cancelled",
                   "RUNNING": "running", "SCHEDULED": "pending"}
STATES = ("succeeded", "failed", "cancelled", "running", "pending")

_PARAM_KEY_UNSAFE = re.compile(r"[^\w\-. /]")


def source_tags(spec: RunSpec, repository: str | None, repo_url: str | None = None) -> dict[str, str]:
    """MLflow's source tags: the UI's Source column shows the experiment file, its Version column the commit;
    on GitHub/GitLab/Bitbucket both link to the file at the commit (the UI puts ``mlflow.source.git.branch``
    into the Source link, so it is the commit: a branch would move on)."""
    name = f"{repository}#{spec.source_file}" if repository else spec.source_file
    tags = {
        "mlflow.source.type": SOURCE_TYPE,
        "mlflow.source.name": name,
        "mlflow.source.git.commit": spec.commit,
        "mlflow.source.git.branch": spec.commit,
    }
    url = public_repo_url(repo_url)
    if url:
        tags["mlflow.source.git.repoURL"] = url
    return tags


def override_pairs(overrides: Iterable[str]) -> list[tuple[str, str]]:
    """``["model=wide", "+optimizer.lr=0.01"]`` → ``[("model", "wide"), ("optimizer.lr", "0.01")]``."""
    pairs = []
    for override in overrides:
        key, sep, value = override.partition("=")
        key = key.lstrip("+~").strip()
        if key:
            pairs.append((key, value.strip() if sep else ""))
    return pairs


def override_param_key(key: str) -> str:
    """The param that holds one override: ``override.<key>`` with characters MLflow refuses replaced."""
    return (OVERRIDE_PREFIX + _PARAM_KEY_UNSAFE.sub("_", key))[:250]


def override_params(spec: RunSpec) -> dict[str, str]:
    """A sweep point's overrides as params (``override.model = wide``): columns of the runs table."""
    return {override_param_key(key): value[:6000] for key, value in override_pairs(spec.overrides)}


def launch_note(spec: RunSpec, attempt: int, backend: str, sweep: tuple[str, str] | None = None) -> str:
    """The run's description, one line: experiment, overrides, commit, spec hash, attempt, backend, and a
    link to the sweep's parent run (``sweep`` = (its name, its UI route such as ``#/experiments/1/runs/x``)).
    Plain words first: the runs table shows the description raw, the run page renders it as Markdown."""
    overrides = " ".join(spec.overrides)
    line = (f"expctl launched {spec.experiment}" + (f" with {overrides}" if overrides else "")
            + f" from {spec.source_file} at commit {spec.commit[:12]} (spec {spec.spec_hash[:12]}), "
            f"attempt {attempt} on {backend}")
    if sweep is not None:
        line += f"; point of sweep [{sweep[0]}]({sweep[1]})"
    return line + "."


def sweep_note(experiment: str, commit: str, source_file: str, summary: SweepSummary | None = None) -> str:
    """A sweep parent run's description: how its points stand (once known), then what the sweep is."""
    origin = f" from {source_file}" if source_file else ""  # parents made by older expctl lack the file
    line = f"expctl sweep of {experiment}{origin} at commit {commit[:12]}."
    return f"{summary.text}; {line}" if summary is not None else line


@dataclass(frozen=True)
class SweepSummary:
    """How a sweep stands: its points' latest attempts counted per state, and the best gate value."""

    counts: Mapping[str, int]
    points: int
    metric: str | None = None
    best: float | None = None
    best_run: str | None = None

    @property
    def text(self) -> str:
        states = ", ".join(f"{self.counts[s]} {s}" for s in STATES if self.counts.get(s))
        text = f"{self.points} points ({states})" if states else f"{self.points} points"
        if self.metric and self.best is not None:
            text += f"; best {self.metric} {self.best:.4g}" + (f" ({self.best_run})" if self.best_run else "")
        return text

    def metrics(self) -> dict[str, float]:
        """The parent run's metric: ``sweep_best_<metric>`` (one chart, one column; counts are tags)."""
        if self.metric and self.best is not None:
            return {f"{SWEEP_METRIC_PREFIX}best_{self.metric}": self.best}
        return {}

    def tags(self) -> dict[str, str]:
        """The parent run's tags: ``expctl.sweep.<state>`` counts, points, summary line, best run."""
        tags = {f"expctl.sweep.{state}": str(self.counts.get(state, 0)) for state in STATES}
        tags["expctl.sweep.points"] = str(self.points)
        tags["expctl.sweep.summary"] = self.text
        if self.best_run:
            tags["expctl.sweep.best_run"] = self.best_run
        return tags


@dataclass(frozen=True)
class Point:
    """One sweep point's latest attempt as the parent sees it: its status, name and logged metrics."""

    status: str
    name: str
    metrics: Mapping[str, float]


def sweep_summary(points: Sequence[Point], gate: ValidationGate | None) -> SweepSummary:
    """Count the points per state; the best value of the gate's metric (max or min) among them."""
    counts = Counter(STATE_OF_STATUS.get(p.status, "pending") for p in points)
    if gate is None:
        return SweepSummary(dict(counts), len(points))
    scored = [(float(p.metrics[gate.metric]), p.name) for p in points
              if gate.metric in p.metrics and p.metrics[gate.metric] == p.metrics[gate.metric]]  # not NaN
    if not scored:
        return SweepSummary(dict(counts), len(points), gate.metric)
    best = max(scored) if gate.mode == "max" else min(scored)
    return SweepSummary(dict(counts), len(points), gate.metric, best[0], best[1])


def experiment_view(override_keys: Iterable[str], metric: str | None) -> dict[str, object]:
    """The runs-table state of expctl's saved view: Source, Version, the gate metric (and a sweep's best),
    the overrides, then the description."""
    keys = sorted(set(override_keys))
    columns = ["attributes.`Source`", "attributes.`Version`"]
    if metric:
        columns.append(f"metrics.`{metric}`")
        if keys:
            columns.append(f"metrics.`{SWEEP_METRIC_PREFIX}best_{metric}`")
    columns += [f"params.`{override_param_key(key)}`" for key in keys]
    columns.append("attributes.`Description`")
    return {"selectedColumns": columns, "columnOrder": columns, "orderByKey": "attributes.start_time",
            "orderByAsc": False}


def saved_view_tag(state: Mapping[str, object], created_ms: int) -> tuple[str, str]:
    """The experiment tag (key, value) that holds a saved view, in the envelope MLflow's UI reads."""
    envelope = {"name": VIEW_NAME, "createdAt": created_ms, "updatedAt": created_ms,
                "state": json.dumps(state, sort_keys=True)}
    return SAVED_VIEW_PREFIX + VIEW_KEY, json.dumps(envelope, sort_keys=True)


def saved_view_state(value: str | None) -> dict[str, object] | None:
    """The state inside a saved view's tag value, or None when absent or not in the expected envelope."""
    if not value:
        return None
    try:
        envelope = safe_json.loads(value)
        state = safe_json.loads(envelope["state"])
    except (ValueError, KeyError, TypeError):
        return None
    return state if isinstance(state, dict) else None
