"""Apply a large sweep end to end, against plain baselines measured in the same run.

    python benchmarks/apply_scale.py [--runs 1000] [--local-runs 200] [--local-trials 3] [--skip-kube]
                                     [--skip-local]

Kubernetes: starts the project's test kube-apiserver (with the Kubeflow CRDs) and a real ``mlflow server``
behind a counting proxy, then times ``expctl apply -y`` of an N-point PyTorchJob sweep (client QPS 50, as in
issue 9), counts the requests it sent to the apiserver (``apiserver_request_total`` from /metrics) and to
MLflow (the proxy), and times the no-op ``expctl plan`` afterwards. The anchor, same run, same manifests:
``kubectl create -f`` of ``expctl render``'s output into another namespace.

Local: ``expctl apply -y`` of 200 trivial runs (``python -c pass``, embedded MLflow store) against starting
the same 200 processes in a plain loop, in 3 trials (the median ratio; the load average is printed).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.gitrepo import GitRepo  # noqa: E402
from tests.integration.counting_proxy import CountingProxy  # noqa: E402
from tests.integration.mlflow_server import MlflowServer  # noqa: E402

SWEEP = ("defaults:\n  - config\n  - _self_\nhydra:\n  sweeper:\n    params:\n      seed: range(0,{n})\n"
         "expctl:\n  command: [python, -c, pass]\n")


def expctl(repo: Path, *args: str, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "expctl", "-C", str(repo), *args], capture_output=True,
                          text=True, env=env, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"expctl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                         f"{proc.stderr[-2000:]}")
    return elapsed, proc


def make_repo(path: Path, runs: int, settings: str) -> GitRepo:
    repo = GitRepo(path)
    repo.write("conf/config.yaml", "seed: 0\noptimizer:\n  lr: 0.1\ntrainer:\n  epochs: 1\n")
    repo.write("code/train.py", "print('train')\n")
    repo.write("expctl.yaml", "code_paths: [code]\n" + settings)
    repo.write("experiments/big.yaml", SWEEP.format(n=runs))
    repo.commit("big sweep")
    return repo


def apiserver_requests(metrics: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in metrics.splitlines():
        if line.startswith("apiserver_request_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if labels.get("resource") in ("pytorchjobs", "tfjobs", "mpijobs", "trainjobs", "leases"):
                counts[f"{labels['verb']} {labels['resource']}"] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def mlflow_floor(uri: str, runs: int, threads: int = 4) -> float:
    """Seconds per run of the two requests a new run needs (create_run with tags, log_batch of params), sent
    by a plain MlflowClient from ``threads`` threads: what the tracking server itself allows."""
    from concurrent.futures import ThreadPoolExecutor

    from mlflow import MlflowClient
    from mlflow.entities import Param, RunTag

    client = MlflowClient(uri)
    experiment = client.create_experiment(f"floor-{time.time_ns()}")

    def one(i: int) -> None:
        run = client.create_run(experiment, tags={"expctl.run_key": f"k{i}", "expctl.attempt": "1"})
        client.log_batch(run.info.run_id, params=[Param("seed", str(i)), Param("optimizer.lr", "0.1")],
                         tags=[RunTag("expctl.ready", "true")])

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(runs)))
    return (time.perf_counter() - started) / runs


def kube(runs: int, tmp: Path) -> None:
    from kubernetes import client
    from tests.kube.conftest import (
        RESTRICTED_TOKEN,
        RESTRICTED_USER,
        Cluster,
        _bin_dir,
        _crd_dir,
        _free_port,
        install_crds,
    )

    run_dir = tmp / "kube"
    run_dir.mkdir()
    (run_dir / "tokens.csv").write_text(f"admintoken,admin,admin-uid,system:masters\n"
                                        f"{RESTRICTED_TOKEN},{RESTRICTED_USER},{RESTRICTED_USER}-uid,team-a\n")
    cluster = Cluster(_bin_dir(), run_dir, _free_port(), _free_port(pair=True), run_dir / "kubeconfig")
    server = MlflowServer(tmp / "mlflow")
    proxy: CountingProxy | None = None
    try:
        cluster.start()
        install_crds(cluster.api_client(), _crd_dir())
        core = client.CoreV1Api(cluster.api_client())
        for ns in ("bench", "anchor"):
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        server.start()
        proxy = CountingProxy(server.uri).start()
        repo = make_repo(tmp / "kube-repo", runs, "backend: kubernetes\nkubernetes:\n  namespace: bench\n"
                         "  repo_url: https://git.example.com/team/repo.git\n  qps: 50\n  burst: 50\n")
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "MLFLOW_TRACKING_URI": proxy.uri, "CI": "1",
               "PYTHONPATH": str(ROOT / "src")}

        _, rendered = expctl(repo.path, "render", env=env)
        manifests = tmp / "manifests.yaml"
        manifests.write_text(rendered.stdout.replace("namespace: bench", "namespace: anchor"))
        started = time.perf_counter()
        subprocess.run(["kubectl", "create", "-f", str(manifests)], env=env, check=True, capture_output=True)
        anchor = time.perf_counter() - started

        before = apiserver_requests(cluster.metrics())
        proxy.take()
        apply_s, applied = expctl(repo.path, "apply", "-y", env=env)
        assert f"Applied {runs} changes." in applied.stdout, applied.stdout[-500:]
        kube_reqs = apiserver_requests(cluster.metrics()) - before
        mlflow_reqs = proxy.take()

        floor = mlflow_floor(proxy.uri, min(runs, 200))
        proxy.take()
        before = apiserver_requests(cluster.metrics())
        plan_s, planned = expctl(repo.path, "plan", env=env)
        assert "No changes." in planned.stdout
        plan_kube = apiserver_requests(cluster.metrics()) - before
        plan_mlflow = proxy.take()

        print(f"Kubernetes backend, {runs}-run PyTorchJob sweep (client QPS 50, write_concurrency default):")
        print(f"  expctl apply -y             {apply_s:8.2f} s   {runs / apply_s:7.1f} runs/s")
        print(f"  kubectl create -f (anchor)  {anchor:8.2f} s   ratio apply/anchor = {apply_s / anchor:.2f}")
        print(f"  apiserver requests / run    {sum(kube_reqs.values()) / runs:8.2f}   {dict(kube_reqs)}")
        print(f"  MLflow requests / run       {sum(mlflow_reqs.values()) / runs:8.2f}   {dict(mlflow_reqs)}")
        print(f"  MLflow floor (anchor)       {floor * runs:8.2f} s   = {floor * 1000:.1f} ms/run for create_run + "
              f"log_batch from a plain client (4 threads); apply/floor = {apply_s / (floor * runs):.2f}")
        print(f"  no-op expctl plan           {plan_s:8.2f} s   apiserver {dict(plan_kube)}  "
              f"MLflow {dict(plan_mlflow)}")
    finally:
        if proxy is not None:
            proxy.stop()
        server.stop()
        cluster.stop()


def plain_loop(runs: int) -> float:
    """Seconds to start ``runs`` trivial processes in a plain loop and wait for them: the local anchor."""
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", "pass"]) for _ in range(runs)]
    for proc in procs:
        proc.wait()
    return time.perf_counter() - started


def local_trial(runs: int, tmp: Path) -> tuple[float, float, float]:
    """(apply, no-op apply, plain loop) seconds; the loop is timed just before the apply and just after the
    no-ops (the mean of the two), so that the three see the same machine."""
    repo = make_repo(tmp, 1, f"backend: local\nlocal:\n  parallelism: {runs}\n")
    (repo.path / ".gitignore").write_text(".expctl/\n")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "EXPCTL_BACKEND")}
    env["PYTHONPATH"] = str(ROOT / "src")
    try:
        expctl(repo.path, "apply", "-y", env=env)  # one run: creates the embedded store (its migrations)
        repo.write("experiments/big.yaml", SWEEP.format(n=runs + 1))
        repo.commit("the big sweep")
        loop_before = plain_loop(runs)
        apply_s, applied = expctl(repo.path, "apply", "-y", env=env)
        assert f"Applied {runs} changes." in applied.stdout, applied.stdout[-500:]
        expctl(repo.path, "apply", "-y", env=env)  # syncs the 200 finished runs into MLflow
        # the fixed cost (start-up, compose, observe): the median of three no-op applies
        noop_s = statistics.median(expctl(repo.path, "apply", "-y", env=env)[0] for _ in range(3))
        loop_after = plain_loop(runs)
    finally:
        subprocess.run([sys.executable, "-c", "import sys, pathlib; from tests.integration import e2e; "
                        "e2e.stop_jobs(pathlib.Path(sys.argv[1]))", str(repo.path)], cwd=ROOT, check=False)
    return apply_s, noop_s, (loop_before + loop_after) / 2


def local(runs: int, tmp: Path, trials: int = 3) -> None:
    load = os.getloadavg()[0]
    rows = [local_trial(runs, tmp / f"local-repo-{i}") for i in range(trials)]
    print(f"Local backend, {runs} trivial runs (python -c pass), embedded MLflow store (already created), "
          f"{trials} trials, load average {load:.1f} -> {os.getloadavg()[0]:.1f}:")
    for i, (apply_s, noop_s, loop) in enumerate(rows, 1):
        print(f"  trial {i}: expctl apply -y {apply_s:6.2f} s ({runs / apply_s:5.1f} runs/s)   no-op apply "
              f"{noop_s:5.2f} s   plain loop {loop:5.2f} s   apply/loop = {apply_s / loop:5.2f}, "
              f"(apply - no-op)/loop = {(apply_s - noop_s) / loop:5.2f}")
    ratio = statistics.median(a / loop for a, _, loop in rows)
    own = statistics.median((a - n) / loop for a, n, loop in rows)
    print(f"  median: apply/loop = {ratio:.2f}, (apply - no-op)/loop = {own:.2f}   (no-op: start-up, compose, "
          "observe: the fixed cost; loop: the same processes started in a plain loop and waited for)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--local-runs", type=int, default=200)
    parser.add_argument("--skip-kube", action="store_true")
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--local-trials", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_kube:
            kube(args.runs, Path(tmp))
        if not args.skip_local:
            local(args.local_runs, Path(tmp), args.local_trials)


if __name__ == "__main__":
    main()
