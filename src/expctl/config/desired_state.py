"""The user's repository as desired runs: snapshot → settings → compose → sweep → RunSpecs.

Everything is composed and validated before anything is written anywhere: ``load_desired`` either returns
every desired run or raises ConfigErrors listing every problem it found.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from expctl.config import codeowners, job_spec, safe_yaml, schema, schema_data, source
from expctl.config.compose import Composer
from expctl.config.prescan import defaults_errors, parse_configs, resolver_errors, searchpath_errors
from expctl.config.schema import Settings
from expctl.core import backend_registry, naming, pipeline, sweep
from expctl.core.desired import run_spec, validation_spec
from expctl.core.errors import ConfigError, ConfigErrors, ExpctlError
from expctl.core.inputs import InputDecl
from expctl.core.model import DatasetRef, JobSpec, RunSpec
from expctl.core.sanitize import one_line
from expctl.data import scan
from expctl.data.manifest import combined_digest
from expctl.data.materialize import Materializer, data_root
from expctl.data.scan import DataError

MAX_GROUP_COMBINATIONS = 500


@dataclass
class Desired:
    snapshot: source.Snapshot
    settings: Settings
    runs: list[RunSpec] = field(default_factory=list)
    experiments: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def experiment_files(files: dict[str, bytes]) -> dict[str, str]:
    """``{experiment name: file}`` for every experiments/**/*.yaml (or .yml)."""
    found: dict[str, str] = {}
    errors: list[ConfigError] = []
    for path in sorted(files):
        if not path.startswith("experiments/") or not path.endswith((".yaml", ".yml")):
            continue
        name = str(PurePosixPath(path).relative_to("experiments").with_suffix(""))
        problem = naming.experiment_name_error(name)
        if problem:
            errors.append(ConfigError(problem, file=path))
            continue
        clash = next((other for n, other in found.items() if naming.slug(n) == naming.slug(name)), None)
        if clash:
            errors.append(ConfigError(f"duplicate experiment name '{naming.slug(name)}' (also {clash})",
                                      file=path))
            continue
        found[name] = path
    if errors:
        raise ConfigErrors(errors)
    return found


def _surrogates(name: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in name)


def load_settings(files: dict[str, bytes]) -> Settings:
    data = files.get("expctl.yaml")
    if data is None:
        if any(p.startswith("expctl.yaml/") for p in files):
            raise ConfigError("a directory, not a file: the project settings were not read", file="expctl.yaml")
        return Settings()
    return schema.parse_settings(safe_yaml.load(data, "expctl.yaml"))


def load_desired(snap: source.Snapshot, only: str | None = None, point: Sequence[str] | None = None) -> Desired:
    """Compose every experiment of the snapshot (or only ``only``) into desired runs, or raise all errors;
    with ``point``, only the sweep points of those overrides are composed (``describe`` of one run: each point
    is a composition of its own, a thousand of them most of its time)."""
    t0 = time.perf_counter()
    files = source.read_files(snap)
    links, gitlinks = source.special_entries(snap)
    if gitlinks:  # silently without its experiments (or conf/ groups) otherwise
        raise ConfigErrors([ConfigError("a git submodule: its files are in another repository, not in this commit "
                                        "(configs are read from one commit); commit the files themselves", file=p)
                            for p in gitlinks])
    undecodable = sorted(p for p in files if _surrogates(p))
    if undecodable:  # git keeps bytes; Hydra, YAML and MLflow need text: one line each, never a traceback
        raise ConfigErrors([ConfigError("not a UTF-8 file name (git stores it as bytes): rename it", file=one_line(p))
                            for p in undecodable])
    if not any(p.startswith("experiments/") for p in files):
        raise ConfigError("no experiments/ directory at this commit (nothing is desired)", file="experiments/")
    docs, errors = parse_configs({p: d for p, d in files.items() if p not in links})
    errors[:0] = [ConfigError(f"a symbolic link (to {files[p].decode(errors='replace')[:200]!r}): configs are "
                              "read from git, where a link is not followed; commit the file itself", file=p)
                  for p in links]
    if errors:
        raise ConfigErrors(errors)
    settings = load_settings(files)
    errors = resolver_errors(docs, settings.allow_resolvers) + searchpath_errors(docs) + defaults_errors(docs)
    errors += codeowners.errors(files, settings.teams)
    if errors:
        raise ConfigErrors(errors)
    names = experiment_files(files)
    desired = Desired(snap, settings, experiments=list(names))
    desired.timings["read"] = time.perf_counter() - t0
    digests: dict[tuple[str, ...], str] = {}
    data = Materializer(data_root(snap.repo, settings.data_root), snap.repo / ".expctl")
    with Composer(files, settings.allow_resolvers) as composer:
        for name, file in names.items():
            if only is not None and name != only:
                continue
            try:
                desired.runs.extend(_expand(composer, name, file, settings, snap, digests, data,
                                            None if point is None else tuple(sorted(point))))
            except ConfigErrors as exc:
                errors.extend(exc.errors)
            except ConfigError as exc:
                errors.append(exc)
    if not errors:
        desired.runs, graph = _pipelines(desired.runs, names, {t.name for t in settings.teams if t.share})
        errors.extend(graph)
    errors.extend(duplicate_names(desired.runs))
    errors.extend(backend_registry.run_errors(desired.runs, settings))
    if errors:  # a project-wide error (expctl.yaml's code_paths) is found once per experiment: say it once
        raise ConfigErrors(list({str(e): e for e in errors}.values()))
    data.commit()  # manifests and the hash cache: written only when every declaration materialized
    desired.timings["compose"] = time.perf_counter() - t0
    return desired


def _pipelines(runs: list[RunSpec], files: dict[str, str],
               shared: set[str]) -> tuple[list[RunSpec], list[ConfigError]]:
    """The runs in dependency order (an upstream experiment's before its consumers'), ``each`` inputs
    expanded, and the errors of the inputs checked against each other and against the teams that share their
    runs (``core.pipeline.graph_errors``)."""
    inputs: dict[str, tuple[InputDecl, ...]] = {}
    points: dict[str, int] = {}
    teams: dict[str, str | None] = {}
    producers: dict[str, set[str]] = {}  # model name → the experiments whose gate registers it
    outputs: dict[str, str] = {}  # experiment → the dataset its outputs declare
    for run in runs:
        teams.setdefault(run.experiment, run.job.team)
        if run.job.outputs and not run.validates:
            outputs[run.experiment] = run.job.outputs
        if run.job.validation is not None and run.job.validation.register_as:
            producers.setdefault(run.job.validation.register_as, set()).add(run.experiment)
        if not run.validates:
            points[run.experiment] = points.get(run.experiment, 0) + 1
            if run.job.inputs:
                inputs.setdefault(run.experiment, run.job.inputs)
    if not inputs and not outputs:  # no pipelines: the runs as they were
        return runs, []
    errors = pipeline.graph_errors(inputs, files, points, teams, shared, outputs)
    if errors or not inputs:
        return runs, errors
    edges = pipeline.with_producers(pipeline.edges_of(inputs, outputs), inputs, producers)
    ranked = {name: i for i, name in enumerate(pipeline.order(list(files), edges))}
    ordered = sorted(runs, key=lambda r: ranked.get(r.experiment, len(ranked)))  # stable: sweep order kept
    return pipeline.expand_each(ordered), []


def duplicate_names(runs: Sequence[RunSpec]) -> list[ConfigError]:
    """Two desired runs with one name would be one object planned twice: never let that reach a plan."""
    seen: dict[str, RunSpec] = {}
    errors = []
    for run in runs:
        other = seen.get(run.name)
        seen.setdefault(run.name, run)
        if other is not None:
            errors.append(ConfigError(f"two runs would be named {run.name} ({' '.join(other.overrides) or '-'} "
                                      f"and {' '.join(run.overrides) or '-'})", file=run.source_file,
                                      key="hydra.sweeper.params"))
    return errors


def _expand(composer: Composer, name: str, file: str, settings: Settings, snap: source.Snapshot,
            digests: dict[tuple[str, ...], str], data: Materializer,
            point_wanted: tuple[str, ...] | None = None) -> Iterator[RunSpec]:
    exp = composer.load(name, file)
    combos = sweep.size([len(a.elements) for a in exp.axes if a.group])
    if combos > MAX_GROUP_COMBINATIONS:  # each one is a Hydra composition (~40 ms): bound the time up front
        raise ConfigError(f"the sweep combines {combos:,} sets of group options, over the limit of "
                          f"{MAX_GROUP_COMBINATIONS:,} compositions (sweep fewer groups, or values instead)",
                          file=file, key="hydra.sweeper.params")
    jobs: dict[str, JobSpec] = {}
    base = composer.point_config(exp, [0] * len(exp.axes))
    block = schema.parse_block(base.get("expctl"), file)
    cap = block.max_runs or settings.max_runs_per_experiment
    try:
        indices = list(sweep.points([len(a.elements) for a in exp.axes], cap))
    except sweep.SweepTooLarge as exc:
        raise ConfigError(str(exc), file=file, key="hydra.sweeper.params") from exc
    elements = [a.elements for a in exp.axes]
    key_axes = [a.sweep for a in exp.axes]
    for point in indices:
        overrides = sweep.point_overrides(elements, point)
        if point_wanted is not None and tuple(sorted(overrides)) != point_wanted:  # as RunSpec keeps them
            continue
        config = composer.point_config(exp, point)
        job = _job(config.get("expctl"), file, settings, jobs, snap.repo)
        if job.code_paths not in digests:
            digests[job.code_paths] = _code_digest(snap, job.code_paths, config.get("expctl"), file)
        datasets = _datasets(config.get("data"), file, data)
        spec = run_spec(
            experiment=name, source_file=file, overrides=overrides, config=config, job=job,
            key_overrides=[o for o, is_key in zip(overrides, key_axes, strict=True) if is_key],
            commit=snap.commit, code_digest=digests[job.code_paths], datasets=datasets,
            data_digest=combined_digest({d.name: d.digest for d in datasets}),
        )
        yield spec
        validation = validation_spec(spec)
        if validation is not None:
            _check_held_out(job, datasets, file)
            yield validation


def _code_digest(snap: source.Snapshot, code_paths: tuple[str, ...], block: Any, file: str) -> str:
    try:
        return source.code_digest(snap, code_paths)
    except source.MissingCodePath as exc:
        own = isinstance(block, dict) and block.get("code_paths")  # the experiment's own, else expctl.yaml's
        at = "the working tree" if snap.worktree else f"commit {snap.commit[:12]}"
        raise ConfigError(f"{exc.path!r} does not exist at {at}: the runs' code digest would never see a change "
                          "(a typo?)", file=file if own else "expctl.yaml",
                          key="expctl.code_paths" if own else "code_paths") from None


def _check_held_out(job: JobSpec, datasets: tuple[DatasetRef, ...], file: str) -> None:
    """Validation by the platform needs a held-out split with items in it (or a command of the user's)."""
    gate = job.validation
    if gate is None or gate.command:
        return
    if not datasets:
        raise ConfigError("validation by the platform needs a dataset with a held-out split (a data: block), "
                          "or a validation command", file=file, key="expctl.validation.split")
    if not dict(datasets[0].splits).get(gate.split or "test"):
        raise ConfigError(f"the held-out split {gate.split!r} of dataset {datasets[0].name!r} has no items "
                          "(see data.split)", file=file, key="expctl.validation.split")


def _datasets(block: Any, file: str, data: Materializer) -> tuple[DatasetRef, ...]:
    """The materialized dataset of an experiment's ``data:`` block (none without one)."""
    if block is None:
        return ()
    key = naming.canonical_json(block)
    decl = data.declarations.get(key)
    if decl is None:  # a sweep rarely touches its data: block — validate each distinct one once
        decl = data.declarations[key] = schema_data.parse_data(block, file)
    try:
        _manifest, ref = data.materialize(decl)
    except DataError as exc:
        raise ConfigError(f"dataset {decl.name!r}: {exc}", file=file, key="data") from exc
    return (ref,)


def _job(block: Any, file: str, settings: Settings, cache: dict[str, JobSpec], repo: Path) -> JobSpec:
    """Validate the expctl block once per distinct content (sweeps rarely touch it). A relative
    ``checkpoints.dir`` means the repository's path (whatever directory expctl runs in, and not the job's
    worktree); it is not part of the spec hash, so resolving it changes no run's identity."""
    key = naming.canonical_json(block)
    job = cache.get(key)
    if job is None:
        job = job_spec.to_job_spec(schema.parse_block(block, file), settings, file)
        where = job.checkpoints.dir
        if where and not scan.is_url(where) and not os.path.isabs(where):
            job = replace(job, checkpoints=replace(job.checkpoints, dir=str((repo / where).resolve())))
        cache[key] = job
    return job


__all__ = ["Desired", "ExpctlError", "load_desired"]
