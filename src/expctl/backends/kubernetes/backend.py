"""The Kubernetes backend: Kubeflow training jobs on a cluster; with ``connect`` (the client of a kubeconfig, the
apiserver's health check), the only module that imports ``kubernetes``.

observe = one paginated LIST per kind and namespace with the managed-by label selector, a pending job Kueue
holds explained by its Workload (``kueue``); create = POST, where 409 with the same spec hash counts as success,
the git-sync script's ConfigMap made sure of once per namespace before its first create (``script_configmap``);
delete = DELETE (background propagation), 404 is success; cancel = record ``expctl.io/cancelled-by``/``-at`` on
the object (which is kept, so apply does not relaunch the run), suspend it when Kueue does not own ``suspend``,
and delete its pods. Every request goes through a token bucket and the retrier (``kube_retry``); failures become
one-line ``BackendError``s. Pods and logs are read by ``kube_logs``, the apply Lease is ``kube_lock``: both
through this module's client objects. A consumer created before its upstream succeeded is held, and released by
the apply that sees it succeed (``gate``). The client library is imported lazily, so importing this module (and
``expctl --help``) stays fast.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expctl.backends.kubernetes import connect, gate, kueue
from expctl.backends.kubernetes.lease import ApiLeaseStore, LeaseLock
from expctl.backends.kubernetes.logs import PodReader
from expctl.backends.kubernetes.manifests import KINDS, KindInfo, KubeSettings, render_manifest
from expctl.backends.kubernetes.manifests.common import (
    CANCELLED_AT,
    CANCELLED_BY,
    MANAGED_BY,
    MANAGED_SELECTOR,
    MANAGER,
    kube_settings,
    namespaces,
    owned_object,
    project_of,
    uses_script_configmap,
    with_inline_script,
)
from expctl.backends.kubernetes.manifests.common import SPEC_HASH as SPEC_HASH_ANNOTATION
from expctl.backends.kubernetes.manifests.training_v1 import SHAPES
from expctl.backends.kubernetes.retry import (
    ApiError,
    Retrier,
    RetrySettings,
    TokenBucket,
    api_error,
    status_of,
    throttled,
)
from expctl.backends.kubernetes.script_configmap import ScriptConfigMaps
from expctl.backends.kubernetes.settings import kubernetes_settings
from expctl.backends.kubernetes.status import decode_list, observed_from
from expctl.config import source
from expctl.core import pipeline
from expctl.core.errors import BackendError, ExpctlError
from expctl.core.model import JobKind, Launch, ObservedRun, Phase

if TYPE_CHECKING:
    from expctl.config.schema import Settings

log = logging.getLogger(__name__)
Obj = dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KubernetesBackend:
    """Kubeflow training jobs in ``namespaces``; ``from_kubeconfig`` builds one from a kubeconfig file."""

    name = "kubernetes"

    def __init__(
        self,
        api_client: Any,
        namespaces: Sequence[str],
        settings: KubeSettings,
        qps: float = 5.0,
        burst: int = 10,
        write_concurrency: int = 4,
        *,
        retry: RetrySettings | None = None,
        request_timeout: tuple[float, float] = (5.0, 60.0),
        page_size: int = 500,
    ) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.settings = settings
        self.namespaces = list(namespaces) or [settings.namespace]
        self.write_concurrency = write_concurrency
        self.page_size = page_size
        self.requests: Counter[str] = Counter()  # "<verb> <resource>" → tries sent (retries included)
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._coordination = client.CoordinationV1Api(api_client)
        self._pods = PodReader(self._core, self.request, api_client.sanitize_for_serialization, request_timeout)
        self._bucket = TokenBucket(qps, burst)
        self._retrier = Retrier(retry)
        self._writes = threading.BoundedSemaphore(max(write_concurrency, 1))
        self._timeout = request_timeout
        self._where: dict[str, tuple[KindInfo, str]] = {}
        self._scripts = ScriptConfigMaps(self._core, self.request, request_timeout)

    @classmethod
    def from_kubeconfig(
        cls,
        path: str | None = None,
        context: str | None = None,
        namespaces: Sequence[str] = (),
        settings: KubeSettings | None = None,
        **kwargs: Any,
    ) -> KubernetesBackend:
        """A backend on the kubeconfig at ``path`` (default: $KUBECONFIG, ~/.kube/config, else in-cluster)."""
        return cls(connect.api_client(path, context), namespaces, settings or KubeSettings(), **kwargs)

    # -- plumbing -------------------------------------------------------------------------------------------

    def check(self, timeout: tuple[float, float] = (3.0, 5.0)) -> None:
        """Fail fast, in one line, when the apiserver is unreachable or unhealthy (``connect.check``)."""
        connect.check(self.api_client, timeout)

    def request(self, verb: str, resource: str, namespace: str, fn: Callable[[], Any], name: str = "") -> Any:
        """Run one API call ``fn``: throttled, retried when transient, failures wrapped into ``ApiError``."""

        def counted() -> Any:
            self.requests[f"{verb} {resource}"] += 1
            return fn()

        what = f"{verb} {resource}{'/' + name if name else ''} in {namespace}"
        try:
            if verb in ("create", "delete", "patch", "update", "deletecollection"):
                with self._writes:
                    return throttled(self._bucket, self._retrier, counted, what)
            return throttled(self._bucket, self._retrier, counted, what)
        except ApiError:
            raise
        except Exception as exc:
            if status_of(exc) is None and not connect.is_network(exc):
                raise
            raise api_error(exc, verb, resource, namespace, name) from exc

    def _pages(self, info: KindInfo, namespace: str) -> Iterator[list[Obj]]:
        """The managed jobs of a kind in a namespace, one LIST page at a time: each page's raw bytes are decoded
        once (``status.decode_list``) and dropped once the caller has read them, so a sweep's jobs are never all
        held at once (``observe`` keeps an ``ObservedRun`` of each)."""
        token: str | None = None
        while True:

            def page_call(token: str | None = token) -> Obj:
                response: Any = self._custom.list_namespaced_custom_object(
                    info.group, info.version, namespace, info.plural, label_selector=MANAGED_SELECTOR,
                    limit=self.page_size, _continue=token, _request_timeout=self._timeout, _preload_content=False)
                try:
                    return decode_list(response.data)
                finally:
                    response.release_conn()

            page: Obj = self.request("list", info.plural, namespace, page_call)
            yield page.get("items") or []
            token = (page.get("metadata") or {}).get("continue") or None
            if not token:
                return

    def _get(self, info: KindInfo, namespace: str, name: str) -> Obj | None:
        try:
            obj: Obj = self.request(
                "get",
                info.plural,
                namespace,
                lambda: self._custom.get_namespaced_custom_object(
                    info.group, info.version, namespace, info.plural, name, _request_timeout=self._timeout
                ),
                name,
            )
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def _find(self, name: str) -> tuple[KindInfo, str, Obj] | None:
        """The object called ``name`` in this backend's namespaces (last known place first)."""
        places = [self._where[name]] if name in self._where else []
        places += [(i, ns) for ns in self.namespaces for i in KINDS.values() if (i, ns) not in places]
        for info, ns in places:
            obj = self._get(info, ns, name)
            if obj is not None and owned_object(obj, self.settings):  # another project's: not ours
                self._where[name] = (info, ns)
                return info, ns, obj
        return None

    # -- the Backend protocol -------------------------------------------------------------------------------

    def observe(self) -> list[ObservedRun]:
        runs: list[ObservedRun] = []
        queued: set[str] = set()  # namespaces with a pending job of a Kueue queue: Kueue says why
        for namespace in self.namespaces:
            for info in KINDS.values():
                try:
                    for page in self._pages(info, namespace):
                        for obj in page:
                            if not owned_object(obj, self.settings):  # another project's in a shared namespace
                                continue
                            run = observed_from(obj, self.name)
                            self._where[run.name] = (info, namespace)
                            runs.append(run)
                            if run.phase is Phase.PENDING and kueue.queued(obj):
                                queued.add(namespace)
                except ApiError as exc:
                    if exc.status == 404:
                        log.debug("%s is not installed on the cluster; skipping it", info.plural)
                        continue
                    raise
        reasons = kueue.read_reasons(self.request, self._custom, sorted(queued), self._timeout)
        return pipeline.held_outcome(sorted((kueue.explained(r, reasons) for r in runs),
                                            key=lambda r: (r.namespace or "", r.name)))

    def create(self, launch: Launch) -> None:
        info = KINDS.get(launch.spec.job.kind)
        if info is None:
            raise BackendError(f"{launch.name}: job kind {launch.spec.job.kind.value} does not run on Kubernetes")
        manifest = gate.hold(render_manifest(launch, self.settings), pipeline.after(launch.spec))
        namespace = manifest["metadata"]["namespace"]
        if namespace not in self.namespaces:
            allowed = ", ".join(f'"{n}"' for n in self.namespaces)
            raise BackendError(f'refusing to create {launch.name} in namespace "{namespace}": allowed: {allowed}')
        try:
            if uses_script_configmap(manifest) and not self._scripts.ensure(namespace):
                manifest = with_inline_script(manifest)  # no ConfigMap this user may make or read: as before
            self.request(
                "create",
                info.plural,
                namespace,
                lambda: self._custom.create_namespaced_custom_object(
                    info.group, info.version, namespace, info.plural, manifest, _request_timeout=self._timeout
                ),
                launch.name,
            )
        except ApiError as exc:
            team = launch.spec.job.team
            if exc.status == 403 and team:  # name whose namespace it is: the fix is in the team
                raise BackendError(f"{exc}: namespace {namespace} is team {team}'s (its users and "
                                   "groups in expctl.yaml are granted it by `expctl teams apply`)") from exc
            if exc.status == 404 and team:
                raise BackendError(f"{exc}: team {team}'s namespace {namespace} does not exist yet: run "
                                   "`expctl teams apply` (or have the cluster's admin create it)") from exc
            if exc.status != 409:
                raise
            existing = self._get(info, namespace, launch.name)
            meta = (existing or {}).get("metadata") or {}
            have = (meta.get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
            if (meta.get("labels") or {}).get(MANAGED_BY) != MANAGER:
                raise BackendError(
                    f"{info.plural}/{launch.name} in {namespace} exists and is not managed by expctl"
                ) from exc
            if existing is not None and not owned_object(existing, self.settings):
                raise BackendError(
                    f"{info.plural}/{launch.name} in namespace {namespace} belongs to project {project_of(existing)}, "
                    f"not {self.settings.project}: two projects share a namespace and an experiment name (give one "
                    "of them its own namespace)"
                ) from exc
            if have != launch.spec.spec_hash:
                raise BackendError(
                    f"{info.plural}/{launch.name} in {namespace} already exists with spec hash {have}, "
                    f"not {launch.spec.spec_hash}"
                ) from exc
        self._where[launch.name] = (info, namespace)

    def delete(self, name: str) -> None:
        found = self._find(name)
        if found is None:
            return
        info, namespace, obj = found
        if ((obj.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY) != MANAGER:
            raise BackendError(f"refusing to delete {info.plural}/{name} in {namespace}: not managed by expctl")
        try:
            self.request(
                "delete",
                info.plural,
                namespace,
                lambda: self._custom.delete_namespaced_custom_object(
                    info.group,
                    info.version,
                    namespace,
                    info.plural,
                    name,
                    propagation_policy="Background",
                    _request_timeout=self._timeout,
                ),
                name,
            )
        except ApiError as exc:
            if exc.status != 404:
                raise
        self._where.pop(name, None)

    def cancel(self, name: str, by: str) -> None:
        """Mark cancelled (durably: the object stays observable); suspend unless Kueue owns it; stop pods."""
        found = self._find(name)
        if found is None:
            raise BackendError(f"no run named {name} in namespaces {', '.join(self.namespaces)}")
        info, namespace, obj = found
        patch: Obj = {"metadata": {"annotations": {CANCELLED_BY: by, CANCELLED_AT: _now()}}}
        run = observed_from(obj, self.name)
        if not kueue.queued(obj) and not run.phase.finished:
            suspend = {"suspend": True}
            patch["spec"] = suspend if info.kind is JobKind.TRAIN else {"runPolicy": suspend}
        self._patch(info, namespace, name, patch)
        self.request(
            "deletecollection",
            "pods",
            namespace,
            lambda: self._core.delete_collection_namespaced_pod(
                namespace, label_selector=f"{info.pod_selector_label}={name}", _request_timeout=self._timeout
            ),
        )

    def _patch(self, info: KindInfo, namespace: str, name: str, patch: Obj) -> None:
        self.request("patch", info.plural, namespace, lambda: self._custom.patch_namespaced_custom_object(
            info.group, info.version, namespace, info.plural, name, patch,
            _content_type="application/merge-patch+json", _request_timeout=self._timeout), name)

    def release(self, name: str) -> bool:
        """Release a consumer held for its upstream (``gate``): False when it is not held any more, or
        changed since it was read (cancelled, say: the next observation decides again)."""
        found = self._find(name)
        patch = gate.release_patch(found[2]) if found is not None else None
        if found is None or patch is None:
            return False
        try:
            self._patch(found[0], found[1], name, patch)
        except ApiError as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    def uploads_outputs(self, name: str) -> bool:
        """A producer's pod stores its outputs on its MLflow run (``manifests.outputs``; ``UploadsOutputs``)."""
        return True

    def _place(self, name: str) -> tuple[KindInfo, str] | None:
        """Where ``name`` is, as the last observe saw it (no request: its pods tell if it is there), else found."""
        found = self._where.get(name) or self._find(name)
        return None if found is None else (found[0], found[1])

    def logs(self, name: str, replica: str | None = None, follow: bool = False) -> Iterator[str]:
        place = self._place(name)
        pods = [] if place is None else self._pods.names(place[0], place[1], name, replica)
        if not pods:
            found = self._find(name)  # why not: gone, or not scheduled yet
            if found is None:
                raise ExpctlError(f"no run named {name} in namespaces {', '.join(self.namespaces)}")
            phase = observed_from(found[2], self.name).phase.value.lower()
            which = f" for replica {replica}" if replica else ""
            raise ExpctlError(f"run {name} ({phase}) has no pods{which} yet; try again once it is scheduled")
        assert place is not None  # pods were found
        info, namespace = place
        container = self.settings.trainjob_step if info.kind is JobKind.TRAIN else SHAPES[info.kind].container
        yield from self._pods.lines(namespace, pods, container, follow)

    # -- pods (read by kube_logs.PodReader) -----------------------------------------------------------------

    def pods(self, name: str, replica: str | None = None) -> list[str]:
        """The job's pod names, or one replica's: ``worker`` (all workers), ``worker-1``, ``master``."""
        place = self._place(name)
        return [] if place is None else self._pods.names(place[0], place[1], name, replica)

    def replicas(self, name: str) -> list[str]:
        """The job's replicas that have pods (``master-0``, ``worker-1``): what ``logs(replica=...)`` accepts."""
        place = self._place(name)
        return [] if place is None else self._pods.replicas(place[0], place[1], name)

    # -- the apply lock --------------------------------------------------------------------------------------

    def lock(self, name: str = "expctl-apply", namespace: str | None = None, **kwargs: Any) -> LeaseLock:
        """A Lease lock in ``namespace`` (default: the first managed namespace); see ``kube_lock``."""
        return LeaseLock(ApiLeaseStore(self._custom, self.request), namespace or self.namespaces[0], name, **kwargs)


def open_kubernetes(settings: Settings, repo: Path | None = None, state_dir: Path | None = None) -> KubernetesBackend:
    """The backend an ``expctl.yaml`` describes: its context, namespaces (default + tenants), QPS and burst."""
    kube = kubernetes_settings(settings)
    derived = source.project(repo, None) if repo is not None else None
    backend = KubernetesBackend.from_kubeconfig(None, kube.context, namespaces(settings),
                                                kube_settings(settings, derived),
                                                qps=kube.qps, burst=kube.burst,
                                                write_concurrency=kube.write_concurrency)
    backend.check()
    return backend


@contextlib.contextmanager
def lease_lock(settings: Settings, timeout: float, name: str = "expctl-apply") -> Iterator[LeaseLock]:
    """Hold the apply Lease in the project's default namespace for the ``with`` block (LockError on timeout)."""
    backend = open_kubernetes(settings)
    lock = backend.lock(name, kubernetes_settings(settings).namespace, timeout=timeout)
    with lock:
        yield lock

