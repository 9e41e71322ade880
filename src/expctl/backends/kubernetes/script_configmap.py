"""The git-sync script's ConfigMap (``manifests.common.git_sync_configmap``), made sure of before a namespace's jobs.

A v1 job's init container runs the script from that ConfigMap; a pod whose ConfigMap is missing never starts.
So every backend (one per command) creates it in a namespace before the first job it creates there — also when
the namespace already has jobs (the ConfigMap may have been deleted, or the script changed: a new name) — with
one POST per namespace, not per job; 409 AlreadyExists is success. A user who may not create ConfigMaps there
(403) can still apply when the ConfigMap exists already (one GET tells). ``plan`` never calls it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from expctl.backends.kubernetes.manifests import gitsync
from expctl.backends.kubernetes.manifests.common import git_sync_configmap
from expctl.backends.kubernetes.retry import ApiError


class ScriptConfigMaps:
    """Creates the script's ConfigMap once per namespace through ``request`` (``KubernetesBackend.request``)."""

    def __init__(self, core: Any, request: Callable[..., Any], timeout: tuple[float, float]) -> None:
        self._core = core
        self._request = request
        self._timeout = timeout
        self._ready: set[str] = set()
        self._lock = threading.Lock()  # creates run concurrently: the first one in a namespace creates it

    def ensure(self, namespace: str) -> None:
        """Make sure the ConfigMap exists in ``namespace`` (ApiError when it cannot be created and is missing)."""
        if namespace in self._ready:
            return
        with self._lock:
            if namespace in self._ready:
                return
            name = gitsync.configmap_name()
            body = git_sync_configmap(namespace)
            try:
                self._request("create", "configmaps", namespace, lambda: self._core.create_namespaced_config_map(
                    namespace, body, _request_timeout=self._timeout), name)
            except ApiError as exc:
                if exc.status != 409 and not (exc.status == 403 and self._exists(namespace, name)):
                    raise  # a 403 says what the user may not do: create it (the GET's own 403 would not)
            self._ready.add(namespace)

    def _exists(self, namespace: str, name: str) -> bool:
        """Whether the ConfigMap is there already (made by an admin, say), for a user who may not create it."""
        try:
            self._request("get", "configmaps", namespace, lambda: self._core.read_namespaced_config_map(
                name, namespace, _request_timeout=self._timeout), name)
        except ApiError:
            return False
        return True
