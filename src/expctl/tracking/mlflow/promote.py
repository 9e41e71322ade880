"""The platform's validation decides the gate, and alias rules move registry aliases (MLflow side).

``apply_validated_gate``: a succeeded validation job's metrics (``validation.*``, logged into the training run)
decide the training run's gate. ``promote``: ``promote: {alias, when: better_than_current}`` moves the alias
only when the new version beats the version holding it on the gate metric (a tie keeps the holder); the
comparison is recorded on both versions either way. ``move_alias``: ``alias`` goes to the best of the
experiment's current points (``alias_to: best``). ``holder``: what the registry says about the version holding
an alias — its exact gate metric (recorded exactly since ``expctl.metrics_exact``; an older version's rounded
record is made exact from its validation run when it can be). ``version_lineage_tags``: what a registered
version carries besides commit and spec hash — its datasets' digests and its validation metrics, exactly.
``apply_gate``: a run's gate verdict, registering a passing model in the Model Registry once per run, also when
an answer is lost or a create resent (``_create_version_once``: the lowest of the run's versions is kept). The
verdicts themselves are policy (``core/gate``): here they are read from MLflow and recorded in it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from expctl.core.errors import TrackingError
from expctl.core.gate import FAILED, GateResult, Holder, Promotion, evaluate, promotion, sweep_alias
from expctl.core.model import VALIDATION_PREFIX, ValidationGate
from expctl.tracking.mlflow import tags as g
from expctl.tracking.mlflow.session import MlflowSession


def apply_validated_gate(session: MlflowSession, run: Any, gate: ValidationGate,
                         points: Collection[tuple[str, str]] = ()) -> None:
    """``run`` is a succeeded validation job: its own metrics (as ``validation.<name>``) decide the gate of the
    training run it validated — whatever the training run logged itself, even under the same names."""
    target = run.data.tags.get("expctl.validates_run_id")
    if not target:
        session.set_run_tags(run.info.run_id, {"expctl.gate": FAILED,
                                               "expctl.gate_reason": "no training run recorded to validate"})
        return
    measured = {VALIDATION_PREFIX + k: v for k, v in run.data.metrics.items() if not k.startswith("system/")}
    result = apply_gate(session, target, gate, measured, points)
    session.set_run_tags(run.info.run_id, {"expctl.gate": result.outcome,
                                           "expctl.gate_reason": f"training run {target}: {result.reason}"})


EXACT = "expctl.metrics_exact"  # a version's expctl.metric.* tags are exact (repr), not rounded to 6 digits


def version_lineage_tags(run: Any, metrics: Mapping[str, float]) -> dict[str, str]:
    tags, out = run.data.tags, {EXACT: "true"}
    for key in ("expctl.data_digest", "expctl.datasets", "expctl.source_file", "expctl.experiment", "expctl.project"):
        if tags.get(key):
            out[key] = tags[key]
    for key, value in sorted(metrics.items()):
        if key.startswith(VALIDATION_PREFIX):
            out[f"expctl.metric.{key}"] = repr(float(value))  # round-trips: compared exactly
    return out


def _holder(client: Any, name: str, alias: str) -> Any:
    try:
        return client.get_model_version_by_alias(name, alias)
    except Exception as exc:  # MLflow says RESOURCE_DOES_NOT_EXIST (or INVALID_PARAMETER_VALUE) for no holder
        code, text = str(getattr(exc, "error_code", "")), str(exc).lower()
        if "RESOURCE_DOES_NOT_EXIST" in code or "INVALID_PARAMETER" in code or "not found" in text:
            return None
        raise


def _validated_value(client: Any, run_id: str, metric: str, recorded: str) -> float | None:
    """The exact value behind an older version's rounded record: the metric of the validation run of
    ``run_id`` whose value rounds to ``recorded`` (None if there is none)."""
    run = client.get_run(run_id)
    own = metric[len(VALIDATION_PREFIX):]
    found = client.search_runs([run.info.experiment_id], max_results=50,
                               filter_string=f"tags.expctl.validates_run_id = {g.quoted(run_id)}")
    for candidate in found:
        value = candidate.data.metrics.get(own)
        if value is not None and f"{float(value):.6g}" == f"{float(recorded):.6g}":
            return float(value)
    return None


def holder(client: Any, version: Any, metric: str, points: Collection[tuple[str, str]] = ()) -> Holder:
    """The version holding an alias: its gate metric as recorded when it was registered (else its run's
    latest value), whether that record is rounded, and whether it is one of the current ``points``."""
    tags = version.tags or {}
    key = (tags.get("expctl.run_key", ""), tags.get("expctl.spec_hash", ""))
    current = key in set(points)
    recorded = tags.get(f"expctl.metric.{metric}")
    if recorded is not None:
        if tags.get(EXACT) == "true":
            return Holder(str(version.version), float(recorded), False, key[0], current)
        exact = _validated_value(client, version.run_id, metric, recorded) if version.run_id else None
        if exact is not None:
            return Holder(str(version.version), exact, False, key[0], current)
        return Holder(str(version.version), float(recorded), True, key[0], current)
    value = client.get_run(version.run_id).data.metrics.get(metric) if version.run_id else None
    return Holder(str(version.version), None if value is None else float(value), False, key[0], current)


def promote(client: Any, name: str, version: str, value: float | None, gate: ValidationGate) -> Promotion:
    """Apply the promotion rule to a newly registered, gate-passing version; record the comparison."""
    alias = str(gate.promote_alias)
    mine = client.get_model_version(name, version)
    if (mine.tags or {}).get("expctl.promotion"):  # decided already (a rerun after a crash): never decide twice
        return Promotion(False, mine.tags["expctl.promotion"])
    current = _holder(client, name, alias)
    held = holder(client, current, gate.gate_metric) if current is not None else None
    verdict = promotion(gate, version, value, held)
    if verdict.moves:
        client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(name, version, "expctl.promotion", verdict.reason)
    client.set_model_version_tag(name, version, "expctl.promotion.outcome", "promoted" if verdict.moves else "kept")
    if held is not None and held.version != version:
        outcome = f"lost {alias} to" if verdict.moves else f"kept {alias} against"
        client.set_model_version_tag(name, held.version, f"expctl.challenge.v{version}",
                                     f"{outcome} version {version}: {verdict.reason}")
    return verdict


def move_alias(client: Any, name: str, version: str, value: float | None, run_key: str, gate: ValidationGate,
               points: Collection[tuple[str, str]]) -> Promotion:
    """``alias``: move it to the new version if it is the best of the experiment's current ``points`` so far
    (``core/gate.sweep_alias``); the verdict is recorded on the version (``expctl.alias``)."""
    alias = str(gate.alias)
    current = _holder(client, name, alias)
    held = holder(client, current, gate.gate_metric, points) if current is not None else None
    verdict = sweep_alias(gate, version, value, run_key, held)
    if verdict.moves:
        client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(name, version, "expctl.alias", verdict.reason)
    return verdict


def apply_gate(session: MlflowSession, run_id: str, gate: ValidationGate,
               metrics: Mapping[str, float] | None = None, points: Collection[tuple[str, str]] = ()) -> GateResult:
    """Evaluate the gate on the run's latest metrics (or on ``metrics``: the platform's validation job's);
    register a passing model; record the verdict. ``points``: the (run key, spec hash) of the experiment's
    current points, among which ``alias`` goes to the best."""
    with session.calling(f"read run {run_id}"):
        run = session.client.get_run(run_id)
    metrics = run.data.metrics if metrics is None else metrics
    result = evaluate(gate, metrics)
    tags = {"expctl.gate": result.outcome, "expctl.gate_reason": result.reason}
    if result.passed and gate.register_as:
        version, moved = _register(session, run, gate, metrics, result.value, points)
        if version is None:
            result = GateResult(FAILED, f"{result.reason}, but the run logged no model to register", result.value)
            tags = {"expctl.gate": result.outcome, "expctl.gate_reason": result.reason}
        else:
            alias = f" (alias {gate.alias})" if moved else ""
            tags["expctl.gate_reason"] += f"; registered {gate.register_as} version {version}{alias}"
            tags["expctl.model_version"] = f"{gate.register_as}/{version}"
    session.set_run_tags(run_id, tags)
    return result


def _register(session: MlflowSession, run: Any, gate: ValidationGate, metrics: Mapping[str, float],
              value: float | None, points: Collection[tuple[str, str]]) -> tuple[str | None, bool]:
    """Register the run's logged model as a new version of ``gate.register_as`` (once per run); whether
    ``alias`` moved to it."""
    name, run_id, tags = str(gate.register_as), run.info.run_id, run.data.tags
    with session.calling(f"register {name}"):
        existing = _versions_of(session, name, run_id)
    if existing:
        version = existing
    else:
        with session.calling(f"register {name}"):
            models = session.client.search_logged_models(
                [run.info.experiment_id], filter_string=f"source_run_id = {g.quoted(run_id)}")
            if not models:
                return None, False
            model = max(models, key=lambda m: (m.name == "model", m.creation_timestamp))
            try:
                session.client.create_registered_model(name)
            except Exception as exc:
                if "ALREADY_EXISTS" not in str(getattr(exc, "error_code", "")):
                    raise
        version_tags = {
            "expctl.run_key": tags.get("expctl.run_key", ""),
            "expctl.spec_hash": tags.get("expctl.spec_hash", ""),
            "expctl.commit": tags.get("expctl.commit", ""),
            "mlflow.source.git.commit": tags.get("expctl.commit", ""),
            "expctl.run_id": run_id,
            "expctl.job": tags.get("expctl.job", ""),
            **version_lineage_tags(run, metrics),  # dataset digests and validation metrics
        }
        # An embedded registry would resolve "models:/<id>" through the process-global tracking
        # URI (an MLflow TODO), not this client's: hand it the model's storage location instead.
        remote = session.tracking_uri.startswith(("http://", "https://"))
        source = f"models:/{model.model_id}" if remote else model.artifact_location
        version = _create_version_once(session, name, run_id, source, version_tags, model.model_id)
    with session.calling(f"register {name}"):
        moved = False
        if gate.alias:
            key = tags.get("expctl.run_key", "")
            moved = move_alias(session.registry_client(), name, version, value, key, gate, points).moves
        if gate.promote_alias:
            promote(session.registry_client(), name, version, value, gate)
    return version, moved


def _versions_of(session: MlflowSession, name: str, run_id: str) -> str | None:
    """The version of ``name`` registered from ``run_id``: the lowest, when a resent create made more than one.
    The others that expctl made from the same source are duplicates: deleted (nothing refers to them yet: the
    alias and promotion are decided after the create), or, if an alias already points at one (an older expctl
    moved it there), tagged ``expctl.duplicate_of`` and left. Deterministic: the lowest is the first created."""
    found = session.client.search_model_versions(f"name = {g.quoted(name)} and run_id = {g.quoted(run_id)}")
    if not found:
        return None
    # expctl's own versions of the run (tag expctl.run_id); a version registered by hand is never touched
    ours = sorted((v for v in found if (v.tags or {}).get("expctl.run_id") == run_id), key=lambda v: int(v.version))
    if not ours:
        return str(min(int(v.version) for v in found))
    keep, *extra = ours
    for duplicate in (v for v in extra if v.source == keep.source):
        if getattr(duplicate, "aliases", None):  # someone relies on it: leave it, say which one it repeats
            session.client.set_model_version_tag(name, str(duplicate.version), "expctl.duplicate_of", str(keep.version))
        else:
            session.client.delete_model_version(name, str(duplicate.version))
    return str(keep.version)


def _create_version_once(session: MlflowSession, name: str, run_id: str, source: str, tags: dict[str, str],
                         model_id: str) -> str:
    """``create_model_version``, exactly once per run although MLflow's client resends a POST whose answer was
    lost (each resend that reached the server is one more version): after the create, or after it failed, the
    run's versions are searched; the lowest is kept (the first the server made) and the others are removed
    (``_versions_of``). A create that failed and left nothing is the failure it was."""
    try:
        with session.calling(f"register {name}"):
            session.client.create_model_version(name, source=source, run_id=run_id, tags=tags, model_id=model_id)
    except TrackingError:
        with session.calling(f"register {name}: look for the version a lost answer made"):
            found = _versions_of(session, name, run_id)
        if found is None:
            raise
        return found
    with session.calling(f"register {name}: look for versions a resent request made"):
        found = _versions_of(session, name, run_id)
    if found is None:  # the server answered with a version it cannot find: not exactly once, say so
        raise TrackingError(f"register {name}: the version created from run {run_id} is not found")
    return found


def registered_versions(session: MlflowSession, page: int) -> list[dict[str, Any]]:
    """Every version expctl registered (tag ``expctl.run_key``) for the session's project (versions registered
    by an older expctl name none: they are listed), with its aliases and its run's metrics."""
    rows: list[dict[str, Any]] = []
    with session.calling("read the Model Registry"):
        for model in session.client.search_registered_models(max_results=page):
            aliases: dict[str, list[str]] = {}
            for alias, version in (getattr(model, "aliases", None) or {}).items():
                aliases.setdefault(str(version), []).append(alias)
            for version in session.client.search_model_versions(f"name = {g.quoted(model.name)}"):
                if "expctl.run_key" not in (version.tags or {}) or not session.owns(version.tags):
                    continue
                metrics = session.client.get_run(version.run_id).data.metrics if version.run_id else {}
                rows.append({"name": model.name, "version": str(version.version),
                             "aliases": sorted(aliases.get(str(version.version), [])),
                             "run_id": version.run_id or "", "job": version.tags.get("expctl.job", ""),
                             "metrics": dict(metrics)})
    return sorted(rows, key=lambda r: (r["name"], int(r["version"])))
