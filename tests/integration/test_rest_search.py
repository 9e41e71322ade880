"""The one search of every managed run through MLflow's REST API (``tracking/rest_search``), against a real
``mlflow server``: the same view as MLflow's client, page by page, and one-line errors for a failing server."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from expctl.core import audit
from expctl.core.errors import TrackingError
from expctl.core.model import Action, Change, ObservedRun, Phase, Plan, Reason
from expctl.tracking.base import TrackerUnavailable
from expctl.tracking.mlflow import session as mlflow_session
from expctl.tracking.mlflow.rest_search import usable
from expctl.tracking.mlflow.store import MlflowStore
from tests.support.factories import make_spec
from tests.support.mlflow_server import MlflowServer
from tests.support.proxy import FaultProxy, Rule

pytestmark = pytest.mark.integration

AUTHOR = "Test User <test@example.com>"
RUNS = 5


@pytest.fixture(scope="module")
def seeded(mlflow_server: MlflowServer) -> tuple[str, str]:
    """A backend name of its own with RUNS runs of a sweep (its parent too), a finished run with metrics, a
    failed one with its failure tags, and an open audit record."""
    backend = f"rest-{uuid.uuid4().hex[:8]}"
    store = MlflowStore(mlflow_server.uri, backend)
    specs = [make_spec(f"{backend}-sweep", overrides=(f"lr={i}",), config={"lr": i}) for i in range(RUNS)]
    view = store.view()
    refs = [store.ensure_run(spec, 1, AUTHOR, view) for spec in specs]
    client = store.client
    client.log_metric(refs[0].run_id, "loss", 0.5)
    client.log_metric(refs[0].run_id, "loss", 0.25)
    done = ObservedRun(specs[0].run_key, specs[0].name, specs[0].experiment, 1, specs[0].spec_hash,
                       Phase.SUCCEEDED, backend, mlflow_run_id=refs[0].run_id, finished_at=time.time())
    failed = ObservedRun(specs[1].run_key, specs[1].name, specs[1].experiment, 1, specs[1].spec_hash, Phase.FAILED,
                         backend, mlflow_run_id=refs[1].run_id, finished_at=time.time(), message="boom")
    store.sync([done, failed], specs, store.view())
    changes = [Change(Action.CREATE, Reason.MISSING, s.experiment, s.run_key, s.name, s.overrides, s.spec_hash, 1,
                      s) for s in specs[:2]]
    store.begin_audit(audit.new_record(Plan("c" * 40, backend, tuple(changes), "fp"), changes, AUTHOR, ""))
    return mlflow_server.uri, backend


def _runs(view: Any) -> dict[str, tuple[Any, ...]]:
    return {r.info.run_id: (r.info.experiment_id, r.info.status, r.info.start_time, r.info.end_time,
                            dict(r.data.tags), dict(r.data.params), dict(r.data.metrics)) for r in view.index.raw}


class ClientlessStore(MlflowStore):
    """A store whose view must not make an MLflow client (nor import ``mlflow``)."""

    @property
    def client(self) -> Any:
        raise AssertionError("the view needs no MLflow client")


def test_rest_view_equals_the_clients_page_by_page(seeded: tuple[str, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    uri, backend = seeded
    monkeypatch.setattr(mlflow_session, "PAGE", 2)  # several pages of runs
    rest = ClientlessStore(uri, backend)
    assert usable(uri) and rest.rest is not None
    by_client = MlflowStore(uri, backend)
    by_client.rest = None  # the reference: MLflow's own client and entities
    got, want = rest.view(), by_client.view()

    assert got.records == want.records and len(got.records) == RUNS
    assert got.open_audits == want.open_audits and len(got.open_audits) == 1
    assert got.index.runs == want.index.runs and got.index.parents == want.index.parents
    assert _runs(got) == _runs(want)
    assert {r.phase for r in got.records} >= {Phase.SUCCEEDED, Phase.FAILED}
    assert rest.seen_tags == by_client.seen_tags
    assert rest.experiments.items() >= by_client.experiments.items()
    # pages of 2 of every managed run: the sweep's points, its parent, the open audit (the experiments search is
    # paged too: the session's server holds other tests' experiments)
    assert rest.rest.requests["runs/search"] == math.ceil((RUNS + 2) / 2)


@pytest.fixture
def faulty(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")  # a whole number, as MLflow reads it
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")
    proxy = FaultProxy(upstream=mlflow_server.uri.removeprefix("http://")).start()
    yield proxy
    proxy.close()


def _one_line(exc: TrackingError) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text, text
    return text


def test_a_transient_5xx_is_retried(seeded: tuple[str, str], faulty: FaultProxy) -> None:
    _, backend = seeded
    faulty.add(Rule("POST", "runs/search", "status", times=2, status=503))
    assert len(MlflowStore(faulty.url, backend).view().records) == RUNS
    assert faulty.rules[0].hits == 2


def test_a_persistent_5xx_is_an_unavailable_server(seeded: tuple[str, str], faulty: FaultProxy) -> None:
    """As through MLflow's client (its "Max retries exceeded"): the tracker is unavailable, launches stop."""
    _, backend = seeded
    faulty.add(Rule("POST", "runs/search", "status", times=-1, status=500))
    with pytest.raises(TrackerUnavailable) as caught:
        MlflowStore(faulty.url, backend).view()
    assert _one_line(caught.value) == (f"MLflow at {faulty.url} is unreachable: search runs failed: the server "
                                       "kept answering HTTP 500")
    assert faulty.rules[0].hits == 3, "two retries (http_bounds), as MLflow's client"


@pytest.mark.parametrize(("rule", "says"), [
    (Rule("POST", "runs/search", "status", times=-1, status=400,
          payload=b'{"error_code": "INVALID_PARAMETER_VALUE", "message": "bad filter"}'),
     "INVALID_PARAMETER_VALUE: bad filter"),
    (Rule("POST", "runs/search", "status", times=-1, status=200, payload=b"<html>a login page</html>"),
     "the answer is not JSON"),
    (Rule("POST", "runs/search", "status", times=-1, status=200, payload=b'{"runs": [{"info": {}}]}'),
     "unexpected answer"),
    (Rule("POST", "experiments/search", "status", times=-1, status=200, payload=b'{"experiments": 3}'),
     "unexpected answer: experiments is not a list"),
    (Rule("POST", "runs/search", "status", times=-1, status=200, payload=b"[" * 100_000 + b"]" * 100_000),
     "the answer is not JSON"),
    (Rule("POST", "runs/search", "status", times=-1, status=400, payload=b"[" * 100_000 + b"]" * 100_000),
     "HTTP 400"),
], ids=["400 with MLflow's error", "not JSON", "not a run", "not a list", "nested too deeply",
        "a 400 nested too deeply"])
def test_a_failing_search_is_one_line(seeded: tuple[str, str], faulty: FaultProxy, rule: Rule, says: str) -> None:
    _, backend = seeded
    faulty.add(rule)
    with pytest.raises(TrackingError) as caught:
        MlflowStore(faulty.url, backend).view()
    assert not isinstance(caught.value, TrackerUnavailable), "the server answered"
    text = _one_line(caught.value)
    assert text.startswith(f"MLflow at {faulty.url}: search ") and says in text, text


def test_a_server_gone_between_pages_is_unavailable(seeded: tuple[str, str], faulty: FaultProxy,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _, backend = seeded
    monkeypatch.setattr(mlflow_session, "PAGE", 2)
    faulty.add(Rule("POST", "runs/search", "delay", times=1), Rule("POST", "runs/search", "die", times=1))
    with pytest.raises(TrackerUnavailable) as caught:
        MlflowStore(faulty.url, backend).view()
    assert "is unreachable: search runs failed" in _one_line(caught.value)


def test_authentication_only_the_client_knows_keeps_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    assert usable("http://127.0.0.1:5000") and usable("https://mlflow.example.com/prefix")
    assert not usable("sqlite:///tmp/mlflow.db") and not usable("databricks")
    assert not usable("http://user:secret@127.0.0.1:5000")
    monkeypatch.setenv("MLFLOW_TRACKING_AUTH", "some_plugin")
    assert not usable("http://127.0.0.1:5000")


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_the_token_stays_home(code: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib would follow a redirect with the Authorization header, to any host: the search refuses it in one
    line, and the address it points to never sees the request (nor the token)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from expctl.tracking.mlflow.rest_search import RestSearch

    seen: list[str] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(200)
            self.end_headers()

        def do_GET(self) -> None:
            self.do_POST()

        def log_message(self, *args: Any) -> None:
            return

    elsewhere = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    target = f"http://127.0.0.1:{elsewhere.server_address[1]}/api/2.0/mlflow/experiments/search"

    class Redirecting(Elsewhere):
        def do_POST(self) -> None:
            self.send_response(code)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

    redirecting = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    servers = [elsewhere, redirecting]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "s3cr3t-token")
    try:
        uri = f"http://127.0.0.1:{redirecting.server_address[1]}"
        with pytest.raises(TrackingError) as caught:
            RestSearch(uri).search_experiments("name LIKE '%'")
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    text = _one_line(caught.value)
    assert f"the server redirected (HTTP {code} to {target}" in text and "s3cr3t" not in text, text
    assert seen == []
