"""What a no-op ``expctl plan`` costs, split between expctl and the servers it reads (used by apply_scale.py).

In the same run, against the same servers and objects: the plan's wall time and CPU seconds (the expctl
process), the CPU seconds the ``mlflow server`` and the apiserver + etcd spent meanwhile (utime + stime from
/proc), and the floors — the same reads with plain HTTP and no parsing: the paginated ``runs/search`` of every
managed run, and the paginated LIST of each kind in the namespace.
"""

from __future__ import annotations

import json
import os
import re
import resource
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of these processes (and of every process in their sessions: the mlflow server's
    workers), from /proc."""
    wanted = set(pids)
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
        pid, session = int(stat.parent.name), int(fields[3])
        if pid in wanted or session in wanted:
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


def _post(url: str, body: dict[str, object]) -> bytes:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as resp:
        return bytes(resp.read())


def _token(payload: bytes, key: bytes) -> str | None:
    """The page token at the end of an answer, found without parsing the answer."""
    match = re.search(rb'"' + key + rb'"\s*:\s*"([^"]+)"', payload[-8192:])
    return match.group(1).decode() if match else None


def raw_search(uri: str, backend: str = "kubernetes") -> tuple[int, int]:
    """The plan's MLflow reads with plain HTTP, no parsing of runs: (requests, bytes)."""
    api = uri.rstrip("/") + "/api/2.0/mlflow/"
    experiments = json.loads(_post(api + "experiments/search", {"filter": "tags.`expctl.managed` = 'true'",
                                                                "max_results": 1000}))
    ids = [e["experiment_id"] for e in experiments.get("experiments", [])]
    requests, size, token = 1, 0, None
    while True:
        body: dict[str, object] = {
            "experiment_ids": ids, "max_results": 1000, "order_by": ["attributes.start_time ASC"],
            "filter": f"tags.`expctl.managed` = 'true' and tags.`expctl.backend` = '{backend}'"}
        payload = _post(api + "runs/search", {**body, **({"page_token": token} if token else {})})
        requests, size = requests + 1, size + len(payload)
        token = _token(payload, b"next_page_token")
        if not token:
            return requests, size


def raw_lists(server: str, ca: Path, namespace: str, token: str = "admintoken", page: int = 500) -> tuple[int, int]:
    """One paginated LIST per kind in ``namespace`` (expctl's label selector and page size), plain HTTP, no
    parsing of objects: (requests, bytes)."""
    from expctl.backends.kubernetes.manifests import KINDS
    from expctl.backends.kubernetes.manifests.common import MANAGED_SELECTOR

    ctx = ssl.create_default_context(cafile=str(ca))
    requests = size = 0
    for info in KINDS.values():
        cont: str | None = None
        while True:
            query = urllib.parse.urlencode({"labelSelector": MANAGED_SELECTOR, "limit": page,
                                            **({"continue": cont} if cont else {})})
            url = f"{server}/apis/{info.group}/{info.version}/namespaces/{namespace}/{info.plural}?{query}"
            req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=120) as resp:
                    payload = resp.read()
            except urllib.error.HTTPError as exc:
                if exc.code == 404:  # the kind is not installed
                    requests += 1
                    break
                raise
            requests, size = requests + 1, size + len(payload)
            cont = _token(payload[:4096] + payload[-4096:], b"continue")  # metadata: first, or last (sorted keys)
            if not cont:
                break
    return requests, size


def stored_job(server: str, ca: Path, namespace: str, name: str, token: str = "admintoken") -> tuple[int, int]:
    """A stored PyTorchJob as a GET returns it: (bytes, bytes of its ``managedFields``)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    url = f"{server}/apis/kubeflow.org/v1/namespaces/{namespace}/pytorchjobs/{name}"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, context=ctx, timeout=60) as resp:
        payload = resp.read()
    managed = json.loads(payload)["metadata"].get("managedFields")
    return len(payload), len(json.dumps(managed, separators=(",", ":"))) if managed else 0


@dataclass
class Timed:
    wall: float
    own_cpu: float  # of the process(es) run
    servers_cpu: dict[str, float]


def timed(fn: Callable[[], object], servers: dict[str, list[int]]) -> Timed:
    """Run ``fn``: its wall time, the CPU of child processes it waited for, each server's CPU meanwhile."""
    before = {name: cpu_seconds(pids) for name, pids in servers.items()}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    mine = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    fn()
    wall = time.perf_counter() - started
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    mine_after = resource.getrusage(resource.RUSAGE_SELF)
    own = (children_after.ru_utime + children_after.ru_stime - children.ru_utime - children.ru_stime
           + mine_after.ru_utime + mine_after.ru_stime - mine.ru_utime - mine.ru_stime)
    return Timed(wall, own, {name: cpu_seconds(pids) - before[name] for name, pids in servers.items()})


def report(repo: Path, env: dict[str, str], mlflow_uri: str, servers: dict[str, list[int]], kube_server: str,
           ca: Path, namespace: str, repeat: int = 3) -> list[str]:
    """Lines for the benchmark's output: the no-op plan (best of ``repeat``: its wall, its own CPU), then the
    floors, each with the servers' CPU seconds meanwhile."""
    env = {**env, "MLFLOW_TRACKING_URI": mlflow_uri}

    def plan() -> None:
        proc = subprocess.run([sys.executable, "-m", "expctl", "-C", str(repo), "plan"], capture_output=True,
                              text=True, env=env, check=False)
        if proc.returncode != 0 or "No changes." not in proc.stdout:
            raise SystemExit(f"no-op plan failed ({proc.returncode}):\n{proc.stdout[-1000:]}\n{proc.stderr[-2000:]}")

    def show(t: Timed) -> str:
        return "  ".join(f"{name} CPU {cpu:5.2f} s" for name, cpu in t.servers_cpu.items())

    plans = sorted((timed(plan, servers) for _ in range(repeat)), key=lambda t: t.wall)
    best = plans[0]
    found: dict[str, tuple[int, int]] = {}
    search = timed(lambda: found.setdefault("search", raw_search(mlflow_uri)), servers)
    lists = timed(lambda: found.setdefault("lists", raw_lists(kube_server, ca, namespace)), servers)
    (s_req, s_bytes), (l_req, l_bytes) = found["search"], found["lists"]
    return [
        f"  no-op plan, best of {repeat}       {best.wall:8.2f} s   ("
        f"{', '.join(f'{t.wall:.2f}' for t in plans)})  expctl CPU {best.own_cpu:5.2f} s  {show(best)}",
        f"  floor: MLflow search, raw   {search.wall:8.2f} s   {s_req} requests, {s_bytes / 1e6:.1f} MB, no parsing  "
        f"{show(search)}",
        f"  floor: LISTs, raw           {lists.wall:8.2f} s   {l_req} requests, {l_bytes / 1e6:.1f} MB, no parsing  "
        f"{show(lists)}",
        f"  load average                {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
    ]
