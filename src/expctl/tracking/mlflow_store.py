"""MLflow tracking: the only module that imports ``mlflow`` (lazily: importing it costs over a second).

One MLflow experiment per expctl experiment; a sweep gets one parent run per (experiment, commit) and one
child run per point. ``ensure_run`` finds-or-creates a run by its tags before the job starts — never two, even
across crashes — and records params, lineage tags and the composed config. ``records`` is what MLflow
remembers (one paginated search); ``sync`` follows job phases into run status and applies the validation gate
to succeeded runs, registering passing models in the Model Registry. Every MLflow failure becomes a
one-line ``TrackingError``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from expctl.errors import TrackingError, truncate
from expctl.model import ObservedRun, Phase, RunSpec, TrackingRef, ValidationGate
from expctl.naming import slug
from expctl.tracking import gate as g
from expctl.tracking import mlflow_ui as ui
from expctl.tracking import provenance as pv
from expctl.tracking.links import run_route
from expctl.tracking.locations import default_artifact_root, default_tracking_uri, ui_server_command

__all__ = ["MlflowStore", "default_artifact_root", "default_tracking_uri", "ui_server_command"]

CONFIG_ARTIFACT = "expctl/config.json"
AUDIT_EXPERIMENT = "expctl-audit"
_CHECK_TIMEOUT_SECONDS = 5.0
_PAGE = 1000


def _quote(value: str) -> str:
    return "'" + value.replace("'", "") + "'"


class MlflowStore:
    """The Tracker of expctl on one MLflow tracking URI, for the runs of one backend."""

    def __init__(self, tracking_uri: str, backend_name: str, artifact_root: str | Path | None = None,
                 repository: str | None = None, repo_url: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        # What runs name as their source: the repository (public remote URL or directory name) and remote.
        self.repository, self.repo_url = repository, repo_url
        self.backend_name = backend_name
        # Artifacts of an embedded store go under ``artifact_root``; a tracking server decides for itself.
        self.artifact_root = default_artifact_root(tracking_uri)
        if artifact_root is not None and self.artifact_root is not None:
            root = artifact_root
            self.artifact_root = Path(root).resolve().as_uri() if isinstance(root, Path) else root
        self._client: Any = None
        self._experiments: dict[str, str] = {}
        self._experiment_tags: dict[str, dict[str, str]] = {}
        self._viewed: set[str] = set()  # experiments whose saved view this store has checked

    # -- plumbing --------------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            if self.tracking_uri.startswith("sqlite:///"):
                Path(self.tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
            # expctl's stdout is data (plans, tables, JSON): MLflow must not print "View run" URLs into it
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
            if not os.environ.get("EXPCTL_DEBUG"):  # the embedded store's schema migrations are not news
                for noisy in ("mlflow.store.db.utils", "alembic"):
                    logging.getLogger(noisy).setLevel(logging.WARNING)
            with self._calling("connect"):
                from mlflow import MlflowClient

                if self.tracking_uri.startswith("sqlite:///"):
                    # Two processes opening a new embedded store at once would both create its tables (one
                    # fails: "table runs already exists"): creating the client, which creates them, is serialised.
                    from filelock import FileLock

                    with FileLock(self.tracking_uri[len("sqlite:///") :] + ".lock", timeout=120):
                        self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
                else:
                    self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Turn any MLflow/transport failure into one line; MLflow's client already retried transients."""
        try:
            yield
        except TrackingError:
            raise
        except Exception as exc:
            message = f"MLflow at {self.tracking_uri}: {what} failed: {truncate(str(exc))}"
            raise TrackingError(message) from exc

    @staticmethod
    def _error_code(exc: Exception) -> str:
        return str(getattr(exc, "error_code", ""))

    def check(self) -> None:
        """Fail fast, in one line, when the store is down or the URI is wrong (short timeout, no retries)."""
        uri = self.tracking_uri
        if uri.startswith(("http://", "https://")):
            try:
                health = f"{uri.rstrip('/')}/health"
                with urllib.request.urlopen(health, timeout=_CHECK_TIMEOUT_SECONDS) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                raise TrackingError(f"MLflow at {uri} is unreachable: {truncate(str(reason))}") from exc
            if status != 200:
                raise TrackingError(f"MLflow at {uri} is unhealthy: /health answered HTTP {status}")
            return
        try:
            self.client.search_experiments(max_results=1)
        except Exception as exc:
            cause = exc.__cause__ if isinstance(exc, TrackingError) and exc.__cause__ else exc
            raise TrackingError(f"MLflow at {uri} is unusable: {truncate(str(cause))}") from exc

    # -- experiments and find-or-create ----------------------------------------------------------------

    def _experiment_id(self, name: str, managed: bool = True) -> str:
        if name in self._experiments:
            return self._experiments[name]
        with self._calling(f"experiment {name}"):
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                location = f"{self.artifact_root}/{slug(name)}" if self.artifact_root else None
                try:
                    tags = ui.creation_tags() if managed else {"expctl.audit": "true"}
                    self.client.create_experiment(name, artifact_location=location, tags=tags)
                except Exception as exc:
                    if "ALREADY_EXISTS" not in self._error_code(exc):
                        raise
                exp = self.client.get_experiment_by_name(name)
            elif exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            if managed:
                ui.ensure_training_kind(self.client, str(exp.experiment_id), exp.tags or {})
        self._experiment_tags[name] = dict(exp.tags or {})
        self._experiments[name] = str(exp.experiment_id)
        return self._experiments[name]

    def _search(self, experiment_ids: list[str], filter_string: str, order: str = "ASC") -> list[Any]:
        """Every active run matching, oldest first, page by page."""
        runs: list[Any] = []
        token: str | None = None
        with self._calling("search runs"):
            while True:
                page = self.client.search_runs(
                    experiment_ids, filter_string=filter_string, max_results=_PAGE,
                    order_by=[f"attributes.start_time {order}"], page_token=token,
                )
                runs.extend(page)
                token = page.token
                if not token:
                    return runs

    def _find_or_create(self, experiment_id: str, filter_string: str, create: Callable[[], Any]) -> Any:
        """The oldest run matching ``filter_string``; create one if none — and if a concurrent expctl created
        one too, keep the oldest and delete ours, so a rerun or a race converges to exactly one run."""
        found = self._search([experiment_id], filter_string)
        if found:
            return found[0]
        with self._calling("create run"):
            mine = create()
        found = self._search([experiment_id], filter_string)
        keep = min(found, key=lambda r: (r.info.start_time, r.info.run_id)) if found else mine
        if keep.info.run_id != mine.info.run_id:
            with self._calling("delete duplicate run"):
                self.client.delete_run(mine.info.run_id)
        return keep

    # -- ensure_run ------------------------------------------------------------------------------------

    def ensure_run(self, spec: RunSpec, attempt: int, applied_by: str) -> TrackingRef:
        """Find the run tagged (run key, spec hash, attempt) or create it, in status SCHEDULED."""
        experiment_id = self._experiment_id(spec.experiment)
        self._ensure_view(experiment_id, spec)
        parent_id = self._parent_run(experiment_id, spec) if spec.overrides else None
        sweep = (g.parent_name(spec), run_route(experiment_id, parent_id)) if parent_id else None
        tags = g.run_tags(spec, attempt, applied_by, self.backend_name, parent_id, repository=self.repository,
                          repo_url=self.repo_url, sweep=sweep)
        identity = ("expctl.run_key", "expctl.spec_hash", "expctl.attempt")
        filter_string = " and ".join(f"tags.`{key}` = {_quote(tags[key])}" for key in identity)
        run = self._find_or_create(
            experiment_id, filter_string,
            lambda: self.client.create_run(experiment_id, start_time=int(time.time() * 1000), tags=tags,
                                           run_name=tags["mlflow.runName"]),
        )
        if run.data.tags.get("expctl.ready") != "true":
            self._record(run.info.run_id, spec)
        return TrackingRef(self.tracking_uri, run.info.run_id, spec.experiment)

    def _ensure_view(self, experiment_id: str, spec: RunSpec) -> None:
        """expctl's saved view on the experiment (its overrides and gate metric as columns), once per store."""
        if spec.experiment in self._viewed:
            return
        gate = spec.job.validation
        keys = [key for key, _ in pv.override_pairs(spec.overrides)]
        with self._calling(f"experiment {spec.experiment}"):
            ui.ensure_view(self.client, experiment_id, self._experiment_tags.get(spec.experiment, {}), keys,
                           gate.metric if gate else None)
        self._viewed.add(spec.experiment)

    def _parent_run(self, experiment_id: str, spec: RunSpec) -> str:
        """The sweep's parent run for (experiment, commit), found or created."""
        tags = g.parent_tags(spec, self.backend_name, repository=self.repository, repo_url=self.repo_url)
        filter_string = (f"tags.`expctl.parent` = 'true' and tags.`expctl.commit` = {_quote(spec.commit)}"
                         f" and tags.`expctl.backend` = {_quote(self.backend_name)}")
        run = self._find_or_create(
            experiment_id, filter_string,
            lambda: self.client.create_run(experiment_id, tags=tags, run_name=tags["mlflow.runName"]),
        )
        return str(run.info.run_id)

    def _record(self, run_id: str, spec: RunSpec) -> None:
        """Params, the composed config and SCHEDULED status; idempotent, marked done by ``expctl.ready``."""
        from mlflow.entities import Param, RunTag

        params = sorted(g.run_params(spec).items())
        for start in range(0, len(params), g.MAX_PER_BATCH):
            batch = [Param(k, v) for k, v in params[start : start + g.MAX_PER_BATCH]]
            try:
                self.client.log_batch(run_id, params=batch)
            except Exception:
                # a concurrent expctl recording the same run may have logged them first (params are immutable)
                with self._calling(f"record run {run_id}"):
                    logged = self.client.get_run(run_id).data.params
                    if any(logged.get(p.key) != p.value for p in batch):
                        raise
        with self._calling(f"record run {run_id}"):
            self.client.log_text(run_id, json.dumps(spec.config, indent=2, sort_keys=True), CONFIG_ARTIFACT)
            self.client.update_run(run_id, status="SCHEDULED")
            self.client.log_batch(run_id, tags=[RunTag("expctl.ready", "true")])

    # -- addresses in the UI ---------------------------------------------------------------------------

    def ui_experiments(self, names: Sequence[str] = ()) -> dict[str, tuple[str, bool]]:
        """``{name: (id, has expctl's saved view)}`` of expctl's experiments (all, or ``names``), each marked
        as model training."""
        with self._calling("search experiments"):
            return ui.managed_experiments(self.client, names)

    def experiment_of_run(self, run_id: str) -> str:
        with self._calling(f"read run {run_id}"):
            return ui.experiment_of_run(self.client, run_id)

    # -- records ---------------------------------------------------------------------------------------

    def _managed_runs(self) -> list[Any]:
        """Every run expctl created for this backend, across expctl's experiments: one paginated search."""
        ids: list[str] = []
        token: str | None = None
        with self._calling("search experiments"):
            while True:
                page = self.client.search_experiments(
                    filter_string="tags.`expctl.managed` = 'true'", max_results=_PAGE, page_token=token)
                ids.extend(str(e.experiment_id) for e in page)
                token = page.token
                if not token:
                    break
        backend = _quote(self.backend_name)
        filter_string = f"tags.`expctl.managed` = 'true' and tags.`expctl.backend` = {backend}"
        runs: list[Any] = []
        for start in range(0, len(ids), 100):
            runs.extend(self._search(ids[start : start + 100], filter_string))
        return runs

    def records(self) -> list[ObservedRun]:
        records = (g.observed_from_run(run.info, run.data.tags, self.backend_name) for run in self._managed_runs())
        return [record for record in records if record is not None]

    # -- sync and the validation gate ------------------------------------------------------------------

    def sync(self, observed: Sequence[ObservedRun], desired: Sequence[RunSpec]) -> None:
        live = [o for o in observed if o.live and o.mlflow_run_id]
        if not live:
            return
        current = {run.info.run_id: run for run in self._managed_runs()}
        statuses = {run_id: run.info.status for run_id, run in current.items()}
        specs = {(s.run_key, s.spec_hash): s for s in desired}
        for obs in live:
            run = current.get(obs.mlflow_run_id)
            if run is None:
                continue
            statuses[run.info.run_id] = self._sync_status(run, obs)
            spec = specs.get((obs.run_key, obs.spec_hash))
            gate = spec.job.validation if spec is not None else None
            if obs.phase is Phase.SUCCEEDED and gate is not None and "expctl.gate" not in run.data.tags:
                self.apply_gate(run.info.run_id, gate)
        gates = {s.experiment: s.job.validation for s in desired if s.job.validation is not None}
        self._sync_parents(current, statuses, gates)

    def _sync_status(self, run: Any, obs: ObservedRun) -> str:
        """Set the run's status from the job's phase when it changed (never back from finished)."""
        run_id, status = run.info.run_id, run.info.status
        target = g.STATUS_OF_PHASE.get(obs.phase)
        tags: dict[str, str] = {}
        if obs.phase is Phase.FAILED and "expctl.failure" not in run.data.tags:
            tags["expctl.failure"] = obs.failure.value if obs.failure else ""
            tags["expctl.failure_message"] = truncate(obs.message, 1000)
        if obs.cancelled and run.data.tags.get("expctl.cancelled") != "true":
            tags["expctl.cancelled"] = "true"
        with self._calling(f"sync run {run_id}"):
            if target == "RUNNING" and status == "SCHEDULED":
                self.client.update_run(run_id, status=target)
                status = target
            elif target in g.TERMINAL_STATUSES and status != target:
                end = int((obs.finished_at or time.time()) * 1000)
                self.client.set_terminated(run_id, status=target, end_time=end)
                status = target
        if tags:
            self.set_run_tags(run_id, tags)
        return str(status)

    def _sync_parents(self, current: dict[str, Any], statuses: dict[str, str],
                      gates: dict[str, ValidationGate]) -> None:
        """A sweep's parent run follows the latest attempts of its points: RUNNING until all finished; its
        counts per state and best gate value are written on it (metrics, tags, description) when changed."""
        latest: dict[str, dict[str, tuple[int, str, str]]] = {}
        for run_id, run in current.items():
            parent, key = run.data.tags.get("mlflow.parentRunId"), run.data.tags.get("expctl.run_key")
            if parent in current and key:
                attempt = int(run.data.tags.get("expctl.attempt", "1"))
                points = latest.setdefault(parent, {})
                if attempt >= points.get(key, (0, "", ""))[0]:
                    points[key] = (attempt, statuses[run_id], run_id)
        for parent_id, points in latest.items():
            with self._calling(f"summarise sweep run {parent_id}"):
                ui.summarise_sweep(self.client, current[parent_id],
                                   [current[run_id] for _, _, run_id in points.values()], statuses, gates)
            target = g.parent_status([status for _, status, _ in points.values()])
            if statuses[parent_id] == target:
                continue
            with self._calling(f"sync sweep run {parent_id}"):
                if target in g.TERMINAL_STATUSES:
                    self.client.set_terminated(parent_id, status=target)
                else:
                    self.client.update_run(parent_id, status=target)

    def apply_gate(self, run_id: str, gate: ValidationGate) -> g.GateResult:
        """Evaluate the gate on the run's latest metrics; register a passing model; record the verdict."""
        with self._calling(f"read run {run_id}"):
            run = self.client.get_run(run_id)
        result = g.evaluate(gate, run.data.metrics)
        tags = {"expctl.gate": result.outcome, "expctl.gate_reason": result.reason}
        if result.passed and gate.register_as:
            version = self._register(run, gate)
            if version is None:
                result = g.GateResult(g.FAILED, f"{result.reason}, but the run logged no model to register",
                                      result.value)
                tags = {"expctl.gate": result.outcome, "expctl.gate_reason": result.reason}
            else:
                alias = f" (alias {gate.alias})" if gate.alias else ""
                tags["expctl.gate_reason"] += f"; registered {gate.register_as} version {version}{alias}"
                tags["expctl.model_version"] = f"{gate.register_as}/{version}"
        self.set_run_tags(run_id, tags)
        return result

    def _register(self, run: Any, gate: ValidationGate) -> str | None:
        """Register the run's logged model as a new version of ``gate.register_as`` (once per run)."""
        name, run_id, tags = str(gate.register_as), run.info.run_id, run.data.tags
        with self._calling(f"register {name}"):
            existing = self.client.search_model_versions(
                f"name = {_quote(name)} and run_id = {_quote(run_id)}")
            if existing:
                version = str(existing[0].version)
            else:
                models = self.client.search_logged_models(
                    [run.info.experiment_id], filter_string=f"source_run_id = {_quote(run_id)}")
                if not models:
                    return None
                model = max(models, key=lambda m: (m.name == "model", m.creation_timestamp))
                try:
                    self.client.create_registered_model(name)
                except Exception as exc:
                    if "ALREADY_EXISTS" not in self._error_code(exc):
                        raise
                version_tags = {
                    "expctl.run_key": tags.get("expctl.run_key", ""),
                    "expctl.spec_hash": tags.get("expctl.spec_hash", ""),
                    "expctl.commit": tags.get("expctl.commit", ""),
                    "mlflow.source.git.commit": tags.get("expctl.commit", ""),
                    "expctl.run_id": run_id,
                    "expctl.job": tags.get("expctl.job", ""),
                }
                # An embedded registry would resolve "models:/<id>" through the process-global tracking
                # URI (an MLflow TODO), not this client's: hand it the model's storage location instead.
                remote = self.tracking_uri.startswith(("http://", "https://"))
                source = f"models:/{model.model_id}" if remote else model.artifact_location
                created = self.client.create_model_version(
                    name, source=source, run_id=run_id, tags=version_tags, model_id=model.model_id)
                version = str(created.version)
            if gate.alias:
                self.client.set_registered_model_alias(name, gate.alias, version)
        return version

    # -- small writes for cancel and audit -------------------------------------------------------------

    def mark_killed(self, run_id: str, by: str = "") -> None:
        """A cancelled job's run: status KILLED now, tagged so that it reads as cancelled, not failed."""
        with self._calling(f"kill run {run_id}"):
            run = self.client.get_run(run_id)
            if run.info.status not in g.TERMINAL_STATUSES:
                self.client.set_terminated(run_id, status="KILLED")
        self.set_run_tags(run_id, {"expctl.cancelled": "true", **({"expctl.cancelled_by": by} if by else {})})

    def set_run_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        batch = [RunTag(k, str(v)[: g.MAX_TAG_VALUE]) for k, v in tags.items()]
        with self._calling(f"tag run {run_id}"):
            for start in range(0, len(batch), g.MAX_PER_BATCH):
                self.client.log_batch(run_id, tags=batch[start : start + g.MAX_PER_BATCH])

    # -- the audit trail: one finished run per entry in the experiment ``expctl-audit`` ------------------

    def record_audit(self, entry: dict[str, Any]) -> None:
        """Append one entry (who, what, when, commit, plan fingerprint): durable and shared like the runs."""
        experiment_id = self._experiment_id(AUDIT_EXPERIMENT, managed=False)
        when = int(float(entry.get("time", time.time())) * 1000)
        tags = {f"expctl.audit.{k}": str(v)[:250] for k, v in entry.items() if isinstance(v, str | int | float)}
        tags["expctl.audit.entry"] = json.dumps(entry, sort_keys=True, default=str)[: g.MAX_TAG_VALUE]
        tags["mlflow.runName"] = f"{entry.get('action', 'entry')}-{entry.get('run', '')}"[:250]
        with self._calling("record audit entry"):
            run = self.client.create_run(experiment_id, start_time=when, tags=tags)
            self.client.set_terminated(run.info.run_id, status="FINISHED", end_time=when)

    def audit_entries(self, experiment: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The audit trail, newest first (of one experiment, or all)."""
        experiment_id = self._experiment_id(AUDIT_EXPERIMENT, managed=False)
        filter_string = f"tags.`expctl.audit.experiment` = {_quote(experiment)}" if experiment else ""
        entries: list[dict[str, Any]] = []
        token: str | None = None
        with self._calling("read the audit trail"):
            while len(entries) < limit:
                page = self.client.search_runs(
                    [experiment_id], filter_string=filter_string, max_results=min(limit, _PAGE),
                    order_by=["attributes.start_time DESC"], page_token=token,
                )
                entries.extend(json.loads(r.data.tags["expctl.audit.entry"]) for r in page
                               if "expctl.audit.entry" in r.data.tags)
                token = page.token
                if not token:
                    break
        return entries[:limit]

    def registered_models(self) -> list[dict[str, Any]]:
        """Every version expctl registered (tag ``expctl.run_key``), with its aliases and gate metric."""
        rows: list[dict[str, Any]] = []
        with self._calling("read the Model Registry"):
            for model in self.client.search_registered_models(max_results=_PAGE):
                aliases: dict[str, list[str]] = {}
                for alias, version in (getattr(model, "aliases", None) or {}).items():
                    aliases.setdefault(str(version), []).append(alias)
                for version in self.client.search_model_versions(f"name = {_quote(model.name)}"):
                    if "expctl.run_key" not in (version.tags or {}):
                        continue
                    metrics = self.client.get_run(version.run_id).data.metrics if version.run_id else {}
                    rows.append({"name": model.name, "version": str(version.version),
                                 "aliases": sorted(aliases.get(str(version.version), [])),
                                 "run_id": version.run_id or "", "job": version.tags.get("expctl.job", ""),
                                 "metrics": dict(metrics)})
        return sorted(rows, key=lambda r: (r["name"], int(r["version"])))
