"""Pipelines on Kubernetes: a consumer created before its upstream succeeded is held, and released later.

Pure: manifests and job objects (as JSON data) in, manifests and patches out. A run that consumes upstream
attempts still pending or running (``core.pipeline.after``) is created held, its ``expctl.io/after``
annotation naming those attempts:

- without Kueue (no queue): suspended (``runPolicy.suspend`` for the Training Operator v1 kinds,
  ``spec.suspend`` for a TrainJob), so the operator creates no pods;
- with Kueue (a queue): gated by the ``kueue.x-k8s.io/admission-gated-by`` annotation, a comma-separated list
  of gate names, one of them expctl's (Kueue owns ``suspend`` and keeps the job suspended while any gate is
  listed; a gate can only be set at creation, and afterwards only removed).

The apply (or ``--wait`` round) that observes every upstream succeeded releases it: ``suspend: false``, or
expctl's name removed from the gates. Each release patch carries the object's ``resourceVersion``, so a job
cancelled (or otherwise changed) since it was read is never released; the next observation decides again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from expctl.backends.kubernetes.manifests.common import CANCELLED_BY, KUEUE_QUEUE, Manifest

AFTER = "expctl.io/after"  # the upstream attempts a held consumer waits for (comma-separated object names)
KUEUE_GATES = "kueue.x-k8s.io/admission-gated-by"
GATE = "expctl.io/upstream"  # expctl's name among Kueue's admission gates


def hold(manifest: Manifest, upstream: list[str]) -> Manifest:
    """The manifest of a consumer, held until ``upstream`` (object names) succeeded; unchanged when empty."""
    if not upstream:
        return manifest
    meta = manifest["metadata"]
    meta["annotations"][AFTER] = ",".join(upstream)
    if KUEUE_QUEUE in meta.get("labels", {}):
        meta["annotations"][KUEUE_GATES] = GATE
    elif manifest["kind"] == "TrainJob":
        manifest["spec"]["suspend"] = True
    else:
        manifest["spec"]["runPolicy"]["suspend"] = True
    return manifest


def _gates(annotations: Mapping[str, str]) -> list[str]:
    return [g.strip() for g in str(annotations.get(KUEUE_GATES) or "").split(",") if g.strip()]


def _suspended(obj: Mapping[str, Any]) -> bool:
    spec = obj.get("spec") or {}
    flag = spec.get("suspend") if obj.get("kind") == "TrainJob" else (spec.get("runPolicy") or {}).get("suspend")
    return bool(flag)


def held_by(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """The upstream attempts expctl still holds the job for (empty: not held, or released)."""
    meta = obj.get("metadata") or {}
    annotations: Mapping[str, str] = meta.get("annotations") or {}
    names = tuple(n for n in str(annotations.get(AFTER) or "").split(",") if n)
    if not names or CANCELLED_BY in annotations:
        return ()
    queued = KUEUE_QUEUE in (meta.get("labels") or {})
    return names if (GATE in _gates(annotations) if queued else _suspended(obj)) else ()


def release_patch(obj: Mapping[str, Any]) -> Manifest | None:
    """The merge patch that releases a held job (None: it is not held by expctl any more)."""
    if not held_by(obj):
        return None
    meta = obj.get("metadata") or {}
    patch: Manifest = {"metadata": {"resourceVersion": meta.get("resourceVersion")}}
    if KUEUE_QUEUE in (meta.get("labels") or {}):
        rest = [g for g in _gates(meta.get("annotations") or {}) if g != GATE]
        patch["metadata"]["annotations"] = {KUEUE_GATES: ",".join(rest) or None}
    elif obj.get("kind") == "TrainJob":
        patch["spec"] = {"suspend": False}
    else:
        patch["spec"] = {"runPolicy": {"suspend": False}}
    return patch
