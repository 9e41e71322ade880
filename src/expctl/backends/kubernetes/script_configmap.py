"""The git-sync script's ConfigMap (``manifests.common.git_sync_configmap``), made sure of before a namespace's jobs.

A v1 job's init container runs the script from that ConfigMap; a pod whose ConfigMap is missing never starts.
So every backend (one per command) creates it in a namespace before the first job it creates there — also when
the namespace already has jobs (the ConfigMap may have been deleted, or the script changed: a new name) — with
one POST per namespace, not per job; 409 AlreadyExists is success. A user who may not create ConfigMaps there
(403) uses the ConfigMap when it exists already (one GET tells); when it does not (or the GET is refused too),
that namespace's jobs carry the script inline, as before ConfigMaps were used (``common.with_inline_script``),
and one warning says so: an upgrade never makes an apply fail for a permission it did not need before.
``plan`` never calls it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from expctl.backends.kubernetes.manifests import gitsync
from expctl.backends.kubernetes.manifests.common import git_sync_configmap
from expctl.backends.kubernetes.retry import ApiError

log = logging.getLogger(__name__)


class ScriptConfigMaps:
    """Creates the script's ConfigMap once per namespace through ``request`` (``KubernetesBackend.request``)."""

    def __init__(self, core: Any, request: Callable[..., Any], timeout: tuple[float, float]) -> None:
        self._core = core
        self._request = request
        self._timeout = timeout
        self._ready: dict[str, bool] = {}
        self._lock = threading.Lock()  # creates run concurrently: the first one in a namespace creates it

    def ensure(self, namespace: str) -> bool:
        """Make sure the ConfigMap exists in ``namespace``: False when this user may not create it and it is not
        there (the jobs then carry the script inline); ApiError for any other failure."""
        known = self._ready.get(namespace)
        if known is not None:
            return known
        with self._lock:
            known = self._ready.get(namespace)
            if known is not None:
                return known
            name = gitsync.configmap_name()
            body = git_sync_configmap(namespace)
            usable = True
            try:
                self._request("create", "configmaps", namespace, lambda: self._core.create_namespaced_config_map(
                    namespace, body, _request_timeout=self._timeout), name)
            except ApiError as exc:
                if exc.status not in (403, 409):
                    raise
                if exc.status == 403 and not self._exists(namespace, name):
                    usable = False
                    log.warning("%s: the jobs in %s carry the git-sync script inline (1.7 KB more in every "
                                "replica); let whoever applies there get and create ConfigMaps (a team's members "
                                "get that from `expctl teams apply`), or create configmap/%s there once",
                                exc, namespace, name)
            self._ready[namespace] = usable
            return usable

    def _exists(self, namespace: str, name: str) -> bool:
        """Whether the ConfigMap is there already (made by an admin, say), for a user who may not create it."""
        try:
            self._request("get", "configmaps", namespace, lambda: self._core.read_namespaced_config_map(
                name, namespace, _request_timeout=self._timeout), name)
        except ApiError:
            return False
        return True
