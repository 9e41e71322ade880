"""Why Kueue keeps a job waiting: a pending job's Kueue Workload (owned by the job) says so in its
``QuotaReserved`` condition (status False: not admitted, with Kueue's message, e.g. insufficient quota in the
team's ClusterQueue); ``status`` shows that message as the run's reason. ``read_reasons`` lists the Workloads
through the backend's throttled, retried ``request``; the rest is pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from expctl.backends.kubernetes.manifests.common import KUEUE_QUEUE
from expctl.backends.kubernetes.retry import ApiError
from expctl.core.model import ObservedRun, Phase

WORKLOADS = ("kueue.x-k8s.io", "v1beta2", "workloads")


def pending_reasons(workloads: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """``{(owner kind, owner name): message}`` of the workloads whose quota is not reserved."""
    out: dict[tuple[str, str], str] = {}
    for wl in workloads:
        conditions = (wl.get("status") or {}).get("conditions") or []
        cond = next((c for c in conditions if c.get("type") == "QuotaReserved"), None)
        if cond is None or cond.get("status") != "False":
            continue
        message = " ".join(str(cond.get("message") or cond.get("reason") or "").split())
        for owner in (wl.get("metadata") or {}).get("ownerReferences") or []:
            out[(str(owner.get("kind", "")), str(owner.get("name", "")))] = message
    return out


def explained(run: ObservedRun, reasons: Mapping[tuple[str, str], str]) -> ObservedRun:
    """``run`` with Kueue's reason as its message while it is pending (unchanged otherwise)."""
    why = reasons.get((run.kind, run.name))
    return replace(run, message=f"queued: {why}") if why and run.phase is Phase.PENDING else run


def queued(obj: Mapping[str, Any]) -> bool:
    """Whether a job names a Kueue queue (Kueue admits it)."""
    return KUEUE_QUEUE in ((obj.get("metadata") or {}).get("labels") or {})


def read_reasons(request: Callable[..., Any], custom: Any, namespaces: Iterable[str],
                 timeout: tuple[float, float]) -> dict[tuple[str, str], str]:
    """Kueue's reasons for the jobs it holds in ``namespaces`` (none where Kueue or the right to read is missing):
    one LIST of Workloads per namespace through ``request`` (``KubernetesBackend.request``)."""
    out: dict[tuple[str, str], str] = {}
    for namespace in namespaces:
        try:
            found = request("list", "workloads", namespace, lambda ns=namespace: custom.list_namespaced_custom_object(
                *WORKLOADS[:2], ns, WORKLOADS[2], _request_timeout=timeout))
        except ApiError as exc:
            if exc.status in (403, 404):
                continue
            raise
        out.update(pending_reasons(found.get("items") or []))
    return out
