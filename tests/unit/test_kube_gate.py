"""A pipeline's consumer on Kubernetes, pure: held at creation (suspended, or Kueue-gated), read back as held,
and the patch that releases it (keeping other controllers' Kueue gates, guarded by the resourceVersion)."""

from __future__ import annotations

import copy
from typing import Any

from expctl.backends.kubernetes.gate import AFTER, GATE, KUEUE_GATES, held_by, hold, release_patch
from expctl.backends.kubernetes.manifests.common import CANCELLED_BY, KUEUE_QUEUE


def job(kind: str = "PyTorchJob", queue: bool = False) -> dict[str, Any]:
    labels = {KUEUE_QUEUE: "team-a"} if queue else {}
    spec: dict[str, Any] = {} if kind == "TrainJob" else {"runPolicy": {"backoffLimit": 0}}
    return {"kind": kind, "metadata": {"labels": labels, "annotations": {}, "resourceVersion": "7"}, "spec": spec}


def test_a_consumer_is_created_suspended_or_gated_and_released() -> None:
    assert hold(job(), []) == job()  # nothing to wait for: unchanged
    v1, train, queued = hold(job(), ["pre-1"]), hold(job("TrainJob"), ["pre-1", "b-1"]), hold(job(queue=True), ["x"])
    assert v1["spec"]["runPolicy"]["suspend"] is True and train["spec"]["suspend"] is True
    assert "suspend" not in queued["spec"]["runPolicy"]  # Kueue owns suspend: admission is gated instead
    assert queued["metadata"]["annotations"] == {AFTER: "x", KUEUE_GATES: GATE}
    assert held_by(v1) == ("pre-1",) and held_by(train) == ("pre-1", "b-1") and held_by(queued) == ("x",)
    assert release_patch(v1) == {"metadata": {"resourceVersion": "7"}, "spec": {"runPolicy": {"suspend": False}}}
    assert release_patch(train) == {"metadata": {"resourceVersion": "7"}, "spec": {"suspend": False}}
    assert release_patch(queued) == {"metadata": {"resourceVersion": "7", "annotations": {KUEUE_GATES: None}}}
    other = copy.deepcopy(queued)
    other["metadata"]["annotations"][KUEUE_GATES] = f"example.com/quota,{GATE}"
    assert release_patch(other) == {"metadata": {"resourceVersion": "7",
                                                 "annotations": {KUEUE_GATES: "example.com/quota"}}}


def test_a_released_or_cancelled_consumer_is_not_held() -> None:
    released = hold(job(), ["pre-1"])
    released["spec"]["runPolicy"]["suspend"] = False
    cancelled = hold(job(), ["pre-1"])
    cancelled["metadata"]["annotations"][CANCELLED_BY] = "kim"
    for obj in (released, cancelled, job()):
        assert held_by(obj) == () and release_patch(obj) is None
