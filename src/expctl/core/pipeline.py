"""Pipelines: experiments that consume other experiments' runs, the datasets their runs produced
(``outputs:``) and registered models (``expctl.inputs``).

Pure. The dependency graph of experiments (its order, its cycles, the checks of the declarations against it),
the expansion of ``each`` inputs into one downstream run per upstream point, and the resolution of every input
against what is observed (a ``best`` input: the succeeded upstream run with the best final metric, from the
observed runs' ``metrics``): a resolved input becomes part of the downstream run's spec hash; an input not
resolvable yet holds the run (``waiting``), an upstream that failed for good blocks it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from expctl.core.desired import validation_spec
from expctl.core.errors import ConfigError
from expctl.core.inputs import DATASET, EXPERIMENT, MODEL, InputDecl, ModelVersion, ResolvedInput, output_uri
from expctl.core.model import Action, FailureClass, ObservedRun, Phase, Reason, RunSpec
from expctl.core.naming import canonical_json, run_name, sha256_hex


def edges_of(inputs: Mapping[str, Sequence[InputDecl]],
             outputs: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """``{experiment: the experiments it consumes}``, a produced dataset's producer included (``outputs``:
    experiment → the dataset it declares); model inputs are not edges: a registry sits between."""
    made = producers_of(outputs or {})
    return {name: sorted({d.experiment for d in decls if d.experiment is not None}
                         | {p for d in decls if d.dataset is not None for p in made.get(d.dataset, [])})
            for name, decls in inputs.items()}


def producers_of(outputs: Mapping[str, str]) -> dict[str, list[str]]:
    """``{dataset: the experiments whose outputs declare it}`` (more than one is an error: ``graph_errors``)."""
    made: dict[str, list[str]] = {}
    for experiment, dataset in sorted(outputs.items()):
        made.setdefault(dataset, []).append(experiment)
    return made


def with_producers(edges: Mapping[str, Sequence[str]], inputs: Mapping[str, Sequence[InputDecl]],
                   producers: Mapping[str, Collection[str]]) -> dict[str, list[str]]:
    """``edges`` plus, for ordering only, the experiments whose gate registers a model an experiment consumes
    (``producers``: model name → those experiments): the plan lists a pretrain before the finetune that waits for
    its alias. Not checked for cycles: a registry sits between, nothing waits on the other experiment's run."""
    out = {name: list(ups) for name, ups in edges.items()}
    for name, decls in inputs.items():
        extra = {p for d in decls if d.model is not None for p in producers.get(d.model, ()) if p != name}
        out[name] = sorted({*out.get(name, []), *extra})
    return out


def find_cycle(edges: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle of the graph as a path that ends where it starts (``[a, b, a]``), or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt, path)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start, [])) is not None:
            return found
    return None


def order(names: Sequence[str], edges: Mapping[str, Sequence[str]]) -> list[str]:
    """``names`` in dependency order (an upstream before its consumers), otherwise in their given order: with
    no edges the order is unchanged. The graph must be acyclic (``find_cycle``)."""
    position = {n: i for i, n in enumerate(names)}
    done: set[str] = set()
    out: list[str] = []

    def place(node: str) -> None:
        if node in done:
            return
        done.add(node)
        for up in sorted(edges.get(node, ()), key=lambda n: position.get(n, len(position))):
            if up in position:
                place(up)
        out.append(node)

    for name in names:
        place(name)
    return out


def graph_errors(inputs: Mapping[str, Sequence[InputDecl]], files: Mapping[str, str],
                 points: Mapping[str, int], teams: Mapping[str, str | None] | None = None,
                 shared: Collection[str] = (), outputs: Mapping[str, str] | None = None) -> list[ConfigError]:
    """The declarations checked against each other: an unknown upstream experiment, an experiment input on a
    sweep without ``each`` or ``best``, ``each`` on an upstream that is not a sweep, a dataset no experiment (or
    a sweep, or two experiments) produces, a cycle. ``files``: every experiment's file; ``points``: the number
    of training runs of each experiment that was expanded; ``teams``: each experiment's team (when teams are
    declared), ``shared``: the teams that share their runs — an input from another team's experiment is refused
    unless that team shares; ``outputs``: experiment → the dataset its ``outputs`` declares."""
    team_of = teams or {}
    made = producers_of(outputs or {})
    errors: list[ConfigError] = []
    for dataset, experiments in made.items():
        for other in experiments[1:]:
            errors.append(ConfigError(f"dataset {dataset!r} is produced by {experiments[0]!r} too: a dataset "
                                      "has one producer", file=files[other], key="expctl.outputs.dataset"))
    for name, decls in inputs.items():
        for d in decls:
            if d.dataset is not None:
                errors.extend(_dataset_errors(name, d, made, files, points, team_of, shared))
                continue
            if d.experiment is None:
                continue
            key = f"expctl.inputs.{d.name}.experiment"
            if d.experiment not in files:
                errors.append(ConfigError(f"no experiment named {d.experiment!r} (experiments/{d.experiment}.yaml "
                                          "does not exist)", file=files[name], key=key))
                continue
            mine, theirs = team_of.get(name), team_of.get(d.experiment)
            if theirs is not None and theirs != mine and theirs not in shared:
                errors.append(ConfigError(f"{d.experiment!r} belongs to team {theirs}, which does not share its "
                                          f"runs (share: true in its block of expctl.yaml's teams:)",
                                          file=files[name], key=key))
                continue
            count = points.get(d.experiment)
            if count is None:
                continue
            if d.each and count < 2:
                errors.append(ConfigError(f"each: {d.experiment!r} is not a sweep (it has one run): drop each",
                                          file=files[name], key=f"expctl.inputs.{d.name}.each"))
            elif not d.each and d.best is None and count > 1:
                errors.append(ConfigError(f"{d.experiment!r} is a sweep of {count} runs: say which, with each: true "
                                          "(one run per point) or best: {metric: ..., mode: max}", file=files[name],
                                          key=key))
    cycle = find_cycle({n: [u for u in ups if u in files] for n, ups in edges_of(inputs, outputs).items()})
    if cycle:
        first = next(d for d in inputs[cycle[0]] if d.experiment == cycle[1]
                     or (d.dataset is not None and cycle[1] in made.get(d.dataset, [])))
        errors.append(ConfigError(f"a cycle of inputs: {' → '.join(cycle)}", file=files[cycle[0]],
                                  key=f"expctl.inputs.{first.name}.{'dataset' if first.dataset else 'experiment'}"))
    return errors


def _dataset_errors(name: str, d: InputDecl, made: Mapping[str, Sequence[str]], files: Mapping[str, str],
                    points: Mapping[str, int], team_of: Mapping[str, str | None],
                    shared: Collection[str]) -> list[ConfigError]:
    key = f"expctl.inputs.{d.name}.dataset"
    producers = made.get(d.dataset or "", [])
    if not producers:
        return [ConfigError(f"no experiment produces dataset {d.dataset!r} (none declares outputs: "
                            f"{{dataset: {d.dataset}}})", file=files[name], key=key)]
    producer = producers[0]
    mine, theirs = team_of.get(name), team_of.get(producer)
    if theirs is not None and theirs != mine and theirs not in shared:
        return [ConfigError(f"dataset {d.dataset!r} is produced by {producer!r} of team {theirs}, which does not "
                            "share its runs (share: true in its block of expctl.yaml's teams:)",
                            file=files[name], key=key)]
    if points.get(producer, 1) > 1:
        return [ConfigError(f"dataset {d.dataset!r} is produced by {producer!r}, a sweep of {points[producer]} "
                            "runs: a produced dataset has one producer run", file=files[name], key=key)]
    return []


def _trains(runs: Sequence[RunSpec], experiment: str) -> list[RunSpec]:
    return [r for r in runs if r.experiment == experiment and not r.validates]


def expand_each(runs: Sequence[RunSpec]) -> list[RunSpec]:
    """Each run with an ``each`` input becomes one run per point of that upstream sweep (the run key and name
    say which point); the validation job of such a run follows it. Runs without one are kept as they are."""
    out: list[RunSpec] = []
    for spec in runs:
        each = [d for d in spec.job.inputs if d.each and d.experiment is not None]
        if not each or spec.validates:
            if not spec.validates or not any(d.each for d in spec.job.inputs):
                out.append(spec)
            continue
        variants = [spec]
        for decl in each:
            ups = _trains(runs, decl.experiment or "")
            if not ups:  # its upstream was not composed (``load_desired(only=...)``): it waits, unexpanded
                continue
            variants = [_for_point(v, decl.name, up.run_key) for v in variants for up in ups]
        for variant in variants:
            out.append(variant)
            validation = validation_spec(variant)
            if validation is not None:
                out.append(validation)
    return out


def _for_point(spec: RunSpec, input_name: str, upstream_key: str) -> RunSpec:
    key = sha256_hex(f"{spec.run_key}:{input_name}:{upstream_key}")[:32]
    return replace(spec, run_key=key, name=run_name(spec.experiment, key),
                   upstream=(*spec.upstream, (input_name, upstream_key)))


@dataclass(frozen=True)
class Hold:
    """Why a run cannot start: an action that writes nothing (``noop``/waiting, ``blocked``/upstream-failed)."""

    action: Action
    reason: Reason
    detail: str


def final_failure(run: ObservedRun, spec: RunSpec) -> bool:
    """A finished run that will not be retried: cancelled, or failed with no retry left."""
    if run.cancelled or run.phase is Phase.CANCELLED:
        return True
    policy = spec.job.retries
    return run.phase is Phase.FAILED and ((run.failure or FailureClass.CODE) not in policy.on
                                          or run.attempt >= policy.max_attempts)


def _latest(observed: Sequence[ObservedRun]) -> dict[tuple[str, str], ObservedRun]:
    """The newest attempt of each (run key, spec hash)."""
    latest: dict[tuple[str, str], ObservedRun] = {}
    for run in observed:
        have = latest.get((run.run_key, run.spec_hash))
        if have is None or (run.attempt, run.created_at or 0.0) > (have.attempt, have.created_at or 0.0):
            latest[(run.run_key, run.spec_hash)] = run
    return latest


def resolve(desired: Sequence[RunSpec], observed: Sequence[ObservedRun],
            models: Mapping[str, ModelVersion | None], gated: bool = False) -> tuple[list[RunSpec], dict[str, Hold]]:
    """Resolve every run's inputs, in dependency order (``desired`` is): a run whose inputs all resolved gets
    them and a spec hash that includes them (and its validation job follows); the others are held.
    ``models``: each model input's ``wanted`` → the version it names now (None: none yet). ``gated``: the
    backend's scheduler holds a job until its upstream succeeded (``backend_registry.gates_inputs``), so an
    experiment input resolves as soon as its upstream attempt is submitted and has its MLflow run (the
    input's ``after`` names that attempt). Runs without inputs are returned unchanged."""
    latest = _latest(observed)
    by_key: dict[str, RunSpec] = {}
    held: dict[str, Hold] = {}
    out: list[RunSpec] = []
    for given in desired:
        spec = given
        if given.validates and given.validates in by_key and by_key[given.validates].inputs:
            spec = validation_spec(by_key[given.validates]) or given
        elif given.job.inputs and not given.validates:
            got = [_resolve_one(given, d, desired, by_key, held, latest, models, gated) for d in given.job.inputs]
            holds = [g for g in got if isinstance(g, Hold)]
            if holds:  # a failed upstream says more than one still running
                held[given.run_key] = next((h for h in holds if h.action is Action.BLOCKED), holds[0])
            else:
                spec = with_inputs(given, [g for g in got if isinstance(g, ResolvedInput)])
        if not spec.validates:
            by_key[spec.run_key] = spec
        out.append(spec)
    return out, held


def with_inputs(spec: RunSpec, resolved: Sequence[ResolvedInput]) -> RunSpec:
    """The run with its resolved inputs, and a spec hash that includes which upstream each one is."""
    identity = {r.name: r.identity() for r in resolved}
    digest = sha256_hex(canonical_json({"spec": spec.spec_hash, "inputs": identity}))[:20]
    return replace(spec, inputs=tuple(sorted(resolved, key=lambda r: r.name)), spec_hash=digest)


def _resolve_one(spec: RunSpec, decl: InputDecl, desired: Sequence[RunSpec], by_key: Mapping[str, RunSpec],
                 held: Mapping[str, Hold], latest: Mapping[tuple[str, str], ObservedRun],
                 models: Mapping[str, ModelVersion | None], gated: bool) -> ResolvedInput | Hold:
    if decl.model is not None:
        version = models.get(decl.wanted)
        if version is None:
            return Hold(Action.NOOP, Reason.WAITING, f"needs {decl.wanted}")
        return ResolvedInput(decl.name, MODEL, version.model, f"models:/{version.model}/{version.version}",
                             version.run_id, version.spec_hash, version.version)
    if decl.best is not None:
        return _resolve_best(decl, desired, by_key, held, latest)
    if decl.dataset is not None:
        return _resolve_dataset(decl, desired, by_key, held, latest)
    point = dict(spec.upstream).get(decl.name)
    ups = [by_key[r.run_key] for r in _trains(desired, decl.experiment or "") if r.run_key in by_key
           and (point is None or r.run_key == point)]
    if len(ups) != 1:
        return Hold(Action.NOOP, Reason.WAITING, f"needs {decl.wanted} (not among the desired runs)")
    up = ups[0]
    if up.run_key in held:
        return Hold(Action.NOOP, Reason.WAITING, f"needs {up.name}, which waits too")
    run = latest.get((up.run_key, up.spec_hash))
    if run is not None and run.phase is Phase.SUCCEEDED and not run.cancelled and run.mlflow_run_id:
        return ResolvedInput(decl.name, EXPERIMENT, up.experiment, f"runs:/{run.mlflow_run_id}",
                             run.mlflow_run_id, up.spec_hash)
    if run is not None and final_failure(run, up):
        return _upstream_failed(run)
    if (gated and run is not None and run.live and run.mlflow_run_id and not run.cancelled
            and run.phase in (Phase.PENDING, Phase.RUNNING)):
        return ResolvedInput(decl.name, EXPERIMENT, up.experiment, f"runs:/{run.mlflow_run_id}",
                             run.mlflow_run_id, up.spec_hash, after=run.name)
    state = "not started" if run is None else run.phase.value.lower()
    return Hold(Action.NOOP, Reason.WAITING, f"needs {up.name} ({state})")


def _upstream_failed(run: ObservedRun) -> Hold:
    """The consumer of an upstream run that failed for good (or was cancelled): blocked, naming it."""
    why = "was cancelled" if run.cancelled or run.phase is Phase.CANCELLED else "failed"
    return Hold(Action.BLOCKED, Reason.UPSTREAM_FAILED, f"upstream {run.name} {why}: {run.message}".rstrip(": "))


def _resolve_dataset(decl: InputDecl, desired: Sequence[RunSpec], by_key: Mapping[str, RunSpec],
                     held: Mapping[str, Hold], latest: Mapping[tuple[str, str], ObservedRun]) -> ResolvedInput | Hold:
    """The dataset the producer's succeeded run wrote, once its manifest is recorded (its digest is the
    input's identity). Not ahead on a gated scheduler: the digest is known only after the run."""
    ups = [by_key[r.run_key] for r in desired if r.job.outputs == decl.dataset and not r.validates
           and r.run_key in by_key]
    if len(ups) != 1:
        return Hold(Action.NOOP, Reason.WAITING, f"needs {decl.wanted} (its producer is not among the desired runs)")
    up = ups[0]
    if up.run_key in held:
        return Hold(Action.NOOP, Reason.WAITING, f"needs {decl.wanted} from {up.name}, which waits too")
    run = latest.get((up.run_key, up.spec_hash))
    if run is not None and run.phase is Phase.SUCCEEDED and not run.cancelled and run.mlflow_run_id:
        if not run.output_digest:
            return Hold(Action.NOOP, Reason.WAITING, f"needs {decl.wanted} from {up.name} (not recorded yet)")
        return ResolvedInput(decl.name, DATASET, decl.dataset or "", output_uri(run.mlflow_run_id, decl.dataset or ""),
                             run.mlflow_run_id, up.spec_hash, digest=run.output_digest, producer=up.experiment)
    if run is not None and final_failure(run, up):
        return _upstream_failed(run)
    state = "not started" if run is None else run.phase.value.lower()
    return Hold(Action.NOOP, Reason.WAITING, f"needs {decl.wanted} from {up.name} ({state})")


def _resolve_best(decl: InputDecl, desired: Sequence[RunSpec], by_key: Mapping[str, RunSpec],
                  held: Mapping[str, Hold], latest: Mapping[tuple[str, str], ObservedRun]) -> ResolvedInput | Hold:
    """The succeeded upstream run whose final ``decl.best`` metric is best (ties: the lowest run key), once every
    upstream run has finished (so the pick does not move while the sweep runs); blocked when none succeeded."""
    ups = [by_key[r.run_key] for r in _trains(desired, decl.experiment or "") if r.run_key in by_key]
    if not ups:
        return Hold(Action.NOOP, Reason.WAITING, f"needs {decl.wanted} (not among the desired runs)")
    scored: list[tuple[float, str, RunSpec, ObservedRun]] = []
    for up in ups:
        if up.run_key in held:
            return Hold(Action.NOOP, Reason.WAITING, f"needs {up.name}, which waits too")
        run = latest.get((up.run_key, up.spec_hash))
        if run is not None and run.phase is Phase.SUCCEEDED and not run.cancelled and run.mlflow_run_id:
            value = dict(run.metrics).get(decl.best or "")
            if value is not None and not math.isnan(value):
                scored.append((-value if decl.mode == "max" else value, up.run_key, up, run))
        elif run is None or not final_failure(run, up):
            state = "not started" if run is None else run.phase.value.lower()
            return Hold(Action.NOOP, Reason.WAITING, f"needs {up.name} ({state})")
    if not scored:
        return Hold(Action.BLOCKED, Reason.UPSTREAM_FAILED,
                    f"upstream {decl.wanted}: no run succeeded with a {decl.best} metric")
    _, _, up, run = min(scored, key=lambda s: (s[0], s[1]))
    return ResolvedInput(decl.name, EXPERIMENT, up.experiment, f"runs:/{run.mlflow_run_id}", run.mlflow_run_id or "",
                         up.spec_hash)


def held_outcome(observed: Sequence[ObservedRun]) -> list[ObservedRun]:
    """A run a gate holds (``held_by``: Kubernetes suspension) for an upstream attempt that failed or was
    cancelled never starts: it is observed ``after_failed``, the upstream's failure and not its own (the plan
    says ``blocked``, or replaces it after the upstream's retry: ``plan_rules``)."""
    by_name = {r.name: r for r in observed}
    out: list[ObservedRun] = []
    for run in observed:
        ups = [by_name[n] for n in run.held_by if n in by_name]
        bad = next((u for u in ups if u.cancelled or u.phase in (Phase.FAILED, Phase.CANCELLED)), None)
        failed = bad is not None and not run.after_failed
        out.append(replace(run, after_failed=True, message=f"never started: upstream {bad.name} "
                           f"{bad.phase.value.lower()}") if failed and bad is not None else run)
    return out


def releasable(observed: Sequence[ObservedRun]) -> list[str]:
    """The runs a gate holds whose upstream attempts all succeeded: the apply that sees it releases them."""
    done = {r.name for r in observed if r.phase is Phase.SUCCEEDED and not r.cancelled}
    return [r.name for r in observed
            if r.held_by and not r.after_failed and not r.cancelled and not r.phase.finished
            and all(n in done for n in r.held_by)]


def after(spec: RunSpec) -> list[str]:
    """The upstream attempts (object names) a gated backend's scheduler must see succeed before the run starts."""
    return sorted({r.after for r in spec.inputs if r.after})


def labels(spec: RunSpec) -> tuple[tuple[str, str], ...]:
    """(input name, label) of a run's resolved inputs: what the run records, and ``upstream-changed`` compares."""
    return tuple((r.name, r.label) for r in spec.inputs)


def model_inputs(desired: Sequence[RunSpec]) -> list[InputDecl]:
    """The distinct model inputs the desired runs declare (each is looked up once in the registry)."""
    found: dict[str, InputDecl] = {}
    for spec in desired:
        for decl in spec.job.inputs:
            if decl.model is not None:
                found.setdefault(decl.wanted, decl)
    return list(found.values())
