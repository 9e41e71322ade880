"""MLflow tracking: the only module that imports ``mlflow`` (lazily: importing it costs over a second).

One MLflow experiment per expctl experiment; a sweep gets one parent run per (experiment, commit) and one
child run per point. ``view`` is what MLflow remembers: one paginated search of every managed run (and of the
audit records left open by a killed apply). ``ensure_run`` finds a run by its tags in that view, or creates
it with all its tags in one request and logs its params in one more — never two runs, even across crashes.
``sync`` follows job phases into run status and applies the validation gate to succeeded runs, registering
passing models in the Model Registry. The audit trail lives in ``mlflow_audit``. Every MLflow failure becomes
a one-line ``TrackingError`` (``TrackerUnavailable`` when the server cannot be reached at all).
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from expctl.core.audit import AuditRecord
from expctl.core.errors import TrackingError, truncate
from expctl.core.gate import GateResult
from expctl.core.model import ObservedRun, RunSpec, TrackingRef, ValidationGate
from expctl.core.naming import slug
from expctl.core.sanitize import redact, uri_secrets
from expctl.tracking.base import TrackerUnavailable, TrackerView
from expctl.tracking.mlflow import audit, ledger, runs, ui
from expctl.tracking.mlflow import sync as mlflow_sync
from expctl.tracking.mlflow import tags as g
from expctl.tracking.mlflow.checkpoints import Checkpoints
from expctl.tracking.mlflow.http_bounds import bound_http_retries, check_environment, transport_reason
from expctl.tracking.mlflow.locations import default_artifact_root, default_tracking_uri, ui_server_command
from expctl.tracking.mlflow.logs import KeptLogs
from expctl.tracking.mlflow.promote import apply_gate, registered_versions
from expctl.tracking.mlflow.rest_search import RestSearch, usable
from expctl.tracking.mlflow.run_index import RunIndex

__all__ = ["MlflowStore", "default_artifact_root", "default_tracking_uri", "ui_server_command"]

AUDIT_EXPERIMENT = audit.AUDIT_EXPERIMENT
_CHECK_TIMEOUT_SECONDS = 5.0
_PAGE = 1000
_MANAGED = "tags.`expctl.managed` = 'true'"
_UNREACHABLE = ("Max retries exceeded", "Connection refused", "Failed to establish a new connection",
                "Read timed out", "Connection aborted", "RemoteDisconnected")


def health_request(tracking_uri: str) -> urllib.request.Request:
    """``GET <server>/health``: addressed without the URI's user information (urllib cannot open a URL that
    holds one), which goes as HTTP Basic auth instead, on this request only (never to a redirect's target)."""
    parts = urllib.parse.urlsplit(tracking_uri)
    netloc = parts.netloc.rpartition("@")[2]
    url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    request = urllib.request.Request(url)
    if parts.username is not None:
        pair = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        request.add_unredirected_header("Authorization", "Basic " + base64.b64encode(pair.encode()).decode())
    return request


class MlflowStore(KeptLogs, Checkpoints):
    """The Tracker of expctl on one MLflow tracking URI, for the runs of one backend."""

    def __init__(self, tracking_uri: str, backend_name: str, artifact_root: str | Path | None = None,
                 repository: str | None = None, repo_url: str | None = None, embedded: bool = False) -> None:
        self.tracking_uri = tracking_uri
        # what messages quote: the URI without its credentials (a database URI or a server's may hold them)
        self._secrets = uri_secrets(tracking_uri)
        self.shown_uri = self.hide(tracking_uri)
        # expctl's own sqlite file (``.expctl/mlflow.db``): opened with a write-ahead log (mlflow_sqlite)
        self.embedded = embedded and tracking_uri.startswith("sqlite:///")
        # What runs name as their source: the repository (public remote URL or directory name) and remote.
        self.repository, self.repo_url = repository, repo_url
        self.backend_name = backend_name
        # Artifacts of an embedded store go under ``artifact_root``; a tracking server decides for itself.
        self.artifact_root = default_artifact_root(tracking_uri)
        if artifact_root is not None and self.artifact_root is not None:
            root = artifact_root
            self.artifact_root = Path(root).resolve().as_uri() if isinstance(root, Path) else root
        self._client: Any = None
        # the one search of every managed run goes through plain REST when it can (no MLflow import, no
        # protobuf entities); everything else through MLflow's client
        self._rest = RestSearch(tracking_uri) if usable(tracking_uri) else None
        self._checked = False  # the server answered /health (http(s) URIs: checked once per store)
        self._experiments: dict[str, str] = {}
        self._seen_tags: dict[str, dict[str, str]] = {}  # run id → tags, from the last view
        self._touched: set[str] = set()  # runs written since the last view (they do not settle yet)
        self._ledger: ledger.Ledger | None = None  # the settled runs, as the last view read them
        self._from_ledger: set[str] = set()  # their ids
        self._experiment_lock = threading.RLock()
        self._listed = False  # every managed experiment is in ``_experiments`` (after a search)
        self._experiment_tags: dict[str, dict[str, str]] = {}  # as last read or written
        self._viewed: set[str] = set()  # experiments whose kind and saved view this store has checked
        # an embedded (sqlite) store is written by one thread at a time: concurrent writers would hit
        # "database is locked"; a tracking server takes concurrent requests
        self._serial: AbstractContextManager[Any] = (threading.RLock() if tracking_uri.startswith("sqlite:")
                                                     else nullcontext())

    @property
    def writers(self) -> int:  # threads that may write at once (sync, settling): one on an embedded store
        return 1 if self.tracking_uri.startswith("sqlite:") else 4

    # -- plumbing --------------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            if self.tracking_uri.startswith("sqlite:///"):
                Path(self.tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
            # expctl's stdout is data (plans, tables, JSON): MLflow must not print "View run" URLs into it
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
            bound_http_retries()
            if self.tracking_uri.startswith(("http://", "https://")):
                check_environment()  # a variable MLflow cannot parse: one line, not a traceback mid-request
                self._check_once()  # fail in seconds, in one line, before MLflow's retry loop gets a chance
            if not os.environ.get("EXPCTL_DEBUG"):  # the embedded store's schema migrations are not news
                for noisy in ("mlflow.store.db.utils", "alembic"):
                    logging.getLogger(noisy).setLevel(logging.WARNING)
            with self._calling("connect"):
                from mlflow import MlflowClient

                from expctl.tracking.mlflow import sqlite as mlflow_sqlite

                if self.tracking_uri.startswith("sqlite:///"):
                    mlflow_sqlite.check_file(Path(self.tracking_uri[len("sqlite:///") :]))
                if self.embedded:
                    mlflow_sqlite.tune(Path(self.tracking_uri[len("sqlite:///") :]))
                if self.tracking_uri.startswith("sqlite:///"):
                    # Two processes opening a new embedded store at once would both create its tables (one
                    # fails: "table runs already exists"): creating the client, which creates them, is serialised.
                    # An interrupted migration breaks the store for good: ^C waits until it is done.
                    from filelock import FileLock

                    from expctl.tracking.mlflow.sqlite import signals_deferred

                    with FileLock(self.tracking_uri[len("sqlite:///") :] + ".lock", timeout=120), signals_deferred():
                        self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
                else:
                    self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    def hide(self, text: str) -> str:
        """``text`` (a message quoting the URI or MLflow's error about it) without the URI's credentials."""
        return redact(text, self._secrets)

    def _check_once(self) -> None:
        if not self._checked:
            self.check()
            self._checked = True

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Turn any MLflow/transport failure into one line; MLflow's client already retried transients."""
        try:
            with self._serial:
                yield
        except TrackingError:
            raise
        except Exception as exc:
            text = self.hide(str(exc))
            if any(marker in text for marker in _UNREACHABLE):
                raise TrackerUnavailable(f"MLflow at {self.shown_uri} is unreachable: {what} failed: "
                                         f"{transport_reason(text)}") from exc
            raise TrackingError(f"MLflow at {self.shown_uri}: {what} failed: {transport_reason(text)}") from exc

    @staticmethod
    def _error_code(exc: Exception) -> str:
        return str(getattr(exc, "error_code", ""))

    def check(self) -> None:
        """Fail fast, in one line, when the store is down or the URI is wrong (short timeout, no retries)."""
        uri = self.shown_uri
        if self.tracking_uri.startswith(("http://", "https://")):
            try:
                with urllib.request.urlopen(health_request(self.tracking_uri), timeout=_CHECK_TIMEOUT_SECONDS) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                raise TrackingError(f"MLflow at {uri} is unreachable: {truncate(self.hide(str(reason)))}") from exc
            if status != 200:
                raise TrackingError(f"MLflow at {uri} is unhealthy: /health answered HTTP {status}")
            return
        try:
            self.client.search_experiments(max_results=1)
        except Exception as exc:
            cause = exc.__cause__ if isinstance(exc, TrackingError) and exc.__cause__ else exc
            raise TrackingError(f"MLflow at {uri} is unusable: {truncate(self.hide(str(cause)))}") from exc

    # -- experiments and find-or-create ----------------------------------------------------------------

    def _experiment_id(self, name: str, managed: bool = True, extra_tags: dict[str, str] | None = None) -> str:
        """The id of an experiment, created when missing (with ``extra_tags``). After ``view`` listed every
        managed experiment a missing one is created straight away (one request); ALREADY_EXISTS means it exists
        untagged."""
        with self._experiment_lock:
            if name in self._experiments:
                return self._experiments[name]
            tags = {"expctl.managed": "true", **({} if managed else {"expctl.audit": "true"}), **(extra_tags or {})}
            location = f"{self.artifact_root}/{slug(name)}" if self.artifact_root else None
            with self._calling(f"experiment {name}"):
                exp = None if self._listed else self.client.get_experiment_by_name(name)
                if exp is None:
                    try:
                        self._experiments[name] = str(
                            self.client.create_experiment(name, artifact_location=location, tags=tags))
                        self._experiment_tags[name] = tags
                        return self._experiments[name]
                    except Exception as exc:
                        if "ALREADY_EXISTS" not in self._error_code(exc):
                            raise
                    exp = self.client.get_experiment_by_name(name)
                if exp.lifecycle_stage == "deleted":
                    self.client.restore_experiment(exp.experiment_id)
                if exp.tags.get("expctl.managed") != "true":  # made by an older expctl: view() must find it
                    self.client.set_experiment_tag(exp.experiment_id, "expctl.managed", "true")
            self._experiments[name] = str(exp.experiment_id)
            self._experiment_tags[name] = dict(exp.tags or {})
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

    # -- ensure_run (mlflow_runs) ----------------------------------------------------------------------

    def ensure_run(self, spec: RunSpec, attempt: int, applied_by: str,
                   view: TrackerView | None = None) -> TrackingRef:
        """The run of (run key, spec hash, attempt), found in ``view`` or created: see ``mlflow_runs``."""
        return runs.ensure_run(self, spec, attempt, applied_by, view)

    def experiment_for(self, spec: RunSpec) -> str:
        """The experiment of a spec's runs: created with MLflow's model-training kind and expctl's saved view
        (no extra request); an existing one gets them when missing or changed, checked once per store against
        the tags already read."""
        experiment_id = self._experiment_id(spec.experiment, extra_tags=ui.experiment_tags(spec))
        with self._experiment_lock:
            if spec.experiment in self._viewed:
                return experiment_id
            self._viewed.add(spec.experiment)
            tags = dict(self._experiment_tags.get(spec.experiment, {}))
        with self._calling(f"experiment {spec.experiment}"):
            ui.ensure_experiment_tags(self.client, experiment_id, tags, spec)
        return experiment_id

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

    def _managed_experiments(self) -> list[Any]:
        """Every managed experiment (remembered by name): one paginated search."""
        if self._rest is not None:
            self._check_once()
            return self._rest.search_experiments(_MANAGED, _PAGE)
        found: list[Any] = []
        token: str | None = None
        with self._calling("search experiments"):
            while True:
                page = self.client.search_experiments(filter_string=_MANAGED, max_results=_PAGE, page_token=token)
                found.extend(page)
                token = page.token
                if not token:
                    return found

    def _search_runs(self, experiment_ids: Sequence[str], filter_string: str) -> list[Any]:
        """Every active run of these experiments matching, oldest first: plain REST on a tracking server
        (``rest_search``), MLflow's client otherwise; 100 experiments per search."""
        ids, runs = list(experiment_ids), []
        for start in range(0, len(ids), 100):
            if self._rest is not None:
                runs.extend(self._rest.search_runs(ids[start : start + 100], filter_string,
                                                   ["attributes.start_time ASC"], _PAGE))
            else:
                runs.extend(self._search(ids[start : start + 100], filter_string))
        return runs

    def _managed_runs(self) -> tuple[list[Any], list[str]]:
        """Every open run expctl created for this backend, across expctl's experiments (whose ids come
        second): one paginated search."""
        experiments = self._managed_experiments()
        ids = [str(e.experiment_id) for e in experiments]
        with self._experiment_lock:
            self._experiments.update({e.name: str(e.experiment_id) for e in experiments
                                      if e.lifecycle_stage == "active"})
            self._experiment_tags.update({e.name: dict(e.tags or {}) for e in experiments})
        self._listed = True
        return self._search_runs(ids, f"{_MANAGED} and tags.`expctl.backend` = {g.quoted(self.backend_name)}"), ids

    def view(self) -> TrackerView:
        """Every managed run — the open ones searched, then the settled ones from the ledger — and every open
        audit record of this backend: ⌈open runs/1000⌉ + 1 requests (+ 1 to read the ledger again after several
        pages)."""
        self._touched = set()
        for again in (True, False):  # once more when a settle may have moved the pages (``mlflow_ledger``)
            searched, ids = self._managed_runs()
            read = ledger.read(self, searched, ids, paged=len(searched) >= _PAGE or len(ids) > 100)
            if not (again and read.reread):
                break
        self._ledger = read
        runs = [*(r for r in searched if ledger.MARK not in r.data.tags), *read.runs]
        self._from_ledger = {run.info.run_id for run in read.runs}
        self._seen_tags = {run.info.run_id: dict(run.data.tags) for run in runs}
        index = RunIndex.of(runs)
        records = (g.observed_from_run(run.info, run.data.tags, self.backend_name) for run in index.raw)
        return TrackerView([r for r in records if r is not None], audit.open_records(index.raw), index)

    def records(self) -> list[ObservedRun]:
        return self.view().records

    # -- sync (mlflow_sync), settling (mlflow_ledger) and the validation gate ------------------------------

    def sync(self, observed: Sequence[ObservedRun], desired: Sequence[RunSpec],
             view: TrackerView | None = None) -> None:
        mlflow_sync.sync(self, observed, desired, view if view is not None else self.view())

    def settle(self, observed: Sequence[ObservedRun], desired: Sequence[RunSpec], view: TrackerView,
               stop: Callable[[], bool] = lambda: False) -> int:
        """Take the view's runs that nothing will change any more out of the search, into the ledger
        (``mlflow_ledger``); how many. Called by applies only, after their writes."""
        if self._ledger is None:
            return 0
        runs = ledger.candidates(view.index.raw, observed, desired, self._touched, self._from_ledger,
                                 self.repository)
        return ledger.settle(self, self._ledger, runs, stop)

    def apply_gate(self, run_id: str, gate: ValidationGate,
                   metrics: Mapping[str, float] | None = None) -> GateResult:
        """Evaluate the gate on the run's latest metrics (or on ``metrics``: the platform's validation job's);
        register a passing model; record the verdict (``mlflow_promote``)."""
        return apply_gate(self, run_id, gate, metrics)

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

        self._touched.add(run_id)  # a settled run is taken back into the search by the same write
        batch = [RunTag(k, str(v)[: g.MAX_TAG_VALUE]) for k, v in {**ledger.reopening(self, run_id), **tags}.items()]
        with self._calling(f"tag run {run_id}"):
            for start in range(0, len(batch), g.MAX_PER_BATCH):
                self.client.log_batch(run_id, tags=batch[start : start + g.MAX_PER_BATCH])
        self._from_ledger.discard(run_id)

    # -- the audit trail (mlflow_audit): one record per apply in the experiment ``expctl-audit`` -------------

    def begin_audit(self, record: AuditRecord) -> AuditRecord:
        return audit.begin(self, record)

    def complete_audit(self, record: AuditRecord) -> None:
        audit.complete(self, record)

    def record_audit(self, entry: dict[str, Any]) -> None:
        audit.record_entry(self, entry)

    def audit_entries(self, experiment: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        return audit.entries(self, experiment, limit)

    def registered_models(self) -> list[dict[str, Any]]:
        """Every version expctl registered, with its aliases and its run's metrics (``make demo`` lists them)."""
        return registered_versions(self, _PAGE)
