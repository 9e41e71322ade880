"""Reaching the cluster: the API client of a kubeconfig (one line naming the file when it cannot be loaded) and a
fast check that the apiserver answers. The Kubernetes client is imported lazily (``expctl --help`` stays fast).
"""

from __future__ import annotations

import os
from typing import Any

from expctl.backends.kubernetes.kubeconfig import load_errors, load_problem
from expctl.core.errors import BackendError, truncate


def api_client(path: str | None = None, context: str | None = None) -> Any:
    """An API client on the kubeconfig at ``path`` (default: $KUBECONFIG, ~/.kube/config, else in-cluster)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        # $KUBECONFIG is read now (the client reads it once, at import time); it may list several files
        path = path or os.environ.get("KUBECONFIG") or None
        if path or os.path.exists(os.path.expanduser("~/.kube/config")):
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, context=context, client_configuration=configuration
            )
        else:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except load_errors(config.ConfigException) as exc:  # one line naming the file, never a traceback
        raise BackendError(f"cannot load Kubernetes credentials: {load_problem(exc, path)}") from exc
    configuration.retries = False  # expctl's retrier decides, once (urllib3 would retry silently too)
    return client.ApiClient(configuration)


def check(api_client: Any, timeout: tuple[float, float] = (3.0, 5.0)) -> None:
    """Fail fast, in one line, when the apiserver is unreachable or unhealthy: one short ``GET /version``, no
    retries (a dead server would otherwise cost every command the retrier's whole budget)."""
    from kubernetes import client

    host = api_client.configuration.host
    try:
        client.VersionApi(api_client).get_code(_request_timeout=timeout)
    except client.ApiException as exc:
        if exc.status is not None and exc.status < 500:  # forbidden or absent: the server answered
            return
        raise BackendError(f"Kubernetes API at {host} is unhealthy: /version answered HTTP {exc.status}") from exc
    except Exception as exc:
        if not is_network(exc):
            raise
        reason = getattr(exc, "reason", exc)
        raise BackendError(f"Kubernetes API at {host} is unreachable: {truncate(str(reason), 160)}") from exc


def is_network(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure to reach the server (no answer), not an answer."""
    import urllib3.exceptions

    return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError)
