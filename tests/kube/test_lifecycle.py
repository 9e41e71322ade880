"""Issue 4's end-to-end proofs: the real ``expctl`` CLI against a real kube-apiserver and a real MLflow server.

Every test drives ``expctl plan/apply`` (in-process through click's runner with an injected Workspace, or as
real ``python -m expctl`` processes) on a real git repository whose ``expctl.yaml`` selects the kubernetes
backend. The tests play the training operator by PATCHing ``/status``. Each test works in a fresh namespace
and under its own ``experiments/<prefix>/`` directory, so that the module's shared MLflow server never mixes
the runs of two tests (a run key is the experiment name and its overrides, whatever the namespace).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from expctl.backends.base import Backend
from expctl.backends.kubernetes.backend import KubernetesBackend
from expctl.backends.kubernetes.manifests import KINDS
from expctl.core.errors import BackendError
from expctl.core.model import JobKind, Launch, ObservedRun
from tests.support.kube_cluster import Cluster
from tests.support.kube_driver import FAST_RETRY
from tests.support.kube_project import SELECTOR, Project, list_jobs, make_project
from tests.support.mlflow_server import MlflowServer

pytestmark = [pytest.mark.kube, pytest.mark.usefixtures("kube_environment")]  # $KUBECONFIG, like CI

PLURALS = {kind.value: KINDS[kind].plural for kind in (JobKind.PYTORCH, JobKind.TF, JobKind.MPI, JobKind.TRAIN)}
WRITE_VERBS = ("create", "delete", "patch", "update", "deletecollection")
SINGLE = "defaults:\n  - config\n  - _self_\n"


# -- fixtures and helpers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` (sqlite store, proxied artifacts) for this module."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-lifecycle"))
    server.start()
    try:
        yield server.uri
    finally:
        server.stop()


def by_experiment(plan: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for change in plan["changes"]:
        out.setdefault(change["experiment"], []).append(change)
    return out


def writes(backend: KubernetesBackend) -> dict[str, int]:
    return {k: v for k, v in backend.requests.items() if k.split(" ")[0] in WRITE_VERBS}


def server_requests(cluster: Cluster) -> Counter[str]:
    """apiserver_request_total of the training-job resources, as ``"<VERB> <resource>" -> count``."""
    import re

    counts: Counter[str] = Counter()
    for line in cluster.metrics().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if labels.get("resource") in PLURALS.values():
            counts[f"{labels['verb']} {labels['resource']}"] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def lease_reads(cluster: Cluster) -> int:
    """How many GETs of leases the apiserver has answered (apiserver_request_total)."""
    total = 0
    for line in cluster.metrics().splitlines():
        if not line.startswith("apiserver_request_total{") or 'resource="leases"' not in line:
            continue
        if 'verb="GET"' in line or 'verb="LIST"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def kubectl_list(cluster: Cluster) -> list[tuple[str, str, str]] | None:
    """``kubectl get <all kinds> -A -l managed-by=expctl`` when a working kubectl is installed, else None."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    try:
        proc = subprocess.run(
            [kubectl, "--kubeconfig", str(cluster.kubeconfig), "get", ",".join(PLURALS.values()), "-A", "-l",
             SELECTOR, "-o", "json"], capture_output=True, text=True, timeout=60, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    items = json.loads(proc.stdout)["items"]
    return sorted((o["metadata"]["namespace"], o["kind"], o["metadata"]["name"]) for o in items)


# -- 1 + 4: every example and every kind applies without a 422; a second apply writes nothing ---------------

KIND_VARIANTS = {
    "kinds/pytorch": SINGLE + "expctl:\n  kind: PyTorchJob\n  replicas: 3\n  timeout: 3600\n",
    "kinds/tf": "defaults:\n  - config\n  - override /resources: gpu-1\n  - _self_\n"
                "expctl:\n  kind: TFJob\n  replicas: 2\n",
    "kinds/mpi": SINGLE + "expctl:\n  kind: MPIJob\n  replicas: 2\n  env:\n    OMP_NUM_THREADS: 1\n",
    "kinds/train": SINGLE + "expctl:\n  kind: TrainJob\n  replicas: 2\n  runtime: torch-distributed\n"
                   "hydra:\n  sweeper:\n    params:\n      optimizer.lr: 0.01,0.02\n",
}
KIND_OF = {"kinds/pytorch": "PyTorchJob", "kinds/tf": "TFJob", "kinds/mpi": "MPIJob", "kinds/train": "TrainJob",
           "baseline": "PyTorchJob", "distributed": "PyTorchJob", "lr-sweep": "PyTorchJob"}


def test_examples_and_every_kind_apply_and_a_second_apply_writes_nothing(
    tmp_path: Path, kube_cluster: Cluster, namespace: str, mlflow_uri: str
) -> None:
    project = make_project(tmp_path, kube_cluster, namespace, mlflow_uri, KIND_VARIANTS, examples=True)
    planned = project.plan()
    experiments = by_experiment(planned)
    assert sorted(experiments) == sorted(project.exp(n) for n in KIND_OF)
    assert planned["summary"]["create"] == 1 + 1 + 6 + 4 + 1  # baseline, distributed, lr-sweep, kinds (2 + 1s)
    expected = sorted((namespace, KIND_OF[c["experiment"].split("/", 1)[1]], c["name"]) for c in planned["changes"])

    applied = project.ok("apply", "-y")
    assert "Applied 13 changes." in applied.output
    assert "422" not in applied.output and "error" not in applied.output

    # a LIST across all namespaces with the managed-by selector, per kind, returns exactly what was applied
    listed = sorted((o["metadata"]["namespace"], o["kind"], o["metadata"]["name"])
                    for o in list_jobs(kube_cluster, SELECTOR) if o["metadata"]["namespace"] == namespace)
    assert listed == expected
    assert {kind for _, kind, _ in listed} == set(PLURALS)
    via_kubectl = kubectl_list(kube_cluster)
    if via_kubectl is not None:
        assert [row for row in via_kubectl if row[0] == namespace] == expected
    # every object carries expctl's identity, and its MLflow run (one per run key and attempt) exists
    for obj in project.managed().values():
        meta = obj["metadata"]
        assert meta["labels"]["expctl.io/managed-by"] == "expctl"
        assert {"expctl.io/spec-hash", "expctl.io/git-commit", "expctl.io/attempt", "expctl.io/mlflow-run-id",
                "expctl.io/overrides", "expctl.io/applied-by"} <= set(meta["annotations"])
    per_attempt = project.runs_per_attempt()
    assert len(per_attempt) == 13 and set(per_attempt.values()) == {1}

    # 4: right after, nothing changes and nothing is written to the apiserver's training jobs
    before = server_requests(kube_cluster)
    again = project.ok("apply", "-y")
    assert "No changes. (13 unchanged)" in again.output
    assert "Applied" not in again.output
    backend = project.ws.backends[-1]
    assert writes(backend) == {}, backend.requests
    assert set(backend.requests) == {f"list {plural}" for plural in PLURALS.values()}
    delta = server_requests(kube_cluster) - before
    assert all(verb.split(" ")[0] in ("LIST", "GET", "WATCH") for verb in delta), delta
    assert project.plan("--detailed-exitcode")["summary"]["unchanged"] == 13


# -- 2: apply -> Running -> Succeeded (FINISHED, gate, registry) and Failed -> r2 -> gave up ----------------

GATED = SINGLE + ("expctl:\n  validation:\n    metric: val_accuracy\n    threshold: 0.8\n    mode: max\n"
                  "    register_as: {model}\n    alias: champion\n")
FLAKY = SINGLE + ("expctl:\n  retries:\n    max_attempts: 2\n    failures: [infrastructure, code]\n"
                  "    backoff_seconds: 0\n")


def log_like_training_code(tracking_uri: str, run_id: str, accuracy: float) -> None:
    """What the training code does inside the job: log the metric and a (tiny) model into its run."""
    import mlflow
    import mlflow.pytorch
    import torch

    mlflow.set_tracking_uri(tracking_uri)
    try:
        with mlflow.start_run(run_id=run_id):
            mlflow.log_metric("val_accuracy", accuracy / 2, step=0)
            mlflow.log_metric("val_accuracy", accuracy, step=1)
            mlflow.pytorch.log_model(torch.nn.Linear(2, 2), name="model", input_example=torch.zeros(1, 2).numpy(),
                                     pip_requirements=[f"torch=={torch.__version__}"])
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None: back to the default
    # the fluent API ended the run; the job is still running as far as the cluster knows: so is its run
    mlflow.MlflowClient(tracking_uri).update_run(run_id, status="RUNNING")


def test_full_lifecycle_sync_gate_registry_retry_and_give_up(
    tmp_path: Path, kube_cluster: Cluster, namespace: str, mlflow_uri: str
) -> None:
    from mlflow import MlflowClient

    model_name = f"clf-{uuid.uuid4().hex[:6]}"
    project = make_project(tmp_path, kube_cluster, namespace, mlflow_uri,
                           {"gated": GATED.format(model=model_name), "flaky": FLAKY})
    mlflow = MlflowClient(mlflow_uri)
    assert "Applied 2 changes." in project.ok("apply", "-y").output
    names = {c["experiment"]: c["name"] for c in project.plan()["changes"]}
    gated, flaky = names[project.exp("gated")], names[project.exp("flaky")]
    assert sorted(project.managed()) == sorted([gated, flaky])
    assert project.run_of(gated).info.status == "RUNNING"  # MLflow creates runs RUNNING (see mlflow_runs)
    assert project.run_of(gated).data.tags["expctl.ready"] == "true"

    # Running: the next apply syncs it into MLflow
    project.settle(gated, "run")
    assert "No changes." in project.ok("apply", "-y").output
    assert project.run_of(gated).info.status == "RUNNING"

    # the job logs its metric and model, then Succeeded: FINISHED, gate passed, registered with the alias
    run_id = project.run_of(gated).info.run_id
    log_like_training_code(mlflow_uri, run_id, 0.93)
    project.settle(gated, "succeed")
    assert "No changes." in project.ok("apply", "-y").output
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["expctl.gate"] == "passed"
    assert "val_accuracy=0.93 >= 0.8" in run.data.tags["expctl.gate_reason"]
    version = mlflow.get_model_version_by_alias(model_name, "champion")
    assert version.run_id == run_id
    assert version.tags["expctl.run_key"] == run.data.tags["expctl.run_key"]
    assert version.tags["mlflow.source.git.commit"] == project.repo.git("rev-parse", "HEAD")
    assert len(mlflow.search_model_versions(f"name = '{model_name}'")) == 1

    # a code failure with retries on [infrastructure, code] and no backoff: attempt 2 as <name>-r2
    project.settle(flaky, "fail", "PyTorchJobFailed", f"PyTorchJob {flaky} failed: worker exited with code 1")
    plan = {c["name"]: c for c in project.plan()["changes"]}
    assert plan[f"{flaky}-r2"]["action"] == "retry" and plan[f"{flaky}-r2"]["attempt"] == 2
    retried = project.ok("apply", "-y")
    assert "Applied 1 changes." in retried.output
    assert sorted(project.managed()) == sorted([gated, flaky, f"{flaky}-r2"])
    assert project.managed()[f"{flaky}-r2"]["metadata"]["annotations"]["expctl.io/attempt"] == "2"
    first = project.run_of(flaky)
    assert first.info.status == "FAILED" and first.data.tags["expctl.failure"] == "code"
    second = project.run_of(f"{flaky}-r2")
    assert second.info.run_id != first.info.run_id and second.data.tags["expctl.attempt"] == "2"

    # attempt 2 fails too: max_attempts is 2, so the plan says gave-up and apply creates nothing
    project.settle(f"{flaky}-r2", "fail", "PyTorchJobFailed", "worker exited with code 1")
    gave_up = project.cli("plan", "--detailed-exitcode")
    assert gave_up.exit_code == 0, gave_up.output
    assert "gave-up" in gave_up.output and f"{flaky}-r2" in gave_up.output
    assert "failed 2 of 2 attempts" in gave_up.output
    assert "No changes. (1 unchanged, 1 gave up)" in gave_up.output
    final = project.ok("apply", "-y")
    assert "No changes." in final.output
    assert writes(project.ws.backends[-1]) == {}
    assert sorted(project.managed()) == sorted([gated, flaky, f"{flaky}-r2"])
    assert project.run_of(f"{flaky}-r2").info.status == "FAILED"
    assert project.runs_per_attempt() == Counter({(first.data.tags["expctl.run_key"], "1"): 1,
                                                  (first.data.tags["expctl.run_key"], "2"): 1,
                                                  (run.data.tags["expctl.run_key"], "1"): 1})


# -- 3: spec changes (finished -> replace, running -> blocked / --replace-running) and prune ----------------

HAND_MADE = {
    "apiVersion": "kubeflow.org/v1",
    "kind": "PyTorchJob",
    "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "restartPolicy": "Never", "template": {
        "spec": {"containers": [{"name": "pytorch", "image": "busybox"}]}}}}},
}


def test_spec_changes_replace_block_and_prune_only_managed_objects(
    tmp_path: Path, kube_cluster: Cluster, namespace: str, mlflow_uri: str
) -> None:
    from mlflow import MlflowClient

    epochs = SINGLE + "trainer:\n  epochs: {n}\n"
    project = make_project(tmp_path, kube_cluster, namespace, mlflow_uri,
                           {"done": epochs.format(n=2), "busy": epochs.format(n=2), "gone": SINGLE})
    project.ok("apply", "-y")
    names = {c["experiment"].split("/", 1)[1]: c["name"] for c in project.plan()["changes"]}
    custom = client.CustomObjectsApi(kube_cluster.api_client())
    for i, labels in enumerate(({}, {"expctl.io/experiment": f"{project.prefix}-gone"})):
        body = {**HAND_MADE, "metadata": {"name": f"hand-made-{i}", "labels": labels}}
        custom.create_namespaced_custom_object("kubeflow.org", "v1", namespace, "pytorchjobs", body)
    uid = {name: obj["metadata"]["uid"] for name, obj in project.jobs().items()}
    project.settle(names["done"], "succeed")
    project.settle(names["busy"], "run")
    project.ok("apply", "-y")  # syncs: done FINISHED, busy RUNNING
    old_run = {exp: project.run_of(names[exp]).info.run_id for exp in ("done", "busy")}

    project.write_exp("done", epochs.format(n=3))
    project.write_exp("busy", epochs.format(n=3))
    project.repo.remove(f"experiments/{project.prefix}/gone.yaml")
    project.repo.commit("more epochs; drop gone")

    plan = {c["name"]: c for c in project.plan()["changes"]}
    assert (plan[names["done"]]["action"], plan[names["done"]]["reason"]) == ("replace", "spec-changed")
    assert plan[names["done"]]["deletes"] == [names["done"]]
    assert (plan[names["busy"]]["action"], plan[names["busy"]]["reason"]) == ("blocked", "spec-changed")
    assert (plan[names["gone"]]["action"], plan[names["gone"]]["reason"]) == ("noop", "would-prune")
    assert not any(name.startswith("hand-made") for name in plan)  # never observed: no managed-by label
    assert project.cli("plan", "--detailed-exitcode").exit_code == 2

    applied = project.ok("apply", "-y")
    assert "Applied 1 changes." in applied.output and "would prune" in applied.output
    assert "run is running; use --replace-running" in applied.output
    assert dict(writes(project.ws.backends[-1])) == {"delete pytorchjobs": 1, "create pytorchjobs": 1,
                                                     "create configmaps": 1}  # the git-sync script's (409)
    jobs = project.jobs()
    new_hash = plan[names["done"]]["spec_hash"]
    assert jobs[names["done"]]["metadata"]["uid"] != uid[names["done"]]  # deleted, then created anew
    assert jobs[names["done"]]["metadata"]["annotations"]["expctl.io/spec-hash"] == new_hash
    assert jobs[names["busy"]]["metadata"]["uid"] == uid[names["busy"]]  # blocked: untouched
    assert jobs[names["gone"]]["metadata"]["uid"] == uid[names["gone"]]  # only with --prune

    mlflow = MlflowClient(mlflow_uri)
    assert [mlflow.get_run(old_run[e]).info.status for e in ("done", "busy")] == ["FINISHED", "RUNNING"]
    replaced = project.ok("apply", "-y", "--replace-running")
    assert "Applied 1 changes." in replaced.output
    busy = project.jobs()[names["busy"]]
    assert busy["metadata"]["uid"] != uid[names["busy"]]
    assert busy["metadata"]["annotations"]["expctl.io/spec-hash"] == plan[names["busy"]]["spec_hash"]
    assert "status" not in busy or not busy["status"].get("conditions")  # a fresh object, not the running one
    # the deleted running job will never report again: its MLflow run is closed (KILLED), not RUNNING forever
    assert mlflow.get_run(old_run["busy"]).info.status == "KILLED"
    assert mlflow.get_run(old_run["done"]).info.status == "FINISHED"
    assert project.run_of(names["busy"]).info.run_id != old_run["busy"]

    pruned = project.ok("apply", "-y", "--prune")
    assert "Applied 1 changes." in pruned.output
    assert sorted(project.jobs()) == sorted([names["done"], names["busy"], "hand-made-0", "hand-made-1"])
    assert project.jobs()["hand-made-0"]["metadata"]["uid"] == uid["hand-made-0"]
    assert "No changes. (2 unchanged)" in project.ok("apply", "-y", "--prune").output


# -- 5: the apiserver restarts in the middle of an apply; the expctl process is killed mid-apply --------------


class StopsApiserverOnCreate:
    """A Backend that stops the apiserver before its ``n``-th create (which fails), then starts it again
    (unless ``restart`` is False: then it stays down until the test starts it)."""

    def __init__(self, inner: KubernetesBackend, cluster: Cluster, n: int, restart: bool = True) -> None:
        self.inner = inner
        self.cluster = cluster
        self.n = n
        self.restart = restart
        self.name = inner.name
        self.creates = 0
        self.failed: list[str] = []

    def observe(self) -> list[ObservedRun]:
        return self.inner.observe()

    def create(self, launch: Launch) -> None:
        self.creates += 1
        if self.creates == self.n:
            self.cluster.stop_apiserver()
        try:
            self.inner.create(launch)
        except BackendError:
            self.failed.append(launch.name)
            raise
        finally:
            if self.creates == self.n and self.restart:
                self.cluster.start()

    def delete(self, name: str) -> None:
        self.inner.delete(name)

    def cancel(self, name: str, by: str) -> None:
        self.inner.cancel(name, by)

    def logs(self, name: str, replica: str | None = None, follow: bool = False) -> Iterator[str]:
        return self.inner.logs(name, replica, follow)


SEQUENTIAL = "  qps: 50\n  burst: 50\n  write_concurrency: 1\n"
SWEEP4 = SINGLE + "hydra:\n  sweeper:\n    params:\n      optimizer.lr: 0.001,0.002,0.003,0.004\n"


def assert_converged(project: Project, total: int) -> None:
    plan = project.plan()
    assert plan["summary"]["unchanged"] == total and not any(c["action"] != "noop" for c in plan["changes"])
    managed = project.managed()
    assert len(managed) == total
    run_ids = [o["metadata"]["annotations"]["expctl.io/mlflow-run-id"] for o in managed.values()]
    assert len(set(run_ids)) == total
    per_attempt = project.runs_per_attempt()
    assert len(per_attempt) == total and set(per_attempt.values()) == {1}, per_attempt
    assert {r.info.run_id for r in project.mlflow_runs()} == set(run_ids)


def test_apiserver_restart_in_the_middle_of_an_apply_converges(
    tmp_path: Path, kube_cluster: Cluster, namespace: str, mlflow_uri: str
) -> None:
    # one change at a time (write_concurrency 1): the n-th create is the one the apiserver stops on
    project = make_project(tmp_path, kube_cluster, namespace, mlflow_uri, {"sweep": SWEEP4, "single": SINGLE},
                           kube=SEQUENTIAL)
    wrappers: list[StopsApiserverOnCreate] = []

    def wrap(backend: KubernetesBackend) -> Backend:
        wrappers.append(StopsApiserverOnCreate(backend, kube_cluster, n=3))
        return wrappers[-1]

    project.ws.wrap = wrap
    interrupted = project.cli("apply", "-y")
    # the apiserver was unreachable on every try of the 3rd create: the apply stops starting changes (the
    # rest would each fail the same way after their own retries); it is back for the rerun
    assert interrupted.exit_code == 3, interrupted.output
    assert "apply stopped: the kubernetes backend is unreachable" in interrupted.output
    [failed] = wrappers[-1].failed
    assert f"error: {failed}: cannot create pytorchjobs/{failed}" in interrupted.output
    assert len(project.managed()) == 2 and failed not in project.managed()
    assert len(project.runs_per_attempt()) == 3  # its MLflow run was found-or-created before the create

    project.ws.wrap = None
    rerun = project.ok("apply", "-y")
    assert "Applied 3 changes." in rerun.output
    assert_converged(project, 5)
    assert project.runs_per_attempt("all") == project.runs_per_attempt()  # no duplicate was ever created


def test_apiserver_down_until_the_apply_ends_exits_3_then_a_rerun_converges(
    tmp_path: Path, kube_cluster: Cluster, namespace: str, mlflow_uri: str
) -> None:
    # one change at a time (write_concurrency 1): the n-th create is the one the apiserver stops on
    project = make_project(tmp_path, kube_cluster, namespace, mlflow_uri, {"sweep": SWEEP4, "single": SINGLE},
                           kube=SEQUENTIAL)
    wrappers: list[StopsApiserverOnCreate] = []

    def wrap(backend: KubernetesBackend) -> Backend:
        wrappers.append(StopsApiserverOnCreate(backend, kube_cluster, n=3, restart=False))
        return wrappers[-1]

    project.ws.wrap = wrap
    try:
        interrupted = project.cli("apply", "-y")
    finally:
        kube_cluster.start()
    # the apply's own outcome (exit 3: partly failed) is reported, not the Lease it could not release
    assert interrupted.exit_code == 3, interrupted.output
    assert "apply stopped: the kubernetes backend is unreachable" in interrupted.output
    assert len(wrappers[-1].failed) == 1 and len(project.managed()) == 2  # no change started after it
    assert len(project.runs_per_attempt()) == 3

    project.ws.wrap = None
    rerun = project.ok("apply", "-y", "--lock-timeout", "90")  # the unreleased Lease expires first
    assert "Applied 3 changes." in rerun.output
    assert_converged(project, 5)
    assert project.runs_per_attempt("all") == project.runs_per_attempt()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def test_killed_expctl_process_then_rerun_converges(
    tmp_path: Path, kube_cluster: Cluster, namespace: str, mlflow_uri: str
) -> None:
    # 1 request per second: the process is slow enough to be killed between creates
    project = make_project(tmp_path, kube_cluster, namespace, mlflow_uri, {"sweep": SWEEP4, "single": SINGLE},
                           kube="  qps: 1\n  burst: 1\n")
    proc = project.subprocess_apply()
    try:
        wait_for(lambda: len(project.managed()) >= 2 or proc.poll() is not None, 120, "two creates")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, out + err
    assert 2 <= len(project.managed()) < 5
    # the killed process never released its Lease: the rerun waits for it to expire, then converges
    rerun = project.ok("apply", "-y", "--lock-timeout", "90")  # bounded by the lock timeout, not asserted
    assert "Applied" in rerun.output
    assert_converged(project, 5)
    assert project.runs_per_attempt("all") == project.runs_per_attempt()


# -- 6: two applies at once: the Lease serialises them; no duplicate job or MLflow run ------------------------


def test_two_concurrent_applies_are_serialised_by_the_lease(
    tmp_path: Path, kube_cluster: Cluster, namespace: str, mlflow_uri: str
) -> None:
    project = make_project(tmp_path, kube_cluster, namespace, mlflow_uri, {"sweep": SWEEP4, "single": SINGLE})
    procs = [project.subprocess_apply("--lock-timeout", "120") for _ in range(2)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, out + err
        outputs.append(out)
    applied = [o for o in outputs if "Applied 5 changes." in o]
    idle = [o for o in outputs if "No changes. (5 unchanged)" in o]
    assert (len(applied), len(idle)) == (1, 1), outputs  # the second planned only after the first applied
    assert_converged(project, 5)
    assert project.runs_per_attempt("all") == project.runs_per_attempt()  # not even a deleted duplicate


def test_apply_waits_for_the_lease_and_gives_up_clearly(
    tmp_path: Path, kube_cluster: Cluster, namespace: str, mlflow_uri: str
) -> None:
    project = make_project(tmp_path, kube_cluster, namespace, mlflow_uri, {"single": SINGLE})
    holder = KubernetesBackend.from_kubeconfig(str(kube_cluster.kubeconfig), namespaces=[namespace],
                                               retry=FAST_RETRY).lock(identity="ci-run-41", duration_seconds=5)
    holder.acquire(timeout=5)
    try:
        refused = project.cli("apply", "-y", "--lock-timeout", "1")
        assert refused.exit_code == 1, refused.output
        message = refused.output.strip().splitlines()[-1]
        assert message.startswith(f'error: lease {namespace}/expctl-apply is held by "ci-run-41"'), message
        assert "gave up waiting after 1s" in message
        assert project.managed() == {}

        # a waiting apply goes ahead as soon as the holder releases the Lease
        polled = lease_reads(kube_cluster)
        waiting = project.subprocess_apply("--lock-timeout", "60")
        # it reaches the Lease and keeps polling it (one GET a second), creating nothing meanwhile
        wait_for(lambda: lease_reads(kube_cluster) >= polled + 3 or waiting.poll() is not None, 60, "lease polls")
        assert waiting.poll() is None and project.managed() == {}
        released = threading.Timer(0.5, holder.release)
        released.start()
        out, err = waiting.communicate(timeout=90)
        released.join()
    finally:
        holder.release()
    assert waiting.returncode == 0, out + err
    assert "Applied 1 changes." in out
    assert_converged(project, 1)
