"""``expctl teams apply`` on Kubernetes: observe the teams' objects expctl manages (one LIST per kind, by the
managed-by label), find what stands in the way (an object of a desired name expctl did not create; a namespace to
delete that holds others' objects), and write one change (POST, PUT or merge-PATCH a Namespace, DELETE).
A team's Kueue queue that expctl does not make (a team without ``gpus:``) is checked: a LocalQueue or its
ClusterQueue that does not exist is a note of the plan (the team's runs would wait for ever).
Requests go through the backend's throttled, retried ``request``; failures are one-line ``BackendError``s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from expctl.backends.kubernetes.backend import KubernetesBackend, open_kubernetes
from expctl.backends.kubernetes.manifests import gitsync
from expctl.backends.kubernetes.manifests.common import MANAGED_BY, MANAGED_SELECTOR, MANAGER, SPEC_HASH
from expctl.backends.kubernetes.manifests.common import TEAM as TEAM_LABEL
from expctl.backends.kubernetes.retry import ApiError
from expctl.backends.kubernetes.team_objects import ORDER, TRAINING, render_teams
from expctl.core.errors import BackendError
from expctl.core.team_platform import JOB_SECRET, PlatformAction, PlatformChange, PlatformObject, Team

Key = tuple[str, str, str]
# kind → (API path prefix, plural, namespaced)
PATHS = {
    "Namespace": ("/api/v1", "namespaces", False),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Secret": ("/api/v1", "secrets", True),
    "ResourceQuota": ("/api/v1", "resourcequotas", True),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "ResourceFlavor": ("/apis/kueue.x-k8s.io/v1beta2", "resourceflavors", False),
    "Cohort": ("/apis/kueue.x-k8s.io/v1beta2", "cohorts", False),
    "ClusterQueue": ("/apis/kueue.x-k8s.io/v1beta2", "clusterqueues", False),
    "LocalQueue": ("/apis/kueue.x-k8s.io/v1beta2", "localqueues", True),
}
# what a namespace may hold that nobody created: the default ServiceAccount, its token, the root CA
_BUILT_IN = {("serviceaccounts", "default"), ("configmaps", "kube-root-ca.crt")}
_HELD = (("/api/v1", "pods"), ("/api/v1", "services"), ("/api/v1", "configmaps"), ("/api/v1", "secrets"),
         ("/api/v1", "serviceaccounts"), ("/api/v1", "persistentvolumeclaims"),
         *((f"/apis/{g}/v1", p) for g, plurals in TRAINING.items() for p in plurals))


class KubeTeams:
    """The teams' objects on one cluster (through ``backend``'s client, throttle and retrier)."""

    backend_name = "kubernetes"
    order = ORDER

    def __init__(self, backend: KubernetesBackend) -> None:
        self.backend = backend
        self.notes: list[str] = []
        self._teams: Sequence[Team] = ()

    def _call(self, verb: str, kind: str, path: str, method: str, namespace: str = "", name: str = "",
              body: Any = None, query: Sequence[tuple[str, str]] = (), content_type: str = "application/json") -> Any:
        client = self.backend.api_client

        def call() -> Any:
            param = client.param_serialize(method=method, resource_path=path, query_params=list(query) or None,
                                           header_params={"Accept": "application/json", "Content-Type": content_type},
                                           body=body, auth_settings=["BearerToken"])
            response = client.call_api(*param, _request_timeout=(5.0, 60.0))
            response.read()
            return client.response_deserialize(response, {"2XX": "object"}).data  # ApiException otherwise

        return self.backend.request(verb, PATHS[kind][1] if kind in PATHS else kind, namespace or "(cluster)",
                                    call, name)

    def _url(self, kind: str, namespace: str, name: str = "") -> str:
        prefix, plural, namespaced = PATHS[kind]
        where = f"/namespaces/{namespace}" if namespaced else ""
        return f"{prefix}{where}/{plural}" + (f"/{name}" if name else "")

    def desired(self, teams: Sequence[Team]) -> list[PlatformObject]:
        self._teams = teams
        return render_teams(teams)

    def observe(self, desired: Sequence[PlatformObject]) -> tuple[list[PlatformObject], dict[Key, str]]:
        """The managed objects, and what stands in the way: ``{key: why}`` for desired names held by objects
        expctl did not create, and for managed namespaces that hold others' objects."""
        observed: list[PlatformObject] = []
        served = set(PATHS)
        for kind, (prefix, plural, _) in PATHS.items():
            try:
                found = self._call("list", kind, f"{prefix}/{plural}", "GET",
                                   query=[("labelSelector", MANAGED_SELECTOR)])
            except ApiError as exc:
                if exc.status == 404 and not any(o.kind == kind for o in desired):
                    served.discard(kind)
                    continue  # Kueue not installed, and not needed
                if exc.status == 404:
                    raise BackendError(f"the cluster does not serve {plural} ({prefix[6:] or 'core'}): install "
                                       "Kueue's CRDs, or declare no kubernetes.queue") from exc
                raise
            for item in (found or {}).get("items") or []:
                meta = item.get("metadata") or {}
                labels = meta.get("labels") or {}
                observed.append(PlatformObject(kind, meta.get("name", ""), meta.get("namespace") or "",
                                               labels.get(TEAM_LABEL, ""),
                                               (meta.get("annotations") or {}).get(SPEC_HASH, "")))
        managed = {o.key for o in observed}
        blocked: dict[Key, str] = {}
        for obj in desired:
            if obj.key not in managed and self._exists(obj):
                blocked[obj.key] = (f"{obj.shown} exists and was not created by expctl" if obj.kind != "Namespace"
                                    else "exists, not created by expctl: used as is, never deleted")
        wanted = {o.key for o in desired}
        for obj in observed:
            if obj.kind == "Namespace" and obj.key not in wanted:
                held = self.foreign_in(obj.name)
                if held:
                    blocked[obj.key] = f"holds objects expctl did not create ({', '.join(held[:3])}): not deleted"
        self.notes = self._queue_notes({(o.kind, o.namespace, o.name) for o in desired}, "LocalQueue" in served)
        return observed, blocked

    def _queue_notes(self, desired: set[Key], kueue: bool) -> list[str]:
        """Why a team's runs would never be admitted: its LocalQueue, made by someone else (expctl makes it only
        with the team's ``gpus``), or that queue's ClusterQueue does not exist."""
        notes = []
        for team in self._teams:
            ns, queue = team.namespace, team.queue
            if not ns or not queue or ("LocalQueue", ns, queue) in desired:
                continue
            where = f"team {team.name}: LocalQueue {ns}/{queue}"
            if not kueue:
                notes.append(f"{where}: the cluster does not serve Kueue's LocalQueues: its runs start unqueued")
                continue
            local = self._read("LocalQueue", ns, queue)
            cluster_queue = str(((local or {}).get("spec") or {}).get("clusterQueue") or "")
            if local is None:
                notes.append(f"{where} does not exist: its runs would wait for ever (expctl makes it, with a "
                             "ClusterQueue, for a team with gpus:; else the cluster's admin)")
            elif cluster_queue and self._read("ClusterQueue", "", cluster_queue) is None:
                notes.append(f"{where} points to ClusterQueue {cluster_queue}, which does not exist: its runs "
                             "would wait for ever (the cluster's admin creates it)")
        return notes

    def _read(self, kind: str, namespace: str, name: str) -> Any:
        """The object, or None when it does not exist."""
        try:
            return self._call("get", kind, self._url(kind, namespace, name), "GET", namespace, name) or {}
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def _exists(self, obj: PlatformObject) -> bool:
        return self._read(obj.kind, obj.namespace, obj.name) is not None

    def foreign_in(self, namespace: str) -> list[str]:
        """``plural/name`` of the objects in ``namespace`` that expctl's teams apply did not create."""
        held: list[str] = []
        for prefix, plural in _HELD:
            try:
                found = self._call("list", plural, f"{prefix}/namespaces/{namespace}/{plural}", "GET", namespace)
            except ApiError as exc:
                if exc.status == 404:
                    continue
                raise
            for item in (found or {}).get("items") or []:
                meta = item.get("metadata") or {}
                name = meta.get("name", "")
                ours = ((meta.get("labels") or {}).get(MANAGED_BY) == MANAGER
                        and (plural == "serviceaccounts" or (plural, name) == ("secrets", JOB_SECRET)
                             or (plural == "configmaps" and name.startswith(gitsync.CONFIGMAP_PREFIX))))
                token = item.get("type") == "kubernetes.io/service-account-token"
                if not ours and not token and (plural, name) not in _BUILT_IN:
                    held.append(f"{plural}/{name}")
        return held

    def write(self, change: PlatformChange) -> None:
        obj = change.obj
        url = self._url(obj.kind, obj.namespace)
        if change.action is PlatformAction.CREATE:
            self._call("create", obj.kind, url, "POST", obj.namespace, obj.name, dict(obj.body))
        elif change.action is PlatformAction.DELETE:
            try:
                self._call("delete", obj.kind, self._url(obj.kind, obj.namespace, obj.name), "DELETE",
                           obj.namespace, obj.name, {"propagationPolicy": "Background"})
            except ApiError as exc:
                if exc.status != 404:
                    raise
        elif change.action is PlatformAction.UPDATE and obj.kind == "Namespace":
            self._call("patch", obj.kind, self._url(obj.kind, "", obj.name), "PATCH", "", obj.name,
                       {"metadata": {"labels": obj.body["metadata"]["labels"],
                                     "annotations": obj.body["metadata"]["annotations"]}},
                       content_type="application/merge-patch+json")
        elif change.action is PlatformAction.UPDATE:
            at = self._url(obj.kind, obj.namespace, obj.name)
            current = self._call("get", obj.kind, at, "GET", obj.namespace, obj.name) or {}
            body = dict(obj.body)
            body["metadata"] = {**obj.body["metadata"],
                                "resourceVersion": (current.get("metadata") or {}).get("resourceVersion")}
            self._call("update", obj.kind, at, "PUT", obj.namespace, obj.name, body)


def open_teams(settings: Any) -> KubeTeams:
    """The reconciler of the cluster an ``expctl.yaml`` describes (its kubeconfig context)."""
    return KubeTeams(open_kubernetes(settings))
