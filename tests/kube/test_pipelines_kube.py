"""Pipelines on a real kube-apiserver: a consumer is created in the same apply as its upstream, held — suspended
(``runPolicy.suspend`` / ``spec.suspend``), or with a Kueue queue gated by ``kueue.x-k8s.io/admission-gated-by`` —
and released by the apply that sees its upstream succeed. After a failed upstream it stays held and the plan
says ``blocked``. The test plays the training operator by patching ``/status`` (no Kueue, no operator runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from expctl.backends.kubernetes.gate import AFTER, GATE, KUEUE_GATES
from tests.support.kube_cluster import Cluster
from tests.support.kube_project import Project, make_project
from tests.support.mlflow_server import MlflowServer

pytestmark = [pytest.mark.kube, pytest.mark.usefixtures("kube_environment"), pytest.mark.timeout(300)]


def experiment(kind: str, queue: str | None, inputs: str = "") -> str:
    text = (f"defaults:\n  - config\n  - _self_\nexpctl:\n  kind: {kind}\n  retries: {{max_attempts: 1}}\n"
            + (f"  queue: {queue}\n" if queue else ""))
    return text + (f"  inputs:\n    up: {{experiment: {inputs}}}\n" if inputs else "")


def held(obj: dict[str, Any], queued: bool) -> bool:
    if queued:  # Kueue owns suspend: expctl only gates admission
        return GATE in (obj["metadata"]["annotations"].get(KUEUE_GATES) or "").split(",")
    spec = obj["spec"]
    return bool(spec.get("suspend") if obj["kind"] == "TrainJob" else spec["runPolicy"].get("suspend"))


def names(project: Project) -> dict[str, str]:
    """``{experiment (without the prefix): its job's name}``."""
    return {o["metadata"]["annotations"]["expctl.io/experiment-name"].split("/", 1)[1]: name
            for name, o in project.managed().items()}


@pytest.mark.parametrize(("kind", "queue"), [("PyTorchJob", None), ("TrainJob", None), ("PyTorchJob", "team-a")])
def test_a_consumer_is_created_held_and_released_when_its_upstream_succeeds(
        tmp_path: Path, kube_cluster: Cluster, namespace: str, mlflow_server: MlflowServer,
        kind: str, queue: str | None) -> None:
    project = make_project(tmp_path, kube_cluster, namespace, mlflow_server.uri,
                           {"pre-ok": experiment(kind, queue), "pre-bad": experiment(kind, queue)})
    for up in ("ok", "bad"):
        project.write_exp(f"fine-{up}", experiment(kind, queue, project.exp(f"pre-{up}")))
    project.repo.commit("consumers")

    shown = project.plan()["changes"]
    assert sorted((c["experiment"].split("/")[1], c["action"]) for c in shown) == [
        ("fine-bad", "noop"), ("fine-ok", "noop"), ("pre-bad", "create"), ("pre-ok", "create")]
    out = project.ok("apply", "-y").output  # the upstreams, then (one more wave) their consumers, held
    assert "submitting 2 consumer(s) after their upstream runs" in out, out
    jobs, name = project.managed(), names(project)
    for up in ("ok", "bad"):
        consumer = jobs[name[f"fine-{up}"]]
        assert consumer["metadata"]["annotations"][AFTER] == name[f"pre-{up}"]
        assert held(consumer, queue is not None), consumer
        assert not held(jobs[name[f"pre-{up}"]], queue is not None)
    rows = json.loads(project.ok("status", "-o", "json").stdout)
    status = {r["experiment"].split("/")[1]: r for r in rows}
    assert status["fine-ok"]["state"] == "Pending"
    assert status["fine-ok"]["reason"] == f"held until {name['pre-ok']} succeeds"

    project.settle(name["pre-ok"], "succeed")
    project.settle(name["pre-bad"], "fail", message="exit code 1")
    project.ok("apply", "-y")  # sees pre-ok succeed: releases fine-ok; fine-bad stays held
    jobs = project.managed()
    assert not held(jobs[name["fine-ok"]], queue is not None)
    if queue is not None:
        assert KUEUE_GATES not in jobs[name["fine-ok"]]["metadata"]["annotations"]
    assert held(jobs[name["fine-bad"]], queue is not None)
    assert len(jobs) == 4  # nothing replaced, nothing created twice

    after = {c["experiment"].split("/")[1]: c for c in project.plan()["changes"]}
    assert (after["fine-bad"]["action"], after["fine-bad"]["reason"]) == ("blocked", "upstream-failed")
    assert after["fine-bad"]["detail"] == f"upstream {name['pre-bad']} failed: exit code 1"
    assert (after["fine-ok"]["action"], after["fine-ok"]["reason"]) == ("noop", "unchanged")
    project.ok("apply", "-y")
    assert held(project.managed()[name["fine-bad"]], queue is not None)  # never released after a failure
