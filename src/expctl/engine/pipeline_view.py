"""What the operator commands show of pipelines: the runs a pipeline holds (``status``) and a run's inputs and
dependents (``describe``), and the unfinished dependents of an experiment (``cancel --cascade``).

Held runs are not objects of any backend: they are found as a plan finds them (the experiments composed at
HEAD, their inputs resolved against what is observed). That costs what a plan costs, so it is done only when
some experiment at HEAD declares ``inputs:`` — a project without pipelines pays one ``git ls-tree``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from expctl.backends.base import Backend
from expctl.config import source
from expctl.config.desired_state import Desired, load_desired
from expctl.core import pipeline
from expctl.core.backend_registry import gates_inputs
from expctl.core.model import Change, ObservedRun, Reason
from expctl.engine.plan import PlanOptions, compute_plan, model_versions
from expctl.engine.workspace import Workspace
from expctl.tracking.base import Tracker

_INPUTS = re.compile(rb"^[ \t]+inputs:", re.MULTILINE)


def declares_inputs(ws: Workspace) -> bool:
    """Whether an experiment at HEAD declares ``inputs:`` (a text scan: no composing)."""
    files = source.read_files(source.snapshot(ws.repo, "HEAD"), ["experiments"])
    return any(_INPUTS.search(data) for data in files.values())


def held_runs(ws: Workspace, backend: Backend, tracker: Tracker | None) -> list[Change]:
    """The runs a pipeline holds now, as the plan shows them: ``waiting`` (an input not there yet) or
    ``blocked`` (an upstream failed for good); none when no experiment declares inputs."""
    if not declares_inputs(ws):
        return []
    desired = load_desired(source.snapshot(ws.repo, "HEAD"))
    plan, _ = compute_plan(desired, backend, tracker, PlanOptions())
    return [c for c in plan.changes if c.reason in (Reason.WAITING, Reason.UPSTREAM_FAILED)
            and c.desired is not None and c.desired.job.inputs]


def dependents_of(desired: Desired, experiments: Sequence[str]) -> list[str]:
    """Every experiment that consumes one of ``experiments``, directly or down the chain (dependency order)."""
    consumers: dict[str, set[str]] = {}
    made = {spec.job.outputs: spec.experiment for spec in desired.runs if spec.job.outputs}
    for spec in desired.runs:
        for decl in spec.job.inputs:
            upstream = decl.experiment if decl.dataset is None else made.get(decl.dataset)
            if upstream is not None:
                consumers.setdefault(upstream, set()).add(spec.experiment)
    found: list[str] = []
    todo = list(experiments)
    while todo:
        for nxt in sorted(consumers.get(todo.pop(0), ())):
            if nxt not in found and nxt not in experiments:
                found.append(nxt)
                todo.append(nxt)
    return found


def describe_inputs(ws: Workspace, experiment: str, run_key: str, backend: str, tracker: Tracker | None,
                    observed: Sequence[ObservedRun]) -> dict[str, Any]:
    """``describe``'s pipeline part: each input the run declares, what it resolves to now (None: not yet),
    and the experiments that consume its experiment (down the chain); empty without pipelines."""
    if not declares_inputs(ws):
        return {"inputs": [], "dependents": []}
    desired = load_desired(source.snapshot(ws.repo, "HEAD"))
    runs = pipeline.resolve(desired.runs, observed, model_versions(tracker, desired.runs), gates_inputs(backend))[0]
    spec = next((s for s in runs if s.run_key == run_key and not s.validates), None)
    inputs = []
    if spec is not None:
        resolved = {r.name: r for r in spec.inputs}
        for decl in spec.job.inputs:
            got = resolved.get(decl.name)
            inputs.append({"name": decl.name, "wants": decl.wanted, "each": decl.each,
                           "resolved": None if got is None else {"label": got.label, "uri": got.uri,
                                                                 "run_id": got.run_id, "spec_hash": got.spec_hash}})
    return {"inputs": inputs, "dependents": dependents_of(desired, [experiment])}
