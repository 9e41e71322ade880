"""The plumbing of the MLflow adapter: one tracking URI, its client, and the requests every feature makes.

``MlflowSession`` is what the feature modules (``runs``, ``audit``, ``ledger``, ``sync``, ``promote``, ``logs``,
``checkpoints``, ``lineage``) take and type against; ``store.MlflowStore`` is the facade built on it. It owns:

* the ``client`` (``MlflowClient``, made on first use: importing ``mlflow`` costs over a second) and ``calling``,
  which turns any MLflow or transport failure into one ``TrackingError`` line (``TrackerUnavailable`` when the
  server cannot be reached at all) and serialises writes to an embedded (sqlite) store;
* experiments by name (``experiment_id``: created when missing; ``experiments`` and ``experiment_tags`` as last
  read or written), ``create_run`` (exactly once, also when an answer is lost: a client-chosen key) and the
  searches (``search``, ``run_pages``, ``search_runs`` and ``managed_runs``: through plain REST on a tracking
  server, ``rest_search``; read from the embedded store's file, ``sqlite_search``; through MLflow's client
  otherwise, and whenever those cannot answer exactly) — so a command that only reads never imports ``mlflow``;
* the bookkeeping of the last view that the ledger of settled runs needs: the runs written since (``touched``:
  they do not settle yet), the runs read from the ledger (``from_ledger``: expctl's next write to one carries
  ``reopening``'s tag) and the tags the view saw (``seen_tags``). Features read them; only this module's
  ``remember_view``, ``touch``, ``reopened`` and ``set_run_tags`` change ``touched`` and ``from_ledger``.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, closing, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from expctl.core import lock_wait
from expctl.core.errors import TrackingError, truncate
from expctl.core.naming import slug
from expctl.core.project import owned
from expctl.core.sanitize import redact, uri_secrets
from expctl.tracking.base import TrackerBusy, TrackerUnavailable
from expctl.tracking.mlflow import sqlite_search
from expctl.tracking.mlflow import tags as g
from expctl.tracking.mlflow.http_bounds import bound_http_retries, check_environment, transport_reason
from expctl.tracking.mlflow.locations import default_artifact_root
from expctl.tracking.mlflow.rest_search import CREATE_ID, RestSearch, missing_workspace, usable
from expctl.tracking.mlflow.sqlite_search import SqliteSearch, UnknownSchema, Unsupported
from expctl.tracking.mlflow.team_client import InWorkspace, TeamAliases

_T = TypeVar("_T")
PAGE = 1000  # runs or experiments per search request (MLflow's most)
MANAGED = "tags.`expctl.managed` = 'true'"
CHECK_TIMEOUT_SECONDS = 5.0
log = logging.getLogger(__name__)
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


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "error_code", ""))


class MlflowSession:
    """One MLflow tracking URI, for the runs of one backend: its client, its experiments, its searches."""

    def __init__(self, tracking_uri: str, backend_name: str, artifact_root: str | Path | None = None,
                 repository: str | None = None, repo_url: str | None = None, embedded: bool = False,
                 project: str | None = None, workspace: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        # the MLflow workspace of every request (a team's, on a server with workspaces); None: the server's default
        self.workspace = workspace
        # what messages quote: the URI without its credentials (a database URI or a server's may hold them)
        self._secrets = uri_secrets(tracking_uri)
        self.shown_uri = self.hide(tracking_uri)
        # expctl's own sqlite file (``.expctl/mlflow.db``): opened with a write-ahead log (``sqlite``)
        self.embedded = embedded and tracking_uri.startswith("sqlite:///")
        # What runs name as their source: the repository (public remote URL or directory name) and remote.
        self.repository, self.repo_url = repository, repo_url
        # Whose runs these are (``core.project``): the declared project, else the repository's label; None (a
        # store opened for no repository) reads every project's runs and tags none.
        self.project = project if project is not None else repository
        self.backend_name = backend_name
        # Artifacts of an embedded store go under ``artifact_root``; a tracking server decides for itself.
        self.artifact_root = default_artifact_root(tracking_uri)
        if artifact_root is not None and self.artifact_root is not None:
            root = artifact_root
            self.artifact_root = Path(root).resolve().as_uri() if isinstance(root, Path) else root
        self._client: Any = None
        # the one search of every managed run goes through plain REST when it can (no MLflow import, no
        # protobuf entities); everything else through MLflow's client (``rest`` None: that one search too)
        self.rest = RestSearch(tracking_uri, workspace) if usable(tracking_uri) else None
        # the embedded store's searches are read from its file (``sqlite_search``: no MLflow import either);
        # a search it does not read exactly, or a schema it does not know, goes to MLflow's client
        self.local = SqliteSearch(Path(tracking_uri[len("sqlite:///") :])) \
            if self.rest is None and sqlite_search.usable(tracking_uri, self.embedded) else None
        self.checked = False  # the server answered /health (http(s) URIs: checked once per session)
        self.experiments: dict[str, str] = {}  # name → id, of the experiments read or created
        self.experiment_tags: dict[str, dict[str, str]] = {}  # name → tags, as last read or written
        self._experiment_lock = threading.RLock()
        self._listed = False  # every managed experiment is in ``experiments`` (after a search)
        self._looked_at: set[str] = set()  # experiments handed out by ``first_look``
        self.seen_tags: dict[str, dict[str, str]] = {}  # run id → tags, from the last view
        self.touched: set[str] = set()  # runs written since the last view (they do not settle yet)
        self.from_ledger: set[str] = set()  # the runs the last view read from the ledger (settled)
        # an embedded (sqlite) store is written by one thread at a time: concurrent writers would hit
        # "database is locked"; a tracking server takes concurrent requests
        self._serial: AbstractContextManager[Any] = (threading.RLock() if tracking_uri.startswith("sqlite:")
                                                     else nullcontext())
        # who moves the registry's aliases of this store's models: a team's job identity (user, password), read
        # when first needed; None: this process's identity, as for every other request
        self.alias_identity: Callable[[], tuple[str, str]] | None = None

    def owns(self, tags: Mapping[str, str]) -> bool:
        """Whether a run (its tags) is this session's project's (``core.project.owned``)."""
        return owned(tags, self.project, self.repository)

    @property
    def writers(self) -> int:
        """Threads that may write at once (sync, settling): one on an embedded store."""
        return 1 if self.tracking_uri.startswith("sqlite:") else 4

    # -- the client and its failures -------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            if self.tracking_uri.startswith("sqlite:///"):
                where = Path(self.tracking_uri[len("sqlite:///") :]).parent
                try:
                    where.mkdir(parents=True, exist_ok=True)
                except OSError as exc:  # a file in the way, a read-only directory: one line naming the directory
                    raise TrackerUnavailable(f"MLflow at {self.shown_uri}: cannot create the store's directory "
                                             f"{self.hide(str(where))}: {exc.strerror or exc}") from exc
            # expctl's stdout is data (plans, tables, JSON): MLflow must not print "View run" URLs into it
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
            bound_http_retries()
            if self.tracking_uri.startswith(("http://", "https://")):
                check_environment()  # a variable MLflow cannot parse: one line, not a traceback mid-request
                self._check_once()  # fail in seconds, in one line, before MLflow's retry loop gets a chance
            if not os.environ.get("EXPCTL_DEBUG"):  # the embedded store's schema migrations are not news
                for noisy in ("mlflow.store.db.utils", "alembic"):
                    logging.getLogger(noisy).setLevel(logging.WARNING)
            with self.calling("connect"):
                self._client = self._connect()
        return self._client

    def _connect(self) -> Any:
        from mlflow import MlflowClient

        from expctl.tracking.mlflow import sqlite as mlflow_sqlite

        if not self.tracking_uri.startswith("sqlite:///"):
            client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
            return InWorkspace(client, self.workspace) if self.workspace else client
        db = Path(self.tracking_uri[len("sqlite:///") :])
        mlflow_sqlite.check_file(db)
        if self.embedded:
            mlflow_sqlite.tune(db)
        # Two processes opening a new embedded store at once would both create its tables (one fails: "table
        # runs already exists"): creating the client, which creates them, is serialised. An interrupted
        # migration breaks the store for good: ^C waits until it is done.
        from filelock import FileLock, Timeout

        lock = FileLock(str(db) + ".lock", timeout=120)
        try:  # another process creating it: the wait is announced (who holds it), as every lock wait is
            lock_wait.acquire(lock, lock.lock_file, db, "MLflow store", None, Timeout)
        except Timeout as exc:
            raise TrackerUnavailable(f"{self.hide(str(db))}: another expctl holds the MLflow store lock "
                                     f"({lock_wait.holder(lock.lock_file)}) for more than 120 s") from exc
        try:
            with mlflow_sqlite.signals_deferred():
                return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        finally:
            lock.release()

    def registry_client(self) -> Any:
        """The client the validation gate promotes with: MLflow's, whose alias moves go as ``alias_identity``
        when the store has one (a team's workspace)."""
        if self.alias_identity is None or not self.tracking_uri.startswith(("http://", "https://")):
            return self.client
        return TeamAliases(self.client, RestSearch(self.tracking_uri, self.workspace, self.alias_identity()))

    def hide(self, text: str) -> str:
        """``text`` (a message quoting the URI or MLflow's error about it) without the URI's credentials."""
        return redact(text, self._secrets)

    def _check_once(self) -> None:
        if not self.checked:
            self.check()
            self.checked = True

    @contextmanager
    def calling(self, what: str) -> Iterator[None]:
        """Turn any MLflow/transport failure into one line; MLflow's client already retried transients."""
        try:
            with self._serial:
                yield
        except TrackingError:
            raise
        except Exception as exc:
            text = self.hide(str(exc))
            if "too many 429 error responses" in text:  # rate limited: busy, not down
                raise TrackerBusy(f"MLflow at {self.shown_uri} is rate limiting expctl: {what} failed: "
                                  f"{transport_reason(text)}") from exc
            if any(marker in text for marker in _UNREACHABLE):
                raise TrackerUnavailable(f"MLflow at {self.shown_uri} is unreachable: {what} failed: "
                                         f"{transport_reason(text)}") from exc
            missing = missing_workspace(self.shown_uri, self.workspace, what, text)
            if missing is not None:
                raise missing from exc
            raise TrackingError(f"MLflow at {self.shown_uri}: {what} failed: {transport_reason(text)}") from exc

    def check(self) -> None:
        """Fail fast, in one line, when the store is down or the URI is wrong (short timeout, no retries)."""
        uri = self.shown_uri
        if self.tracking_uri.startswith(("http://", "https://")):
            try:
                with urllib.request.urlopen(health_request(self.tracking_uri), timeout=CHECK_TIMEOUT_SECONDS) as resp:
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

    # -- experiments -----------------------------------------------------------------------------------

    def experiment_id(self, name: str, managed: bool = True, extra_tags: dict[str, str] | None = None) -> str:
        """The id of an experiment, created when missing (with ``extra_tags``). After a search listed every
        managed experiment a missing one is created straight away (one request); ALREADY_EXISTS means it exists
        untagged."""
        with self._experiment_lock:
            if name in self.experiments:
                return self.experiments[name]
            tags = {"expctl.managed": "true", **({} if managed else {"expctl.audit": "true"}), **(extra_tags or {})}
            location = f"{self.artifact_root}/{slug(name)}" if self.artifact_root else None
            with self.calling(f"experiment {name}"):
                exp = None if self._listed else self.client.get_experiment_by_name(name)
                if exp is None:
                    try:
                        self.experiments[name] = str(
                            self.client.create_experiment(name, artifact_location=location, tags=tags))
                        self.experiment_tags[name] = tags
                        return self.experiments[name]
                    except Exception as exc:
                        if "ALREADY_EXISTS" not in _error_code(exc):
                            raise
                    exp = self.client.get_experiment_by_name(name)
                if exp.lifecycle_stage == "deleted":
                    self.client.restore_experiment(exp.experiment_id)
                if exp.tags.get("expctl.managed") != "true":  # made by an older expctl: a view must find it
                    self.client.set_experiment_tag(exp.experiment_id, "expctl.managed", "true")
            self.experiments[name] = str(exp.experiment_id)
            self.experiment_tags[name] = dict(exp.tags or {})
            return self.experiments[name]

    def first_look(self, name: str) -> dict[str, str] | None:
        """The tags of experiment ``name`` as last read or written, the first time it is asked for in this
        session (None after): what a feature that checks an experiment's tags once per session asks."""
        with self._experiment_lock:
            if name in self._looked_at:
                return None
            self._looked_at.add(name)
            return dict(self.experiment_tags.get(name, {}))

    def set_experiment_tag(self, name: str, key: str, value: str, what: str) -> None:
        """Tag the experiment ``name`` (created when missing, as an audit experiment) and remember the tag;
        ``what`` is the step a failure names."""
        experiment_id = self.experiment_id(name, managed=False)
        with self.calling(what):
            self.client.set_experiment_tag(experiment_id, key, value)
        with self._experiment_lock:
            self.experiment_tags.setdefault(name, {})[key] = value

    # -- searches --------------------------------------------------------------------------------------

    def search(self, experiment_ids: list[str], filter_string: str, order: str = "ASC") -> list[Any]:
        """Every active run matching, oldest first (``run_pages``: the embedded store's file or MLflow's client)."""
        return [run for page in self.run_pages(experiment_ids, filter_string, order) for run in page]

    def _read_failed(self, exc: Exception) -> None:
        """The embedded store's file could not answer a search (``sqlite_search``): MLflow's client will. A
        schema it does not know stays unknown for the rest of the session."""
        log.debug("searching %s with MLflow's client: %s", self.shown_uri, exc)
        if isinstance(exc, UnknownSchema):
            self.local = None

    def read_local(self, read: Callable[[SqliteSearch], _T | None]) -> _T | None:
        """What ``read`` finds in the embedded store's file; None when it finds nothing or cannot read it (then
        the caller asks MLflow's client, which also says why in one line)."""
        if self.local is None:
            return None
        try:
            return read(self.local)
        except (Unsupported, sqlite3.Error) as exc:
            self._read_failed(exc)
            return None

    def run_pages(self, experiment_ids: Sequence[str], filter_string: str, order: str = "ASC"
                  ) -> Generator[list[Any], None, None]:
        """Every active run of these experiments matching, by start time (``order``), page by page: read from
        the embedded store's file when it can (one snapshot), else through MLflow's client."""
        order_by = [f"attributes.start_time {order}"]
        if self.local is not None:
            try:
                pages = self.local.run_pages(experiment_ids, filter_string, order_by, PAGE)
                first = next(pages, None)
            except (Unsupported, sqlite3.Error) as exc:
                self._read_failed(exc)
            else:
                with closing(pages):
                    if first is not None:
                        yield first
                        try:
                            yield from pages
                        except sqlite3.Error as exc:
                            raise TrackingError(f"MLflow at {self.shown_uri}: search runs failed: {exc}") from exc
                return
        token: str | None = None
        while True:
            with self.calling("search runs"):
                page = self.client.search_runs(list(experiment_ids), filter_string=filter_string, max_results=PAGE,
                                               order_by=order_by, page_token=token)
            yield list(page)
            token = page.token
            if not token:
                return

    def search_runs(self, experiment_ids: Sequence[str], filter_string: str) -> list[Any]:
        """Every active run of these experiments matching, oldest first: plain REST on a tracking server
        (``rest_search``), the embedded store's file (``sqlite_search``) or MLflow's client; 100 experiments
        per search."""
        ids, runs = list(experiment_ids), []
        for start in range(0, len(ids), 100):
            if self.rest is not None:
                runs.extend(self.rest.search_runs(ids[start : start + 100], filter_string,
                                                   ["attributes.start_time ASC"], PAGE))
            else:
                for page in self.run_pages(ids[start : start + 100], filter_string):
                    runs.extend(page)
        return runs

    def managed_experiment_names(self) -> list[str]:
        """The names of every managed experiment of the store (one search)."""
        return [str(exp.name) for exp in self._managed_experiments()]

    def _managed_experiments(self) -> list[Any]:
        """Every managed experiment: one paginated search."""
        if self.rest is not None:
            self._check_once()
            return self.rest.search_experiments(MANAGED, PAGE)
        listed = self.read_local(lambda local: local.search_experiments(MANAGED))
        if listed is not None:
            return list(listed)
        found: list[Any] = []
        token: str | None = None
        with self.calling("search experiments"):
            while True:
                page = self.client.search_experiments(filter_string=MANAGED, max_results=PAGE, page_token=token)
                found.extend(page)
                token = page.token
                if not token:
                    return found

    def existing_experiment_id(self, name: str) -> str | None:
        """The id of experiment ``name``, for a read: None when the embedded store's file says it does not exist
        (a read creates nothing); elsewhere as ``experiment_id`` (found, or created as an audit experiment)."""
        with self._experiment_lock:
            if name in self.experiments:
                return self.experiments[name]
        if self.local is not None:
            try:
                found = self.local.experiment_by_name(name)
            except (Unsupported, sqlite3.Error) as exc:
                self._read_failed(exc)
            else:
                if found is None:
                    return None
                if found.lifecycle_stage == "active":
                    if found.tags.get("expctl.managed") == "true":  # else ``experiment_id`` tags it on a write
                        with self._experiment_lock:
                            self.experiments[name] = found.experiment_id
                            self.experiment_tags[name] = dict(found.tags)
                    return found.experiment_id
        return self.experiment_id(name, managed=False)

    def managed_runs(self) -> tuple[list[Any], list[str]]:
        """Every open run expctl created for this backend, across expctl's experiments (whose ids come
        second, each experiment remembered by name): one paginated search."""
        experiments = self._managed_experiments()
        ids = [str(e.experiment_id) for e in experiments]
        with self._experiment_lock:
            self.experiments.update({e.name: str(e.experiment_id) for e in experiments
                                     if e.lifecycle_stage == "active"})
            self.experiment_tags.update({e.name: dict(e.tags or {}) for e in experiments})
        self._listed = True
        return self.search_runs(ids, f"{MANAGED} and tags.`expctl.backend` = {g.quoted(self.backend_name)}"), ids

    # -- writes to runs and the ledger's bookkeeping ---------------------------------------------------

    def remember_view(self, runs: Iterable[Any], settled: set[str]) -> None:
        """A view was read: ``runs`` (their tags seen), of which ``settled`` came from the ledger; nothing
        written since."""
        self.touched = set()
        self.from_ledger = set(settled)
        self.seen_tags = {run.info.run_id: dict(run.data.tags) for run in runs}

    def touch(self, run_id: str) -> None:
        """A run is written (or about to be): it does not settle at this apply."""
        self.touched.add(run_id)

    def reopening(self, run_id: str) -> dict[str, str]:
        """The tag that takes a settled run (read from the ledger) back into the search: for expctl's next
        write to it, in the same request. Empty for an open run."""
        return {"expctl.managed": "true"} if run_id in self.from_ledger else {}

    def reopened(self, run_id: str) -> None:
        """A write carrying ``reopening``'s tag went through: the run is open again (written: it does not
        settle at this apply)."""
        self.touched.add(run_id)
        self.from_ledger.discard(run_id)

    def create_run(self, experiment_id: str, tags: dict[str, str], what: str, start_time: int | None = None,
                   run_name: str | None = None) -> Any:
        """Create a run exactly once, also when the answer is lost: it carries a client-chosen key
        (``expctl.create_id``). On a tracking server the create goes through plain REST (``rest_search``), which
        searches the key instead of resending blindly; through MLflow's client (which resends a POST whose answer
        was lost) the key is searched after a failure, and duplicates its retries made are deleted."""
        tags = {**tags, CREATE_ID: secrets.token_hex(16)}
        start = int(time.time() * 1000) if start_time is None else start_time
        if self.rest is not None:
            self._check_once()
            return self.rest.create_run(experiment_id, tags, start, run_name, what)
        remote = self.tracking_uri.startswith(("http://", "https://"))
        filter_string = f"tags.`{CREATE_ID}` = '{tags[CREATE_ID]}'"
        try:
            with self.calling(what):
                run = self.client.create_run(experiment_id, start_time=start, tags=tags, run_name=run_name)
        except TrackingError:
            found = self.search([experiment_id], filter_string) if remote else []
            if not found:
                raise
            run = found[0]
        if remote:
            for extra in self.search([experiment_id], filter_string):
                if extra.info.run_id != run.info.run_id:
                    with self.calling(f"delete duplicate run {extra.info.run_id}"):
                        self.client.delete_run(extra.info.run_id)
        return run

    def set_run_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """Tag a run (100 tags per request), taking it back into the search if it was settled: no request
        when ``tags`` is empty and the run is open."""
        from mlflow.entities import RunTag

        self.touch(run_id)
        batch = [RunTag(k, str(v)[: g.MAX_TAG_VALUE]) for k, v in {**self.reopening(run_id), **tags}.items()]
        with self.calling(f"tag run {run_id}"):
            for start in range(0, len(batch), g.MAX_PER_BATCH):
                self.client.log_batch(run_id, tags=batch[start : start + g.MAX_PER_BATCH])
        self.reopened(run_id)
