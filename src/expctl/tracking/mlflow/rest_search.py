"""Read-only searches of an MLflow tracking server through its REST API, with plain JSON: no MLflow import.

The one observation of every apply and plan reads every managed run; through ``MlflowClient`` that costs the
``mlflow`` import (over a second) and a protobuf entity per run (seconds for 10,000 runs). Here the same two
searches (``experiments/search``, then ``runs/search`` page by page) are sent as plain JSON and answered with
small read-only objects shaped like MLflow's (``run.info.run_id``, ``run.data.tags`` …), which is all that
``MlflowStore.view`` and ``sync`` read. Requests are bounded like MLflow's own client (``http_bounds``: the
same retries of 429/5xx and connection failures, the same timeout); every failure is one ``TrackingError`` line
(``TrackerUnavailable`` when the server cannot be reached). Used for ``http(s)://`` tracking URIs whose
authentication it understands (none, ``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``,
``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH``); otherwise ``usable`` says no and the
store searches with ``MlflowClient``.

One write goes through here too: ``create_run``. MLflow's client resends a POST whose answer was lost, and a
create resent is a second run; here a create carries a client-chosen key (``expctl.create_id``), and a lost
answer is followed by a search for that key, not by a blind resend.
"""

from __future__ import annotations

import base64
import json
import os
import random
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from expctl.core import safe_json
from expctl.core.errors import TrackingError, truncate
from expctl.core.sanitize import redact, uri_secrets
from expctl.tracking.base import TrackerBusy, TrackerUnavailable
from expctl.tracking.mlflow.http_bounds import (
    RETRY_AFTER_MAX,
    check_environment,
    flag,
    http_setting,
    retry_after,
    retry_after_max,
    transport_reason,
)

# Authentication only MLflow's client (or its plugins) knows how to do: searched with MlflowClient then.
_CLIENT_ONLY_SETTINGS = ("MLFLOW_TRACKING_CLIENT_CERT_PATH", "MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_AWS_SIGV4")
_RETRIED_STATUSES = (429, 500, 502, 503, 504)
_MOST_WAITS = 20  # Retry-After waits per request (a server answering "Retry-After: 0" forever ends too)
CREATE_ID = "expctl.create_id"  # the client-chosen key of a create: what a lost answer is searched by


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    experiment_id: str
    status: str
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str


@dataclass(frozen=True)
class RunData:
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # the latest value of each (as MLflow's search gives)


@dataclass(frozen=True)
class Run:
    info: RunInfo
    data: RunData


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    name: str
    lifecycle_stage: str
    tags: dict[str, str]


def usable(tracking_uri: str) -> bool:
    """Whether searches of ``tracking_uri`` can go through plain REST (an http(s) server, known auth)."""
    parsed = urllib.parse.urlsplit(tracking_uri)
    if parsed.scheme not in ("http", "https") or "@" in parsed.netloc:
        return False
    return not any(os.environ.get(name) for name in _CLIENT_ONLY_SETTINGS)


def _pairs(items: Any) -> dict[str, str]:
    return {str(item["key"]): str(item.get("value", "")) for item in items or ()}


def _time(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


def run_of(obj: Mapping[str, Any]) -> Run:
    """One run of a ``runs/search`` answer (KeyError/TypeError/ValueError when it is not one)."""
    info, data = obj["info"], obj.get("data") or {}
    return Run(
        RunInfo(str(info.get("run_id") or info["run_uuid"]), str(info["experiment_id"]), str(info["status"]),
                _time(info.get("start_time")), _time(info.get("end_time")),
                str(info.get("lifecycle_stage", "active"))),
        RunData(_pairs(data.get("tags")), _pairs(data.get("params")),
                {str(m["key"]): float(m["value"]) for m in data.get("metrics") or ()}),
    )


def experiment_of(obj: Mapping[str, Any]) -> Experiment:
    return Experiment(str(obj["experiment_id"]), str(obj["name"]), str(obj.get("lifecycle_stage", "active")),
                      _pairs(obj.get("tags")))


WORKSPACE_HEADER = "X-MLFLOW-WORKSPACE"  # which workspace a request is for, on a server with workspaces


def missing_workspace(shown_uri: str, workspace: str | None, what: str, reason: str) -> TrackingError | None:
    """The one line for a request refused because its team's workspace does not exist yet (None: not that)."""
    if not workspace or f"Workspace '{workspace}' not found" not in reason:
        return None
    return TrackingError(f"MLflow at {shown_uri} has no workspace {workspace!r}: {what} failed; "
                         "`expctl teams apply` makes each team's (docs/teams.md#mlflow)")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> None:
        return None  # the 3xx is raised as an HTTPError: an answer, not followed


class RestSearch:
    """``search_experiments`` and ``search_runs`` of one tracking server, every page, as plain JSON; and
    ``create_run``, the one write that goes through plain REST (so that a lost answer is never blindly resent)."""

    def __init__(self, tracking_uri: str, workspace: str | None = None,
                 identity: tuple[str, str] | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.workspace = workspace  # the MLflow workspace every request is for (None: the server's default)
        self._identity = identity  # (user, password) every request is made as (None: the environment's)
        self.shown_uri = redact(tracking_uri, uri_secrets(tracking_uri))  # what messages quote
        self.base = tracking_uri.rstrip("/") + "/api/2.0/mlflow/"
        self.requests: Counter[str] = Counter()  # endpoint → requests sent, retries included

    # -- one request -------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        token = os.environ.get("MLFLOW_TRACKING_TOKEN") if self._identity is None else None
        user, password = self._identity or (os.environ.get("MLFLOW_TRACKING_USERNAME"),
                                            os.environ.get("MLFLOW_TRACKING_PASSWORD"))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif user and password:
            headers["Authorization"] = "Basic " + base64.standard_b64encode(f"{user}:{password}".encode()).decode()
        if self.workspace:
            headers[WORKSPACE_HEADER] = self.workspace
        return headers

    def _context(self) -> ssl.SSLContext | None:
        if not self.tracking_uri.startswith("https://"):
            return None
        if flag("MLFLOW_TRACKING_INSECURE_TLS"):
            return ssl._create_unverified_context()
        return ssl.create_default_context(cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None)

    def _opener(self) -> urllib.request.OpenerDirector:
        """urllib's opener (environment proxies included), but redirects are not followed: urllib would resend
        the Authorization header to wherever the server points, another host included."""
        context = self._context()
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        return urllib.request.build_opener(*handlers)

    @property
    def identity_name(self) -> str:
        """Whom the requests are made as: the identity's user, else the environment's."""
        return self._identity[0] if self._identity else os.environ.get("MLFLOW_TRACKING_USERNAME", "")

    def answers(self, path: str, timeout: float = 5.0) -> int:
        """The HTTP status of one ``GET /api/<path>`` (0: no answer): what a probe of a feature asks."""
        return self.get(path, timeout)[0]

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
        """One ``GET /api/<path>``: its HTTP status (0: no answer) and its JSON object ({} when none)."""
        request = urllib.request.Request(self.tracking_uri.rstrip("/") + "/api/" + path, headers=self._headers())
        try:
            with self._opener().open(request, timeout=timeout) as resp:
                status, raw = int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), {}
        except (urllib.error.URLError, OSError, ValueError):
            return 0, {}
        try:
            value = json.loads(raw or b"{}")
        except ValueError:
            return status, {}
        return status, value if isinstance(value, dict) else {}

    def _unreachable(self, what: str, reason: str) -> TrackerUnavailable:
        return TrackerUnavailable(f"MLflow at {self.shown_uri} is unreachable: {what} failed: {reason}")

    def _failed(self, what: str, reason: str) -> TrackingError:
        missing = missing_workspace(self.shown_uri, self.workspace, what, reason)
        if missing is not None:
            return missing
        return TrackingError(f"MLflow at {self.shown_uri}: {what} failed: {reason}")

    def post(self, endpoint: str, body: Mapping[str, Any], what: str,
             lost: Callable[[], bool] | None = None) -> dict[str, Any]:
        """POST ``body`` to ``endpoint``; its JSON answer. 429/5xx and connection failures are retried as
        MLflow's client would (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, backoff), then one line. A 429/503 with
        ``Retry-After`` waits as asked (up to ``EXPCTL_HTTP_RETRY_AFTER_MAX`` in all, not counted as a retry);
        asked more, it fails at once with ``TrackerBusy``.

        ``lost`` makes a write that is not idempotent safe to retry: called when the request may have reached
        the server but its answer was lost (a reset, a timeout, a 5xx), it says whether the write is there
        (then ``{}`` is returned, and the caller reads what ``lost`` found); only if not is it sent again."""
        check_environment()
        retries = int(http_setting("MLFLOW_HTTP_REQUEST_MAX_RETRIES"))
        backoff = http_setting("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR")
        jitter = http_setting("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER")
        timeout = http_setting("MLFLOW_HTTP_REQUEST_TIMEOUT")
        data = json.dumps(body).encode()
        attempt, waited, waits = 0, 0.0, 0
        while True:
            if attempt > 1:  # as urllib3's Retry: the first retry at once, then exponential backoff
                time.sleep(backoff * 2 ** (attempt - 1) + random.uniform(0, jitter))
            last = attempt >= retries
            request = urllib.request.Request(self.base + endpoint, data=data, headers=self._headers(), method="POST")
            self.requests[endpoint] += 1
            try:
                with self._opener().open(request, timeout=timeout) as resp:
                    payload = resp.read()
            except urllib.error.HTTPError as exc:
                if 300 <= exc.code < 400:
                    where = exc.headers.get("Location", "") if exc.headers else ""
                    raise self._failed(what, f"the server redirected (HTTP {exc.code}{' to ' if where else ''}"
                                             f"{truncate(where, 80)}); set the tracking URI to where it "
                                             "answers") from exc
                delay = retry_after(exc.headers.get("Retry-After") if exc.headers else None) \
                    if exc.code in (429, 503) else None
                if delay is not None and waits < _MOST_WAITS:
                    budget = retry_after_max()
                    if waited + delay > budget:
                        raise TrackerBusy(f"MLflow at {self.shown_uri} is rate limiting expctl: {what} failed: "
                                          f"HTTP {exc.code} with Retry-After {delay:.0f} s, beyond the "
                                          f"{budget:.0f} s expctl waits (see {RETRY_AFTER_MAX})") from exc
                    time.sleep(delay)
                    waited, waits = waited + delay, waits + 1
                    continue  # the server asked to wait: not a retry
                if exc.code in _RETRIED_STATUSES:
                    if lost is not None and exc.code not in (429, 503) and lost():
                        return {}
                    if not last:
                        attempt += 1
                        continue
                    # as MLflow's client ("Max retries exceeded"): the server is unavailable, stop launching
                    raise self._unreachable(what, f"the server kept answering HTTP {exc.code}") from exc
                raise self._failed(what, self._http_reason(exc)) from exc
            except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out
                reason = getattr(exc, "reason", exc)
                if lost is not None and not isinstance(reason, ConnectionRefusedError) and lost():
                    return {}
                if not last:
                    attempt += 1
                    continue
                text = "the server did not answer in time" if "timed out" in str(reason).lower() else \
                    transport_reason(str(reason))
                raise self._unreachable(what, text) from exc
            try:
                answer = safe_json.loads(payload)
            except ValueError as exc:
                raise self._failed(what, f"the answer is not JSON: {truncate(payload.decode(errors='replace'), 80)}") \
                    from exc
            if not isinstance(answer, dict):
                raise self._failed(what, f"unexpected answer: {truncate(str(answer), 80)}")
            return answer

    def create_run(self, experiment_id: str, tags: Mapping[str, str], start_time: int, run_name: str | None,
                   what: str) -> Run:
        """``runs/create``, exactly once: ``tags`` carry the client-chosen ``expctl.create_id``; when the answer
        is lost the run is searched by it, and created again only if it is not there."""
        key = tags[CREATE_ID]
        found: list[Run] = []

        def lost() -> bool:
            found[:] = self.search_runs([experiment_id], f"tags.`{CREATE_ID}` = '{key}'",
                                        ["attributes.start_time ASC"])
            return bool(found)

        body: dict[str, Any] = {"experiment_id": experiment_id, "start_time": start_time,
                                "user_id": tags.get("mlflow.user", "unknown"),
                                "tags": [{"key": k, "value": v} for k, v in tags.items()]}
        if run_name is not None:
            body["run_name"] = run_name
        answer = self.post("runs/create", body, what, lost=lost)
        if found:
            return found[0]
        try:
            return run_of(answer["run"])
        except (KeyError, TypeError, ValueError) as exc:
            raise self._failed(what, f"unexpected answer: {exc!r}") from exc

    @staticmethod
    def _http_reason(exc: urllib.error.HTTPError) -> str:
        try:
            body = safe_json.loads(exc.read() or b"{}")
        except ValueError:
            body = {}
        if isinstance(body, dict) and body.get("error_code"):
            return truncate(f"{body['error_code']}: {body.get('message', '')}")
        return f"HTTP {exc.code}"

    # -- searches, every page ----------------------------------------------------------------------------

    def _pages(self, endpoint: str, body: dict[str, Any], key: str, what: str) -> Iterator[list[Any]]:
        token: str | None = None
        while True:
            answer = self.post(endpoint, {**body, **({"page_token": token} if token else {})}, what)
            items = answer.get(key) or []
            if not isinstance(items, list):
                raise self._failed(what, f"unexpected answer: {key} is not a list")
            yield items
            token = answer.get("next_page_token") or None
            if not token:
                return

    def search_experiments(self, filter_string: str, page: int = 1000) -> list[Experiment]:
        """Every active experiment matching ``filter_string``."""
        found: list[Experiment] = []
        what = "search experiments"
        for items in self._pages("experiments/search", {"filter": filter_string, "max_results": page,
                                                         "view_type": "ACTIVE_ONLY"}, "experiments", what):
            try:
                found.extend(experiment_of(item) for item in items)
            except (KeyError, TypeError, ValueError) as exc:
                raise self._failed(what, f"unexpected answer: {exc!r}") from exc
        return found

    def search_runs(self, experiment_ids: Sequence[str], filter_string: str, order_by: Sequence[str],
                    page: int = 1000) -> list[Run]:
        """Every active run of ``experiment_ids`` matching ``filter_string``, in ``order_by`` order."""
        found: list[Run] = []
        what = "search runs"
        body = {"experiment_ids": list(experiment_ids), "filter": filter_string, "max_results": page,
                "order_by": list(order_by), "run_view_type": "ACTIVE_ONLY"}
        for items in self._pages("runs/search", body, "runs", what):
            try:
                found.extend(run_of(item) for item in items)
            except (KeyError, TypeError, ValueError) as exc:
                raise self._failed(what, f"unexpected answer: {exc!r}") from exc
        return found


__all__ = ["Experiment", "RestSearch", "Run", "RunData", "RunInfo", "usable"]
