"""Retries and throttling of Kubernetes API calls: the only module that imports tenacity.

Transient failures — connection errors, timeouts, HTTP 5xx and 429 (honouring ``Retry-After``) — are retried
with jittered exponential backoff, a bounded number of times, each retry logged as
``attempt #2/5 failed; will retry in 1.3s: ...``. Every other error (4xx) fails fast. Errors are recognised
by shape (an ``int`` ``status`` and ``headers``, as on the client's ``ApiException``), so this module needs no
Kubernetes import. A token bucket (client-go's defaults: 5 QPS, burst 10) sits in front of every request;
``api_error`` turns a failed request into a one-line ``ApiError`` (a ``BackendError`` with the HTTP status).
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import tenacity
import urllib3.exceptions

from expctl.core import safe_json
from expctl.core.errors import BackendError, BackendUnavailable, truncate

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetrySettings:
    attempts: int = 5  # total tries, the first one included
    initial_delay: float = 0.5  # seconds before the 2nd try (before jitter); doubles each time
    max_delay: float = 10.0
    jitter: float = 0.5  # a wait is the backoff scaled by a random factor in [1 - jitter, 1]
    max_retry_after: float = 60.0  # cap on a server's Retry-After


def status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) and status > 0 else None


def is_transient(exc: BaseException) -> bool:
    """Whether a failed request is worth repeating: connection, timeout, 5xx (but 501) and 429."""
    status = status_of(exc)
    if status is not None:
        return status == 429 or (status >= 500 and status != 501)
    if isinstance(exc, urllib3.exceptions.SSLError):
        return False
    if isinstance(exc, urllib3.exceptions.MaxRetryError):
        return not isinstance(exc.reason, urllib3.exceptions.SSLError)
    return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError)


def retry_after(exc: BaseException, now: Callable[[], float] = time.time) -> float | None:
    """Seconds the server asked us to wait (``Retry-After``: delta-seconds or an HTTP date), if any."""
    headers: Mapping[str, str] | None = getattr(exc, "headers", None)
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(float(when.timestamp()) - now(), 0.0)


def backoff(attempt: int, settings: RetrySettings, rand: Callable[[], float] = random.random) -> float:
    """Wait after failed try number ``attempt`` (1-based): exponential, capped, jittered downwards."""
    base = min(settings.initial_delay * 2.0 ** max(attempt - 1, 0), settings.max_delay)
    return base * (1.0 - settings.jitter * rand())


def describe(exc: BaseException) -> str:
    status = status_of(exc)
    if status is not None:
        return f"HTTP {status} {getattr(exc, 'reason', '') or ''}".strip()
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}"


class Retrier:
    """Runs a call, repeating it on transient failures; the last failure is re-raised unchanged."""

    def __init__(
        self,
        settings: RetrySettings | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings or RetrySettings()
        self._sleep = sleep
        self._rand = rand

    def wait_for(self, exc: BaseException, attempt: int) -> float:
        hint = retry_after(exc)
        if hint is not None and status_of(exc) in (429, 503):
            return min(hint, self.settings.max_retry_after)
        return backoff(attempt, self.settings, self._rand)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return self.wait_for(exc, state.attempt_number) if exc else 0.0

    def _log(self, what: str) -> Callable[[tenacity.RetryCallState], None]:
        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "%s: attempt #%d/%d failed; will retry in %.1fs: %s",
                what,
                state.attempt_number,
                self.settings.attempts,
                delay,
                describe(exc) if exc else "?",
            )

        return before_sleep

    def call(self, fn: Callable[[], T], what: str = "request") -> T:
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max(self.settings.attempts, 1)),
            retry=tenacity.retry_if_exception(is_transient),
            wait=self._wait,
            before_sleep=self._log(what),
            sleep=self._sleep,
            reraise=True,
        )
        return retrying(fn)


class TokenBucket:
    """Allows ``burst`` requests at once, refilled at ``qps`` per second; ``acquire`` blocks until allowed."""

    def __init__(
        self,
        qps: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("qps must be > 0 and burst >= 1")
        self.qps = qps
        self.burst = burst
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping as long as needed; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1.0
            wait = -self._tokens / self.qps if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


def throttled(bucket: TokenBucket, retrier: Retrier, fn: Callable[[], T], what: str) -> T:
    """``fn`` with a token taken before every try (retries are requests too)."""

    def attempt() -> T:
        bucket.acquire()
        return fn()

    return retrier.call(attempt, what)


class ApiError(BackendError):
    """A failed API request; ``status`` is the HTTP status (None when the server was not reached)."""

    def __init__(self, message: str, status: int | None) -> None:
        self.status = status
        super().__init__(message)


class ApiUnavailable(ApiError, BackendUnavailable):
    """A request that failed transiently (not reached, 5xx, 429) on every try: the apiserver is unavailable."""


def _server_message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body:
        try:
            return str(safe_json.loads(body).get("message") or body)
        except (ValueError, AttributeError):
            return body
    return str(getattr(exc, "reason", "") or "")


def api_error(exc: BaseException, verb: str, resource: str, namespace: str, name: str = "") -> ApiError:
    """One line for a failed request: HTTP status and the server's message, truncated; 403 names who/what."""
    status = status_of(exc)
    target = f"{resource}/{name}" if name else resource
    if status is None:
        error = ApiUnavailable if is_transient(exc) else ApiError
        return error(f'cannot {verb} {target} in namespace "{namespace}": {describe(exc)}', None)
    message = _server_message(exc)
    if status == 403:
        user = re.search(r'User "([^"]*)"', message)
        who = f' (user "{user.group(1)}")' if user else ""
        return ApiError(f'forbidden: cannot {verb} {resource} in namespace "{namespace}"{who}', status)
    error = ApiUnavailable if is_transient(exc) else ApiError
    return error(f'{verb} {target} in namespace "{namespace}" failed: HTTP {status}: {truncate(message)}', status)


__all__ = [
    "ApiError",
    "ApiUnavailable",
    "Retrier",
    "RetrySettings",
    "TokenBucket",
    "api_error",
    "backoff",
    "is_transient",
    "retry_after",
    "throttled",
]
