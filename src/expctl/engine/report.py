"""``expctl report``: a commit's desired runs joined with what the backend and the tracker know of them.

For each experiment the commit changed (every one with ``all_experiments``) the desired runs are known, so
runs not launched yet or still waiting are in the report too. What is read: the desired state at the commit
and at its parent (git), one observation of the backend joined with the tracker (states, failure reasons),
the tracker's runs of each experiment (metrics, times, gate tags), the champion of its model, the kept logs of
a few failed runs and the gate metric's history of a sweep's best points (the plots). The judgements and
the rendering are the pure ``core.report`` and ``core.report_render``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from expctl.config import source
from expctl.config.desired_state import Desired, load_desired
from expctl.core.errors import ExpctlError
from expctl.core.model import VALIDATION_PREFIX, ObservedRun, Phase, RunSpec, ValidationGate
from expctl.core.report import (
    ExperimentReport,
    Plot,
    Reference,
    Report,
    RunResult,
    TrackedRun,
    best_run,
    experiment_report,
    finite,
    ranked,
    with_validation,
)
from expctl.core.sanitize import uri_secrets
from expctl.engine import report_plots
from expctl.engine.plan import observe
from expctl.engine.workspace import Workspace
from expctl.tracking.base import LogStore, ReportsResults, Tracker
from expctl.tracking.mlflow import links

FAILED_LOGS = 5  # failed runs per experiment whose kept logs are read
LOG_LINES = 15
PROMOTIONS = 20  # registered versions per experiment whose promotion is read
CURVES = 10  # sweep points per learning-curve plot


@dataclass(frozen=True)
class ReportOptions:
    rev: str = "HEAD"
    all_experiments: bool = False
    backend: str | None = None
    out: Path | None = None  # where plots go (none: no plots)
    log_plots: bool = True  # log the plots as artifacts of the sweep's parent run


@dataclass
class Built:
    report: Report
    images: dict[str, bytes] = field(default_factory=dict)  # plot file name → PNG
    warnings: list[str] = field(default_factory=list)


def parent_commit(repo: Path, commit: str) -> str | None:
    try:
        return source.resolve(repo, f"{commit}^")
    except ExpctlError:
        return None


def _desired_at(repo: Path, rev: str) -> Desired:
    return load_desired(source.snapshot(repo, rev))


def _identity(runs: Sequence[RunSpec], experiment: str) -> set[tuple[str, str]]:
    return {(r.run_key, r.spec_hash) for r in runs if r.experiment == experiment and not r.validates}


def changed_experiments(desired: Desired, parent: Desired | None) -> list[str]:
    """The experiments whose desired runs (keys and spec hashes) differ from the parent commit's."""
    names = sorted({r.experiment for r in desired.runs if not r.validates})
    if parent is None:
        return names
    return [n for n in names if _identity(desired.runs, n) != _identity(parent.runs, n)]


def _latest(tracked: Sequence[TrackedRun]) -> dict[tuple[str, str], TrackedRun]:
    out: dict[tuple[str, str], TrackedRun] = {}
    for run in sorted(tracked, key=lambda r: (r.attempt, r.start or 0.0)):
        if not run.parent:
            out[(run.run_key, run.spec_hash)] = run
    return out


def _state(spec: RunSpec, seen: ObservedRun | None) -> tuple[str, str, str | None]:
    """(state, reason, failure class) of a desired run from the observation."""
    if seen is None:
        return "Waiting", "not launched yet (apply has not run since this commit)", None
    if seen.spec_hash != spec.spec_hash:
        return "Waiting", f"the previous spec's run is {seen.state.lower()}; apply replaces it", None
    failure = seen.failure.value if seen.failure else None
    if seen.phase is Phase.PENDING:
        return "Pending", seen.message or "queued", None
    return seen.state, seen.message if seen.phase is Phase.FAILED else "", failure


def _row(spec: RunSpec, seen: ObservedRun | None, tracked: TrackedRun | None, ui: str | None,
         now: float) -> RunResult:
    state, reason, failure = _state(spec, seen)
    start = tracked.start if tracked else None
    end = tracked.end if tracked else None
    if start is not None and end is None and state == "Running":
        end = now
    wall = finite(end - start) if start is not None and end is not None else None
    gpus = spec.job.resources.gpus * spec.job.replicas
    url = links.run_url(ui, tracked.experiment_id, tracked.run_id) if ui and tracked else None
    return RunResult(
        name=spec.name_for(seen.attempt) if seen and seen.spec_hash == spec.spec_hash else spec.name,
        overrides=spec.overrides, state=state, reason=reason,
        attempt=seen.attempt if seen and seen.spec_hash == spec.spec_hash else 0, wall_seconds=wall,
        gpu_hours=(wall * gpus / 3600 if wall is not None else None),
        metrics=dict(tracked.metrics) if tracked else {}, run_id=tracked.run_id if tracked else None, url=url,
        failure=failure, gate=tracked.gate if tracked else "", gate_reason=tracked.gate_reason if tracked else "")


def _log_tail(tracker: LogStore, run_id: str | None) -> tuple[str, ...]:
    if run_id is None:
        return ()
    kept = tracker.kept_logs(run_id) or {}
    text = next((kept[k] for k in sorted(kept)), "")
    return tuple(text.splitlines()[-LOG_LINES:])


def _enrich(rows: list[RunResult], tracker: ReportsResults, tracked: dict[str, TrackedRun]) -> list[RunResult]:
    """Add the kept logs of a few failed runs and the promotion of a few registered versions."""
    from dataclasses import replace

    failed = 0
    promoted = 0
    out: list[RunResult] = []
    for given in rows:
        row, run = given, tracked.get(given.run_id or "")
        if row.state == "Failed" and failed < FAILED_LOGS and isinstance(tracker, LogStore):
            failed += 1
            row = replace(row, log_tail=_log_tail(tracker, row.run_id))
        if run is not None and run.model_version and promoted < PROMOTIONS:
            promoted += 1
            row = replace(row, promotion=tracker.promotion(run.model_version))
        out.append(row)
    return out


def _parent_reference(parent: Desired | None, experiment: str, latest: dict[tuple[str, str], TrackedRun],
                      gate_metric: str | None, mode: str) -> Reference | None:
    if parent is None or gate_metric is None:
        return None
    keys = _identity(parent.runs, experiment)
    label = f"{parent.snapshot.commit[:12]}"
    if not keys:
        return Reference(label, None, readable=False, why_not="the experiment did not exist there")
    rows = [RunResult(name=r.run_id, overrides=(), state="Succeeded" if r.status == "FINISHED" else r.status,
                      metrics=r.metrics) for k, r in latest.items() if k in keys]
    best = best_run(rows, gate_metric, mode)
    return Reference(label, finite(best.metrics.get(gate_metric)) if best else None)


def _experiment(ws_ui: str | None, desired: Desired, parent: Desired | None, name: str,
                observed: dict[str, ObservedRun], tracker: Tracker, opts: ReportOptions, built: Built,
                now: float) -> ExperimentReport:
    specs = [r for r in desired.runs if r.experiment == name and not r.validates]
    gate = specs[0].job.validation if specs else None
    gate_metric, mode = (gate.gate_metric, gate.mode) if gate else (None, "max")
    extra = [str(m) for m in ((specs[0].config.get("expctl") or {}).get("report") or {}).get("metrics") or []] \
        if specs and isinstance(specs[0].config.get("expctl"), dict) else []
    results = tracker if isinstance(tracker, ReportsResults) else None
    tracked_all = results.experiment_runs(name) if results else []
    if gate is not None and gate.by_platform:
        tracked_all = with_validation(tracked_all, VALIDATION_PREFIX)
    latest = _latest(tracked_all)
    rows = [_row(s, observed.get(s.run_key), latest.get((s.run_key, s.spec_hash)), ws_ui, now) for s in specs]
    by_id = {r.run_id: r for r in tracked_all}
    if results is not None:
        rows = _enrich(rows, results, by_id)
    champion = None
    if gate and gate.register_as and results is not None:
        mine = {r.run_id for r in rows if r.run_id}  # holding the alias, one of these is compared with its forerunner
        champion = results.champion(gate.register_as, gate.promote_alias or gate.alias or "champion",
                                    gate.gate_metric, mine)
        if champion is not None and ws_ui:
            champion = Reference(champion.label, champion.value, champion.readable, champion.why_not,
                                 links.model_url(ws_ui, gate.register_as))
    exp_id = next((r.experiment_id for r in tracked_all), None)
    url = links.experiment_url(ws_ui, exp_id) if ws_ui and exp_id else None
    plots: list[Plot] = []
    if opts.out is not None and results is not None and any(s.overrides for s in specs) and gate is not None:
        plots = _plots(name, rows, gate, results, tracked_all, desired.snapshot.commit, ws_ui, opts, built)
    return experiment_report(name, gate_metric, mode, extra, rows, champion=champion,
                             parent=_parent_reference(parent, name, latest, gate_metric, mode), url=url, plots=plots)


def _sweep_parent(tracked: list[TrackedRun], rows: list[RunResult], commit: str) -> TrackedRun | None:
    """The sweep's parent run of ``commit``; else (its points were launched at an earlier commit) the parent
    run of the newest of its points."""
    parents = {t.run_id: t for t in tracked if t.parent}
    here = next((t for t in parents.values() if t.commit == commit), None)
    if here is not None:
        return here
    ids = {r.run_id for r in rows if r.run_id}
    points = sorted((t for t in tracked if t.run_id in ids and t.parent_run_id in parents),
                    key=lambda t: t.start or 0.0)
    return parents[points[-1].parent_run_id] if points else None


def _plots(name: str, rows: list[RunResult], gate: ValidationGate, results: ReportsResults,
           tracked: list[TrackedRun], commit: str, ui: str | None, opts: ReportOptions, built: Built) -> list[Plot]:
    """The sweep's plots: learning curves of the gate metric (of the training's own metric when the platform
    validates: its validation is one value per run), and the gate metric against each swept parameter."""
    assert opts.out is not None
    curve_metric = gate.metric.removeprefix(VALIDATION_PREFIX) if gate.by_platform else gate.gate_metric
    top = [r for r in ranked(rows, gate.gate_metric, gate.mode) if r.run_id][:CURVES]
    curves = {" ".join(r.overrides) or r.name: results.metric_history(str(r.run_id), curve_metric) for r in top}
    files = report_plots.experiment_plots(opts.out, name, gate.gate_metric, curves, rows, curve_metric)
    parent = _sweep_parent(tracked, rows, commit)
    plots = []
    for title, path in files:
        built.images[path.name] = path.read_bytes()
        url = None
        if parent is not None and ui:
            query = urlencode({"path": f"expctl-report/{path.name}", "run_uuid": parent.run_id})
            url = f"{ui.rstrip('/')}/get-artifact?{query}"
        plots.append(Plot(title, path.name, url))
    if parent is not None and opts.log_plots and files:
        try:
            results.log_report_files(parent.run_id, [p for _, p in files])
        except ExpctlError as exc:
            built.warnings.append(f"plots of {name} not logged to MLflow: {exc}")
    return plots


def _server_ui(tracking_uri: str) -> str | None:
    """A tracking server's own UI, unless its address holds credentials (a report must never show them)."""
    if uri_secrets(tracking_uri) or "@" in tracking_uri:
        return None
    return links.ui_address(tracking_uri, "") or None


def build_report(ws: Workspace, opts: ReportOptions, now: float | None = None) -> Built:
    desired = _desired_at(ws.repo, opts.rev)
    commit = desired.snapshot.commit
    parent_rev = parent_commit(ws.repo, commit)
    built = Built(Report(commit, parent_rev, ()))
    parent: Desired | None = None
    if parent_rev is not None:
        try:
            parent = _desired_at(ws.repo, parent_rev)
        except ExpctlError as exc:
            built.warnings.append(f"the parent commit {parent_rev[:12]} is not comparable: {exc}")
    names = sorted({r.experiment for r in desired.runs if not r.validates}) if opts.all_experiments \
        else changed_experiments(desired, parent)
    settings = desired.settings
    backend_name = ws.backend_name(settings, opts.backend)
    backend = ws.open_backend(backend_name, settings)
    tracker = ws.open_tracker(settings, backend_name)
    observed = {r.run_key: r for r in observe(backend, tracker)}
    ui = settings.ui_url or _server_ui(ws.resolve_tracking_uri(settings))
    if opts.out is not None:
        opts.out.mkdir(parents=True, exist_ok=True)
    clock = time.time() if now is None else now
    experiments = tuple(_experiment(ui, desired, parent, n, observed, tracker, opts, built, clock) for n in names)
    built.report = Report(commit, parent_rev, experiments, ui)
    return built
