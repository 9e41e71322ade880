"""MLflow's retry loop is bounded (the user's own settings win) and its transport errors read in a few words."""

from __future__ import annotations

import pytest

from expctl.tracking.mlflow.http_bounds import HTTP_BOUNDS, bound_http_retries, transport_reason


def test_bounds_are_set_unless_the_user_set_them(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in HTTP_BOUNDS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "42")
    bound_http_retries()
    import os

    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "42"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    # worst case for a server answering 5xx: retries x backoff, far under the 15 s budget
    retries, factor = int(HTTP_BOUNDS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]), int(HTTP_BOUNDS[
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"])
    assert sum(factor * 2 ** i for i in range(retries)) < 15


@pytest.mark.parametrize(("text", "expected"), [
    ("API request to http://h/api failed with exception HTTPConnectionPool(host='127.0.0.1', port=1): Max retries "
     "exceeded with url: /x (Caused by NewConnectionError('Failed to establish a new connection: [Errno 111] "
     "Connection refused'))", "the server is unreachable (connection refused)"),
    ("HTTPConnectionPool(host='h', port=1): Max retries exceeded with url: /x (Caused by ResponseError('too many "
     "503 error responses'))", "the server kept answering HTTP 503"),
    ("HTTPConnectionPool(host='h', port=1): Read timed out. (read timeout=10)", "the server did not answer in time"),
    ("('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))",
     "the server dropped the connection"),
    ("RESOURCE_DOES_NOT_EXIST: Run 'x' not found", "RESOURCE_DOES_NOT_EXIST: Run 'x' not found"),
    ("API request to http://ci:hunter2@h/api/2.0/mlflow/runs/get failed: bad gateway",
     "API request to http://***@h/api/2.0/mlflow/runs/get failed: bad gateway"),  # no credentials in a message
])
def test_transport_reason(text: str, expected: str) -> None:
    assert transport_reason(text) == expected
