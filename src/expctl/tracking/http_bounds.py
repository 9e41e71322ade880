"""How long a dead or failing MLflow server may hold a command: MLflow's HTTP retry loop, bounded.

No MLflow import: the bounds are environment variables MLflow reads at request time, set (unless the user set
them) before the client is built, and ``transport_reason`` turns MLflow's transport errors, which quote whole
urllib3 reprs, into a few words without credentials.
"""

from __future__ import annotations

import os
import re

from expctl.errors import truncate
from expctl.sanitize import redact

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
    if match:
        return f"the server kept answering HTTP {match.group(1)}"
    if "Connection aborted" in text or "Connection reset" in text or "RemoteDisconnected" in text:
        return "the server dropped the connection"
    return truncate(redact(text))
