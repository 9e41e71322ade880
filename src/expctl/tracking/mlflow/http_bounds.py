"""How long a dead or failing MLflow server may hold a command: MLflow's HTTP retry loop, bounded.

No MLflow import: the bounds are environment variables MLflow reads at request time, set (unless the user set
them) before the client is built, and ``transport_reason`` turns MLflow's transport errors, which quote whole
urllib3 reprs, into a few words without credentials.
"""

from __future__ import annotations

import email.utils
import math
import os
import re
import time

from expctl.core.errors import ExpctlError, truncate
from expctl.core.sanitize import one_line, redact

# MLflow's own HTTP retry loop defaults to 7 retries with exponential backoff and a 120 s timeout per request:
# over four minutes before a dead server is reported. expctl bounds it (the user's own settings win): a down
# or hung server is caught by ``check`` (5 s, no retries) before the client is built; 5xx/429 are retried
# twice (about 3 s); a server that hangs mid-command costs at most 3 x 10 s.
HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER": "false",  # a Retry-After of an hour must not hang a command
}


# how MLflow reads each variable (mlflow.environment_variables): a value it cannot parse is a traceback in the
# middle of a request (``int('abc')``), and so is a credential no HTTP header can carry (a newline in a token)
_LEAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": 0, "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": 0,
          "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": 0, "MLFLOW_HTTP_REQUEST_TIMEOUT": 1}
_BOOLEANS = ("MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER", "MLFLOW_TRACKING_INSECURE_TLS")
_HEADER_VALUES = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def http_setting(name: str) -> float:
    """One of the numbers of ``HTTP_BOUNDS`` (the user's value, else expctl's), checked as MLflow reads it."""
    raw = os.environ.get(name) or HTTP_BOUNDS[name]
    try:
        value = float(raw) if name == "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER" else int(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < _LEAST[name]:
        kind = "a number" if name == "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER" else "a whole number"
        raise ExpctlError(f"{name}: must be {kind}, {_LEAST[name]} or more (got {one_line(raw, 40)!r})")
    return value


def flag(name: str) -> bool:
    """A boolean variable of MLflow's (``true``/``false``/``1``/``0``, any case; unset is false)."""
    raw = os.environ.get(name, "")
    if raw.lower() not in ("", "true", "false", "1", "0"):
        raise ExpctlError(f"{name}: must be true or false (got {one_line(raw, 40)!r})")
    return raw.lower() in ("true", "1")


def check_environment() -> None:
    """Every MLflow HTTP variable expctl or MLflow will read: one line naming the variable, before a request."""
    for name in _LEAST:
        http_setting(name)
    for name in _BOOLEANS:
        flag(name)
    retry_after_max()
    for name in _HEADER_VALUES:  # the value is a secret: never quoted
        if any(not ch.isprintable() for ch in os.environ.get(name, "")):
            raise ExpctlError(f"{name}: holds a control character (a trailing newline?), which no HTTP header "
                              "can carry (the value is not shown)")


# A 429 or 503 with ``Retry-After`` is honoured by expctl's own requests (``rest_search``): it waits as the
# server asks, up to this many seconds per request in all, and says "rate limited" when the server asks more.
RETRY_AFTER_MAX = "EXPCTL_HTTP_RETRY_AFTER_MAX"
_RETRY_AFTER_DEFAULT = 60.0


def retry_after_max() -> float:
    """How long one request may wait in all for ``Retry-After`` (``EXPCTL_HTTP_RETRY_AFTER_MAX``, seconds)."""
    raw = os.environ.get(RETRY_AFTER_MAX) or str(_RETRY_AFTER_DEFAULT)
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ExpctlError(f"{RETRY_AFTER_MAX}: must be a number of seconds, 0 or more (got {one_line(raw, 40)!r})")
    return value


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """The seconds a ``Retry-After`` header asks for (a number, or an HTTP date); None when absent or unreadable."""
    text = (value or "").strip()
    if not text:
        return None
    if re.fullmatch(r"\d{1,10}", text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def bound_http_retries() -> None:
    """Apply ``HTTP_BOUNDS`` to this process (a variable the user set keeps its value)."""
    for name, value in HTTP_BOUNDS.items():
        os.environ.setdefault(name, value)


def transport_reason(text: str) -> str:
    """MLflow's transport errors quote whole urllib3 reprs: say what happened in a few words instead (any URL
    quoted keeps no user information: ``sanitize.redact``)."""
    if "Failed to establish a new connection" in text or "Connection refused" in text:
        return "the server is unreachable (connection refused)"
    if "Read timed out" in text or ("timed out" in text.lower() and "Max retries" in text):
        return "the server did not answer in time"
    match = re.search(r"too many (\d{3}) error responses", text)
    if match and match.group(1) == "429":
        return "the server kept answering HTTP 429 (rate limited)"
    if match:
        return f"the server kept answering HTTP {match.group(1)}"
    if "Connection aborted" in text or "Connection reset" in text or "RemoteDisconnected" in text:
        return "the server dropped the connection"
    return truncate(redact(text))
