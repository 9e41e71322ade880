"""Apply a large sweep end to end, against plain baselines measured in the same run.

    python benchmarks/apply_scale.py [--runs 1000] [--local-runs 200] [--local-trials 3] [--skip-kube]
                                     [--skip-local] [--tracker sqlite|postgresql] [--mlflow-workers N]
                                     [--pool-size N]

Kubernetes: starts the project's test kube-apiserver (with the Kubeflow CRDs) and a real ``mlflow server``,
then times ``expctl apply -y`` of an N-point PyTorchJob sweep (client QPS 50 as in issue 9, ``--qps``), counts
the requests it sent to the apiserver (``apiserver_request_total`` from /metrics) and to MLflow (the server's
access log: no proxy in the measured path), the CPU seconds the servers and expctl spent, and times the no-op
``expctl plan`` afterwards. The anchor, same run, same manifests:
``kubectl create -f`` of ``expctl render``'s output into another namespace.

``--tracker postgresql``: the tracking server people deploy — ``mlflow server`` on PostgreSQL (Debian's
``postgresql``, started here with its default durability, ``tests/support/postgres.py``) with
``--mlflow-workers`` uvicorn workers (default 4) and MLflow's SQLAlchemy pool set by ``--pool-size``
(``MLFLOW_SQLALCHEMYSTORE_POOL_SIZE``, and as much ``MAX_OVERFLOW``); ``sqlite`` (the default): one worker on a
sqlite file. The summary line states the target: the apply within 1.25 x the larger of the tracker floor (the
same requests from a plain client) and the backend floor (``kubectl create -f``).

Local (``apply_local.py``; ``--skip-kube`` runs it alone): ``expctl apply -y`` of 200 trivial runs (``python -c
pass``, embedded MLflow store) against starting the same 200 processes in a plain loop and against the floors
that bound it (opening MLflow's store, composing the sweep, the MLflow calls per run), in 3 trials (medians;
the load average is printed).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import noop_floors  # noqa: E402
from benchmarks.apply_local import local  # noqa: E402
from benchmarks.apply_repo import PROFILE, expctl, make_repo  # noqa: E402
from tests.support.mlflow_server import MlflowServer  # noqa: E402
from tests.support.postgres import Postgres  # noqa: E402


def apiserver_requests(metrics: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in metrics.splitlines():
        if line.startswith("apiserver_request_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if labels.get("resource") in ("pytorchjobs", "tfjobs", "mpijobs", "trainjobs", "leases", "configmaps"):
                counts[f"{labels['verb']} {labels['resource']}"] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def mlflow_requests(log: Path, offset: int) -> tuple[Counter[str], int]:
    """The MLflow REST requests in the server's access log after byte ``offset`` (and the new offset): counted
    at the server, so no proxy sits in the measured path."""
    with open(log, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    counts: Counter[str] = Counter()
    for path in re.findall(rb'"(?:GET|POST|PATCH|DELETE) /api/2\.0/mlflow/([\w/-]+)', data):
        counts[path.decode()] += 1
    return counts, offset + len(data)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (``/proc/<pid>/stat``)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def group_pids(leader: int) -> list[int]:
    """The processes of ``leader``'s process group (the mlflow server and its uvicorn worker)."""
    out = subprocess.run(["pgrep", "-g", str(os.getpgid(leader))], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


class Cpu:
    """CPU seconds spent by the servers (MLflow; apiserver + etcd) across one measured step:
    ``with Cpu(mlflow_pids, kube_pids) as used: ...`` then ``used.mlflow``, ``used.kube``."""

    def __init__(self, mlflow: list[int], kube: list[int]) -> None:
        self.pids = (mlflow, kube)
        self.mlflow = self.kube = 0.0

    def __enter__(self) -> Cpu:
        self.mlflow, self.kube = -cpu_seconds(self.pids[0]), -cpu_seconds(self.pids[1])
        return self

    def __exit__(self, *exc: object) -> None:
        self.mlflow += cpu_seconds(self.pids[0])
        self.kube += cpu_seconds(self.pids[1])


def mlflow_floor(uri: str, runs: int, threads: int = 4, with_params: bool = True) -> float:
    """Seconds per run of the two requests a new run needs — ``create_run`` with the tags and one ``log_batch``
    of the params an applied run got (copied from one of them) — sent by a plain MlflowClient from ``threads``
    threads: what the tracking server itself allows for the same writes. ``with_params=False``: ``create_run`` only
    (what a design with one request per run would cost)."""
    from concurrent.futures import ThreadPoolExecutor

    from mlflow import MlflowClient
    from mlflow.entities import Param, RunTag

    client = MlflowClient(uri)
    (applied,) = client.search_runs([client.get_experiment_by_name("big").experiment_id],
                                    "tags.`expctl.run_key` != ''", max_results=1)
    tags = {k: v for k, v in applied.data.tags.items() if k not in ("expctl.ready", "mlflow.parentRunId")}
    params = [Param(k, v) for k, v in applied.data.params.items()]
    experiment = client.create_experiment(f"floor-{time.time_ns()}")

    def one(i: int) -> None:
        run = client.create_run(experiment, tags={**tags, "expctl.run_key": f"k{i}"})
        if with_params:
            client.log_batch(run.info.run_id, params=params, tags=[RunTag("expctl.ready", "true")])

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(runs)))
    return (time.perf_counter() - started) / runs


def finish_every_job(cluster: Any, namespace: str) -> int:
    """Play the operator: every PyTorchJob of ``namespace`` succeeded (a /status patch each, 8 at once)."""
    from concurrent.futures import ThreadPoolExecutor

    from kubernetes import client
    from tests.support.kube_driver import conditions, patch_status

    from expctl.core.model import JobKind

    api = client.CustomObjectsApi(cluster.api_client())
    names: list[str] = []
    cont = None
    while True:
        page: Any = api.list_namespaced_custom_object("kubeflow.org", "v1", namespace, "pytorchjobs", limit=500,
                                                 **({"_continue": cont} if cont else {}))
        names += [item["metadata"]["name"] for item in page["items"]]
        cont = page["metadata"].get("continue")
        if not cont:
            break
    status = conditions("PyTorchJob", "succeed")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: patch_status(cluster, namespace, JobKind.PYTORCH, name, status), names))
    return len(names)


def stored_sizes(cluster: Any, ca: Path) -> str:
    """Bytes of one stored (succeeded) one-replica job of the sweep, and of its copy rendered as expctl did before
    the git-sync script moved into a ConfigMap (the script inline), made in namespace ``anchor``."""
    from copy import deepcopy

    from kubernetes import client
    from tests.support.kube_driver import conditions, patch_status

    from expctl.backends.kubernetes.manifests.common import SCRIPT_VOLUME
    from expctl.backends.kubernetes.manifests.gitsync import clone_script
    from expctl.core.model import JobKind

    api = client.CustomObjectsApi(cluster.api_client())
    job: Any = api.list_namespaced_custom_object("kubeflow.org", "v1", "bench", "pytorchjobs", limit=1)["items"][0]
    meta = job["metadata"]
    old = {"apiVersion": job["apiVersion"], "kind": job["kind"], "spec": deepcopy(job["spec"]),
           "metadata": {"name": f"inline-{meta['name']}", "labels": meta["labels"], "annotations": meta["annotations"]}}
    for role in old["spec"]["pytorchReplicaSpecs"].values():
        pod = role["template"]["spec"]
        pod["volumes"] = [v for v in pod["volumes"] if v["name"] != SCRIPT_VOLUME]
        for init in pod["initContainers"]:
            init["command"] = ["sh", "-c", clone_script()]
            init["volumeMounts"] = [m for m in init["volumeMounts"] if m["name"] != SCRIPT_VOLUME]
    api.create_namespaced_custom_object("kubeflow.org", "v1", "anchor", "pytorchjobs", old)
    patch_status(cluster, "anchor", JobKind.PYTORCH, old["metadata"]["name"], conditions("PyTorchJob", "succeed"))
    now, now_mf = noop_floors.stored_job(cluster.server, ca, "bench", meta["name"])
    then, then_mf = noop_floors.stored_job(cluster.server, ca, "anchor", old["metadata"]["name"])
    return (f"  stored one-replica job        {now} bytes (managedFields {now_mf}); with the git-sync script inline "
            f"(before): {then} bytes (managedFields {then_mf})")


def settled_phase(repo: Path, env: dict[str, str], cluster: Any, server: MlflowServer,
                  pids: tuple[list[int], list[int]], run_dir: Path) -> None:
    """Every job succeeds; one apply finishes their MLflow runs, the next settles them
    (``tracking/mlflow_ledger``); then the no-op plan again, and its floors."""
    finished = finish_every_job(cluster, "bench")
    _, offset = mlflow_requests(server.log_path, 0)
    sync_s, _ = expctl(repo, "apply", "-y", env=env)
    sync_reqs, offset = mlflow_requests(server.log_path, offset)
    settle_s, _ = expctl(repo, "apply", "-y", env=env)
    settle_reqs, offset = mlflow_requests(server.log_path, offset)
    plan_s, planned = expctl(repo, "plan", env=env)
    assert "No changes." in planned.stdout, planned.stdout[-500:]
    plan_reqs, offset = mlflow_requests(server.log_path, offset)
    print(f"After every job succeeded ({finished} /status patches):")
    print(f"  apply that finishes the runs {sync_s:7.2f} s   MLflow {dict(sync_reqs)}")
    print(f"  apply that settles them      {settle_s:7.2f} s   MLflow {dict(settle_reqs)}  "
          f"(one flip per run + the ledger's batch)")
    print(f"  no-op expctl plan            {plan_s:7.2f} s   MLflow {dict(plan_reqs)}")
    print(stored_sizes(cluster, run_dir / "certs" / "apiserver.crt"))
    for line in noop_floors.report(repo, env, server.uri, {"mlflow": pids[0], "apiserver+etcd": pids[1]},
                                   cluster.server, run_dir / "certs" / "apiserver.crt", "bench"):
        print(line)
    # the jobs garbage-collected, as their TTL does a day after they finished: only MLflow remembers them
    from kubernetes import client

    api = client.CustomObjectsApi(cluster.api_client())
    while api.list_namespaced_custom_object("kubeflow.org", "v1", "bench", "pytorchjobs", limit=1)["items"]:
        try:  # 10,000 objects: the apiserver may end the request (504) before the last; what it deleted stays so
            api.delete_collection_namespaced_custom_object("kubeflow.org", "v1", "bench", "pytorchjobs")
        except client.exceptions.ApiException as exc:
            if exc.status != 504:
                raise
        time.sleep(0.5)
    print("After the finished jobs were deleted (their TTL): the runs are remembered by MLflow alone:")
    for line in noop_floors.report(repo, env, server.uri, {"mlflow": pids[0], "apiserver+etcd": pids[1]},
                                   cluster.server, run_dir / "certs" / "apiserver.crt", "bench"):
        print(line)


def tracking_server(tracker: str, workers: int, pool: int, tmp: Path) -> tuple[MlflowServer, Postgres | None]:
    """The MLflow server the apply writes to (started): on sqlite (one worker), or on PostgreSQL."""
    if tracker == "sqlite":
        server = MlflowServer(tmp / "mlflow")
        server.start()
        return server, None
    pg = Postgres(durable=True)
    pg.start()
    server = MlflowServer(tmp / "mlflow", backend_store_uri=pg.uri, workers=workers,
                          env={"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": str(pool),
                               "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": str(pool)})
    try:
        server.start(timeout=300)
    except BaseException:
        pg.stop()
        raise
    return server, pg


def kube(runs: int, qps: int, tmp: Path, settle: bool = False, tracker: str = "sqlite", workers: int = 4,
         pool: int = 10) -> None:
    from kubernetes import client
    from tests.support.kube_cluster import (
        RESTRICTED_TOKEN,
        RESTRICTED_USER,
        Cluster,
        find_crds,
        free_port,
        install_crds,
        provision_binaries,
    )

    run_dir = tmp / "kube"
    run_dir.mkdir()
    (run_dir / "tokens.csv").write_text(f"admintoken,admin,admin-uid,system:masters\n"
                                        f"{RESTRICTED_TOKEN},{RESTRICTED_USER},{RESTRICTED_USER}-uid,team-a\n")
    cluster = Cluster(provision_binaries(), run_dir, free_port(), free_port(pair=True), run_dir / "kubeconfig")
    server: MlflowServer | None = None
    pg: Postgres | None = None
    try:
        cluster.start()
        install_crds(cluster.api_client(), find_crds())
        core = client.CoreV1Api(cluster.api_client())
        for ns in ("bench", "anchor"):
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        server, pg = tracking_server(tracker, workers, pool, tmp)
        assert server.proc is not None
        tracker_pids = group_pids(server.proc.pid) + (group_pids(pg.proc.pid) if pg and pg.proc else [])
        pids = (tracker_pids,
                [int((run_dir / f"{name}.pid").read_text()) for name in ("apiserver", "etcd")])
        repo = make_repo(tmp / "kube-repo", runs, "backend: kubernetes\nkubernetes:\n  namespace: bench\n"
                         f"  repo_url: https://git.example.com/team/repo.git\n  qps: {qps}\n  burst: {qps}\n")
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "MLFLOW_TRACKING_URI": server.uri, "CI": "1",
               "PYTHONPATH": str(ROOT / "src")}

        _, rendered = expctl(repo.path, "render", env=env)
        manifests = tmp / "manifests.yaml"
        manifests.write_text(rendered.stdout.replace("namespace: bench", "namespace: anchor"))
        with Cpu(*pids) as anchor_cpu:
            started = time.perf_counter()
            subprocess.run(["kubectl", "create", "-f", str(manifests)], env=env, check=True, capture_output=True)
            anchor = time.perf_counter() - started

        _, offset = mlflow_requests(server.log_path, 0)
        before = apiserver_requests(cluster.metrics())
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        with Cpu(*pids) as apply_cpu:
            apply_s, applied = expctl(repo.path, "apply", "-y", env=env, profile=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        client_cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
        assert f"Applied {runs} changes." in applied.stdout, applied.stdout[-500:]
        kube_reqs = apiserver_requests(cluster.metrics()) - before
        mlflow_reqs, offset = mlflow_requests(server.log_path, offset)

        with Cpu(*pids) as floor_cpu:
            floor = mlflow_floor(server.uri, min(runs, 200))
        with Cpu(*pids) as one_cpu:
            one = mlflow_floor(server.uri, min(runs, 200), with_params=False)
        _, offset = mlflow_requests(server.log_path, offset)
        before = apiserver_requests(cluster.metrics())
        plan_s, planned = expctl(repo.path, "plan", env=env)
        assert "No changes." in planned.stdout
        plan_kube = apiserver_requests(cluster.metrics()) - before
        plan_mlflow, offset = mlflow_requests(server.log_path, offset)

        load = os.getloadavg()[0]
        server_floor = apply_cpu.mlflow + apply_cpu.kube
        where = ("mlflow server on sqlite, 1 worker" if tracker == "sqlite" else
                 f"mlflow server on PostgreSQL, {workers} workers, SQLAlchemy pool {pool} + overflow {pool}")
        print(f"Kubernetes backend, {runs}-run PyTorchJob sweep, {where} (client QPS {qps}, write_concurrency "
              f"default; load average {load:.2f} on {os.cpu_count()} cores):")
        print(f"  expctl apply -y             {apply_s:8.2f} s   {runs / apply_s:7.1f} runs/s")
        print(f"  kubectl create -f (anchor)  {anchor:8.2f} s   ratio apply/anchor = {apply_s / anchor:.2f}")
        print(f"  apiserver requests / run    {sum(kube_reqs.values()) / runs:8.2f}   {dict(kube_reqs)}")
        print(f"  MLflow requests / run       {sum(mlflow_reqs.values()) / runs:8.3f}   {dict(mlflow_reqs)}  "
              f"(= 2 x {runs} + {sum(mlflow_reqs.values()) - 2 * runs} per apply)")
        print(f"  server CPU during the apply {server_floor:8.2f} s   MLflow server {apply_cpu.mlflow:.2f} s, "
              f"apiserver + etcd {apply_cpu.kube:.2f} s  (kubectl's create: apiserver + etcd "
              f"{anchor_cpu.kube:.2f} s)")
        cores = os.cpu_count() or 1
        print(f"  CPU of the apply / cores    {(server_floor + client_cpu) / cores:8.2f} s   the least wall time "
              f"that work takes here (servers {server_floor:.2f} s + expctl {client_cpu:.2f} s on {cores} cores); "
              f"2 x kubectl = {2 * anchor:.2f} s")
        print(f"  client token bucket floor   {runs / qps:8.2f} s   ({runs} POSTs at {qps} requests/s)")
        print(f"  MLflow floor (anchor)       {floor * runs:8.2f} s   = {floor * 1000:.1f} ms/run for create_run + "
              f"log_batch from a plain client (4 threads), server CPU {floor_cpu.mlflow / min(runs, 200) * 1000:.1f}"
              f" ms/run; apply/floor = {apply_s / (floor * runs):.2f}")
        print(f"  MLflow floor, 1 request/run {one * runs:8.2f} s   = {one * 1000:.1f} ms/run for create_run alone "
              f"(no params), server CPU {one_cpu.mlflow / min(runs, 200) * 1000:.1f} ms/run: "
              f"{one * runs / anchor:.2f} x kubectl")
        larger = max(floor * runs, anchor)
        print(f"  target: apply <= 1.25 x max(tracker floor {floor * runs:.2f} s, backend floor {anchor:.2f} s) = "
              f"{1.25 * larger:.2f} s   apply/max(floors) = {apply_s / larger:.2f}   MLflow requests "
              f"{sum(mlflow_reqs.values())} vs 2N + 8 = {2 * runs + 8}")
        print(f"  no-op expctl plan           {plan_s:8.2f} s   apiserver {dict(plan_kube)}  "
              f"MLflow {dict(plan_mlflow)}")
        for line in noop_floors.report(repo.path, env, server.uri, {"mlflow": pids[0], "apiserver+etcd": pids[1]},
                                       cluster.server, run_dir / "certs" / "apiserver.crt", "bench"):
            print(line)
        if settle:
            settled_phase(repo.path, env, cluster, server, pids, run_dir)
    finally:
        if server is not None:
            server.stop()
        if pg is not None:
            pg.stop()
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--local-runs", type=int, default=200)
    parser.add_argument("--qps", type=int, default=50, help="the client QPS and burst of the apply (issue 9: 50)")
    parser.add_argument("--settle", action="store_true",
                        help="then let every job succeed, settle the runs, and time the no-op plan again")
    parser.add_argument("--skip-kube", action="store_true", help="only the local part")
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--local-trials", type=int, default=3)
    parser.add_argument("--tracker", choices=("sqlite", "postgresql"), default="sqlite",
                        help="the tracking server's store (postgresql: Debian's, started here)")
    parser.add_argument("--mlflow-workers", type=int, default=4, help="uvicorn workers of the server on PostgreSQL")
    parser.add_argument("--pool-size", type=int, default=10,
                        help="MLflow's SQLAlchemy pool size (and max overflow) on PostgreSQL")
    parser.add_argument("--profile", help="record the Kubernetes apply with py-spy into this file (raw format)")
    args = parser.parse_args()
    PROFILE.extend([args.profile] if args.profile else [])
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_kube:
            kube(args.runs, args.qps, Path(tmp), args.settle, args.tracker, args.mlflow_workers, args.pool_size)
        if not args.skip_local:
            local(args.local_runs, Path(tmp), args.local_trials)


if __name__ == "__main__":
    main()
