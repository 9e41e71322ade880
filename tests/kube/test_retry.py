"""Retries, throttling and stream helpers (pure), and a retry through a real apiserver outage."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
import urllib3.exceptions

from expctl.backends.kubernetes.backend import KubernetesBackend
from expctl.backends.kubernetes.retry import (
    Retrier,
    RetrySettings,
    TokenBucket,
    api_error,
    backoff,
    is_transient,
    retry_after,
)
from tests.support.kube_cluster import Cluster
from tests.support.kube_driver import make_backend


class HttpError(Exception):
    """Shaped like the client's ApiException: status, reason, headers, body."""

    def __init__(self, status: int, headers: dict[str, str] | None = None, body: str = "") -> None:
        super().__init__(status)
        self.status = status
        self.reason = "Reason"
        self.headers = headers or {}
        self.body = body


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (HttpError(500), True),
        (HttpError(502), True),
        (HttpError(503), True),
        (HttpError(504), True),
        (HttpError(429), True),
        (HttpError(501), False),
        (HttpError(400), False),
        (HttpError(401), False),
        (HttpError(403), False),
        (HttpError(404), False),
        (HttpError(409), False),
        (HttpError(422), False),
        (urllib3.exceptions.NewConnectionError(None, "refused"), True),  # type: ignore[arg-type]
        (urllib3.exceptions.ReadTimeoutError(None, "/", "timed out"), True),  # type: ignore[arg-type]
        (urllib3.exceptions.ProtocolError("connection reset"), True),
        (urllib3.exceptions.MaxRetryError(None, "/", urllib3.exceptions.ProtocolError("x")), True),  # type: ignore[arg-type]
        (urllib3.exceptions.SSLError("bad certificate"), False),
        (urllib3.exceptions.MaxRetryError(None, "/", urllib3.exceptions.SSLError("x")), False),  # type: ignore[arg-type]
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (ValueError("a bug"), False),
    ],
)
def test_is_transient(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"Retry-After": "-3"}, 0.0),
        ({"Retry-After": "Thu, 01 Jan 1970 00:01:40 GMT"}, 40.0),  # an HTTP date, 100s after epoch; now = 60
        ({"Retry-After": "soon"}, None),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after(HttpError(429, headers), now=lambda: 60.0) == expected


def test_backoff_is_exponential_capped_and_jittered_down() -> None:
    s = RetrySettings(initial_delay=0.5, max_delay=4.0, jitter=0.5)
    assert [backoff(n, s, rand=lambda: 0.0) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert backoff(2, s, rand=lambda: 1.0) == 0.5


def test_retrier_retries_transient_honours_retry_after_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    slept: list[float] = []
    failures: list[BaseException] = [
        HttpError(503),
        HttpError(429, {"Retry-After": "3"}),
        ConnectionResetError(),
    ]
    retrier = Retrier(RetrySettings(attempts=5, initial_delay=1.0, jitter=0.0), sleep=slept.append)

    def call() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    with caplog.at_level(logging.WARNING, logger="expctl.backends.kube_retry"):
        assert retrier.call(call, "list pytorchjobs in team-a") == "ok"
    assert slept == [1.0, 3.0, 4.0]
    assert [r.getMessage() for r in caplog.records] == [
        "list pytorchjobs in team-a: attempt #1/5 failed; will retry in 1.0s: HTTP 503 Reason",
        "list pytorchjobs in team-a: attempt #2/5 failed; will retry in 3.0s: HTTP 429 Reason",
        "list pytorchjobs in team-a: attempt #3/5 failed; will retry in 4.0s: ConnectionResetError: ",
    ]


def test_retrier_fails_fast_on_4xx_and_gives_up_after_bounded_attempts() -> None:
    slept: list[float] = []
    retrier = Retrier(RetrySettings(attempts=3, initial_delay=0.1, jitter=0.0), sleep=slept.append)
    calls = []

    def forbidden() -> None:
        calls.append(1)
        raise HttpError(403)

    with pytest.raises(HttpError):
        retrier.call(forbidden)
    assert (len(calls), slept) == (1, [])

    def down() -> None:
        calls.append(1)
        raise HttpError(500)

    with pytest.raises(HttpError):
        retrier.call(down)
    assert (len(calls), slept) == (4, [0.1, 0.2])


def test_api_error_is_one_line() -> None:
    body = '{"kind":"Status","message":"pytorchjobs.kubeflow.org is forbidden: User \\"ci\\" cannot create"}'
    assert str(api_error(HttpError(403, body=body), "create", "pytorchjobs", "team-b")) == (
        'forbidden: cannot create pytorchjobs in namespace "team-b" (user "ci")'
    )
    long = '{"message": "' + "spec.x: Invalid value\\n" * 100 + '"}'
    msg = str(api_error(HttpError(422, body=long), "create", "tfjobs", "ns", "job-1"))
    assert msg.startswith('create tfjobs/job-1 in namespace "ns" failed: HTTP 422: spec.x: Invalid value')
    assert "\n" not in msg and len(msg) < 400


def test_token_bucket_allows_a_burst_then_paces_at_qps() -> None:
    t = [0.0]
    slept: list[float] = []

    def sleep(d: float) -> None:
        slept.append(d)
        t[0] += d

    bucket = TokenBucket(qps=5, burst=10, clock=lambda: t[0], sleep=sleep)
    waits = [bucket.acquire() for _ in range(15)]
    assert waits[:10] == [0.0] * 10
    assert all(abs(w - 0.2) < 1e-9 for w in waits[10:])
    assert abs(t[0] - 1.0) < 1e-9  # 15 requests: 10 at once, then 5 at 5 QPS


def test_split_lines_and_merge_streams_are_pure_helpers() -> None:
    from expctl.backends.kubernetes.pods import merge_streams, split_lines

    chunks = [b"ep", b"och 1\nepoch", b" 2\n\xc3", b"\xa9t\xc3\xa9\nlast"]
    assert list(split_lines(chunks)) == ["epoch 1", "epoch 2", "été", "last"]
    merged = list(merge_streams({"m-0": iter(["a", "b"]), "w-0": iter(["c"])}))
    assert sorted(merged) == ["[m-0] a", "[m-0] b", "[w-0] c"]
    assert merged.index("[m-0] a") < merged.index("[m-0] b")


@pytest.mark.kube
def test_retry_through_a_real_apiserver_outage(
    kube_cluster: Cluster, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend: KubernetesBackend = make_backend(
        kube_cluster, [namespace], retry=RetrySettings(attempts=30, initial_delay=0.2, max_delay=1.0)
    )
    assert backend.observe() == []
    kube_cluster.stop_apiserver()
    errors: list[BaseException] = []

    def restart_later() -> None:
        time.sleep(1.5)
        try:
            kube_cluster.start()
        except BaseException as exc:
            errors.append(exc)

    restarter = threading.Thread(target=restart_later)
    restarter.start()
    try:
        with caplog.at_level(logging.WARNING, logger="expctl.backends.kube_retry"):
            runs: Any = backend.observe()
    finally:
        restarter.join(timeout=120)
    assert not errors, errors
    assert runs == []
    retries = [r.getMessage() for r in caplog.records if "will retry" in r.getMessage()]
    assert retries, "expected at least one retried request while the apiserver was down"
    assert retries[0].startswith(f"list pytorchjobs in {namespace}: attempt #1/30 failed; will retry in ")
