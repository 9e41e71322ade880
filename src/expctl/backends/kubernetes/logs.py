"""A training job's pods and their logs, read through the API client that ``KubernetesBackend`` hands over.

``PodReader`` lists a job's pods by its pod-selector label and streams a container's log; every request goes
through the backend's ``request`` (token bucket, retrier, one-line errors). Which pods a replica name selects,
and how byte streams become lines, are the pure helpers of ``kube_pods``. Like ``kube_lock``, this module
imports no Kubernetes library itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from expctl.backends.kubernetes.manifests import KindInfo
from expctl.backends.kubernetes.pods import merge_streams, replica_names, select_pods, split_lines


class PodReader:
    """Reads the pods of training jobs and their containers' logs.

    ``core_api`` is the client's ``CoreV1Api``; ``call(verb, resource, namespace, fn, name)`` runs one request
    (see ``KubernetesBackend.request``); ``sanitize`` turns the client's models into plain JSON.
    """

    def __init__(self, core_api: Any, call: Callable[..., Any], sanitize: Callable[[Any], Any],
                 timeout: tuple[float, float]) -> None:
        self.api = core_api
        self.call = call
        self.sanitize = sanitize
        self.timeout = timeout

    def _pods(self, info: KindInfo, namespace: str, name: str) -> list[dict[str, Any]]:
        pods: Any = self.call(
            "list",
            "pods",
            namespace,
            lambda: self.api.list_namespaced_pod(
                namespace, label_selector=f"{info.pod_selector_label}={name}", _request_timeout=self.timeout
            ),
        )
        items: list[dict[str, Any]] = self.sanitize(pods).get("items") or []
        return items

    def names(self, info: KindInfo, namespace: str, name: str, replica: str | None) -> list[str]:
        """The job's pod names, or one replica's (see ``kube_pods.select_pods``)."""
        return select_pods(self._pods(info, namespace, name), info, replica)

    def replicas(self, info: KindInfo, namespace: str, name: str) -> list[str]:
        """The job's replicas that have pods (``master-0``, ``worker-1``)."""
        return replica_names(self._pods(info, namespace, name), info)

    def lines(self, namespace: str, pods: list[str], container: str, follow: bool) -> Iterator[str]:
        """The pods' logs: one pod's as they are; several, each line prefixed ``[<pod>]`` — pod after pod, or,
        when following, as the lines come."""
        streams = [self._log(namespace, pod, container, follow) for pod in pods]
        if len(streams) == 1:
            yield from streams[0]
            return
        if not follow:
            for pod, lines in zip(pods, streams, strict=True):
                yield from (f"[{pod}] {line}" for line in lines)
            return
        yield from merge_streams({pod: lines for pod, lines in zip(pods, streams, strict=True)})

    def _log(self, namespace: str, pod: str, container: str, follow: bool) -> Iterator[str]:
        resp = self.call(
            "get",
            "pods/log",
            namespace,
            lambda: self.api.read_namespaced_pod_log(
                pod, namespace, container=container, follow=follow, _preload_content=False
            ),
            pod,
        )
        try:
            yield from split_lines(resp.stream(4096))
        finally:
            resp.release_conn()
