"""Reading back what ``render`` wrote: a live job object (as JSON data) becomes an ``ObservedRun``.

Pure. Health is per kind (like Argo CD's health checks): v1 jobs report conditions Created, Running,
Restarting, Succeeded, Failed (and Suspended); a TrainJob reports Complete, Failed, Suspended. A suspended job
(Kueue owns ``suspend``: not admitted yet, or preempted) is Pending, never Failed. The cancel annotation wins
over a phase that is not finished. A failure is classified *infrastructure* when its reason or
message names a platform cause (eviction, preemption, OOM kill, node loss, image pull, deadline), else *code*.
``decode_list`` turns a LIST page's raw bytes into that JSON data, as cheaply as the stdlib can.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from expctl.backends.kubernetes.gate import held_by
from expctl.backends.kubernetes.manifests.common import (
    APPLIED_BY,
    ATTEMPT,
    CANCELLED_AT,
    CANCELLED_BY,
    DATA_DIGEST,
    EXPERIMENT,
    EXPERIMENT_NAME,
    GIT_COMMIT,
    MANAGED_BY,
    MANAGER,
    MLFLOW_RUN_ID,
    OVERRIDES,
    RUN_KEY,
    SPEC_HASH,
)
from expctl.core import safe_json
from expctl.core.model import FailureClass, ObservedRun, Phase

INFRASTRUCTURE_MARKERS = (
    "evicted",
    "preempted",
    "preemption",
    "oomkilled",
    "nodelost",
    "node lost",
    "imagepullbackoff",
    "errimagepull",
    "deadlineexceeded",
    "deadline exceeded",
)


def parse_time(value: object) -> float | None:
    """RFC 3339 (``2026-01-02T03:04:05Z``, with or without fraction) to epoch seconds."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _true(conditions: list[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    for cond in conditions:
        if cond.get("type") == kind and str(cond.get("status")) == "True":
            return cond
    return None


_MARKERS = re.compile(r"\b(" + "|".join(re.escape(m) for m in INFRASTRUCTURE_MARKERS) + r")\b")


def classify(reason: str, message: str) -> FailureClass:
    """Infrastructure only when the platform says so (whole words: a message that merely *contains* such a
    word inside another one, like a user's ``grpc_deadline_exceeded_total``, stays a code failure)."""
    text = f"{reason} {message}".lower()
    return FailureClass.INFRASTRUCTURE if _MARKERS.search(text) else FailureClass.CODE


def health(kind: str, status: Mapping[str, Any]) -> tuple[Phase, Mapping[str, Any] | None]:
    """The phase a job's status conditions say, and the condition that decided it (if any)."""
    conditions = list(status.get("conditions") or [])
    done, failed = ("Complete", "Failed") if kind == "TrainJob" else ("Succeeded", "Failed")
    for phase, ctype in ((Phase.SUCCEEDED, done), (Phase.FAILED, failed)):
        cond = _true(conditions, ctype)
        if cond is not None:
            return phase, cond
    if kind != "TrainJob":
        for ctype in ("Running", "Restarting"):
            cond = _true(conditions, ctype)
            if cond is not None:
                return Phase.RUNNING, cond
    return Phase.PENDING, _true(conditions, "Suspended") or _true(conditions, "Created")


def suspension(kind: str, spec: Mapping[str, Any], status: Mapping[str, Any]) -> str | None:
    """Why the job is suspended (Kueue holds it in its queue, or preempted it), or None when it is not.

    Suspended is never failed: the job keeps its attempt and is observed as Pending until it runs again.
    """
    flag = spec.get("suspend") if kind == "TrainJob" else (spec.get("runPolicy") or {}).get("suspend")
    cond = _true(list(status.get("conditions") or []), "Suspended")
    if not flag and cond is None:
        return None
    why = " ".join(str((cond or {}).get("message") or (cond or {}).get("reason") or "").split())
    return f"suspended: {why}" if why else "suspended (by its queue: not admitted yet, or preempted)"


def _replicas_and_gpus(kind: str, spec: Mapping[str, Any]) -> tuple[int, int]:
    if kind == "TrainJob":
        trainer = spec.get("trainer") or {}
        limits = (trainer.get("resourcesPerNode") or {}).get("limits") or {}
        return int(trainer.get("numNodes") or 1), _gpus(limits)
    replica_specs: Mapping[str, Any] = next((v for k, v in spec.items() if k.endswith("ReplicaSpecs")), {}) or {}
    replicas = sum(int(r.get("replicas") or 0) for r in replica_specs.values())
    gpus = 0
    for role in replica_specs.values():
        for container in ((role.get("template") or {}).get("spec") or {}).get("containers") or []:
            gpus = max(gpus, _gpus((container.get("resources") or {}).get("limits") or {}))
    if kind == "MPIJob":
        replicas -= 1  # the launcher is not a training replica
    return max(replicas, 1), gpus


def _gpus(limits: Mapping[str, Any]) -> int:
    return max((int(v) for k, v in limits.items() if k.endswith("/gpu") and str(v).isdigit()), default=0)


def decode_list(data: bytes) -> dict[str, Any]:
    """A LIST page's JSON body (the raw bytes: decoded once, no text copy), with the cyclic garbage collector
    paused meanwhile: a page of 500 jobs is ~150,000 new containers that hold no cycles, and collecting while
    building them cost a third of the decode of 10,000 jobs (``docs/performance.md``)."""
    paused = gc.isenabled()
    gc.disable()
    try:
        page: dict[str, Any] = json.loads(data)
    finally:
        if paused:
            gc.enable()
    return page


def observed_from(obj: Mapping[str, Any], backend: str = "kubernetes") -> ObservedRun:
    """The ``ObservedRun`` of one live job object (any supported kind)."""
    meta = obj.get("metadata") or {}
    labels: Mapping[str, str] = meta.get("labels") or {}
    ann: Mapping[str, str] = meta.get("annotations") or {}
    kind = str(obj.get("kind") or "")
    status = obj.get("status") or {}
    phase, cond = health(kind, status)
    failure = None
    message = ""
    if cond is not None:
        message = " ".join(str(cond.get("message") or cond.get("reason") or "").split())
    suspended = None if phase.finished else suspension(kind, obj.get("spec") or {}, status)
    if suspended is not None:  # a stale Running condition does not make a suspended job run
        phase, cond, message = Phase.PENDING, None, suspended
    if phase is Phase.FAILED:
        failure = classify(str((cond or {}).get("reason") or ""), message)
    finished_at = None
    if phase.finished:
        finished_at = parse_time(status.get("completionTime")) or parse_time((cond or {}).get("lastTransitionTime"))
    cancelled = CANCELLED_BY in ann
    if cancelled and not phase.finished:
        phase = Phase.CANCELLED
        finished_at = parse_time(ann.get(CANCELLED_AT))
        message = f"cancelled by {ann[CANCELLED_BY]}"
    held = held_by(obj) if not phase.finished else ()
    if held:
        message = f"held until {', '.join(held)} succeeds"
    overrides = safe_json.string_list(ann.get(OVERRIDES))  # annotations can be edited by anyone: never fail
    attempt = safe_json.integer(ann.get(ATTEMPT), 1)
    replicas, gpus = _replicas_and_gpus(kind, obj.get("spec") or {})
    return ObservedRun(
        run_key=labels.get(RUN_KEY, ""),
        name=str(meta.get("name", "")),
        experiment=ann.get(EXPERIMENT_NAME) or labels.get(EXPERIMENT, ""),
        attempt=attempt,
        spec_hash=ann.get(SPEC_HASH, ""),
        phase=phase,
        backend=backend,
        kind=kind,
        namespace=meta.get("namespace"),
        failure=failure,
        message=message,
        created_at=parse_time(meta.get("creationTimestamp")),
        finished_at=finished_at,
        cancelled=cancelled,
        managed=labels.get(MANAGED_BY) == MANAGER,
        mlflow_run_id=ann.get(MLFLOW_RUN_ID) or None,
        overrides=overrides,
        commit=ann.get(GIT_COMMIT) or None,
        replicas=replicas,
        gpus=gpus,
        user=ann.get(APPLIED_BY) or None,
        live=True,
        data_digest=ann.get(DATA_DIGEST),
        held_by=held,
    )
