"""A real kube-apiserver (+ etcd) on 127.0.0.1 for the Kubernetes backend tests, with the Kubeflow CRDs
(``tests/kube/conftest.py`` makes it the session's ``kube_cluster`` fixture).

Provisioning, in order: ``$KUBEBUILDER_ASSETS/kube-apiserver`` (etcd from there too when present, else from
PATH); else ``${XDG_CACHE_HOME:-~/.cache}/expctl/kube-v1.20.2/``; else ``scripts/build-kube-apiserver.sh``
builds it there (about 4 minutes on 2 cores). ``scripts/start-kube-apiserver.sh`` starts the servers in a
temporary directory on free ports; the CRDs come from ``$EXPCTL_KUBEFLOW_CRDS`` (default
``<repo>/../shared/kubeflow-crds``) and Kueue's from ``$EXPCTL_KUEUE_CRDS`` (default
``<repo>/../shared/kueue-crds``). When any of this fails the tests fail loudly: they never skip.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RESTRICTED_USER = "team-a-ci"
RESTRICTED_TOKEN = "team-a-ci-token"
TEAM_B_USER = "team-b-ci"  # a second team's identity (tests of team isolation)
TEAM_B_TOKEN = "team-b-ci-token"
START_TIMEOUT = 120


def free_port(pair: bool = False) -> int:
    """A free 127.0.0.1 port (and the next one free too, when ``pair``: etcd's peer port)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not pair:
            return port
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair on 127.0.0.1")


def provision_binaries() -> Path:
    """The directory of kube-apiserver (and etcd): $KUBEBUILDER_ASSETS, else the cache, else built there."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        if not (Path(assets) / "kube-apiserver").is_file():
            pytest.fail(f"KUBEBUILDER_ASSETS={assets} has no kube-apiserver", pytrace=False)
        return Path(assets)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "expctl" / "kube-v1.20.2"
    if (cache / "kube-apiserver").is_file():
        return cache
    build = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-kube-apiserver.sh"), str(cache)],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if build.returncode != 0 or not (cache / "kube-apiserver").is_file():
        pytest.fail(
            f"cannot provision kube-apiserver: scripts/build-kube-apiserver.sh failed ({build.returncode}):\n"
            + (build.stdout + build.stderr)[-3000:],
            pytrace=False,
        )
    return cache


def find_crds() -> Path:
    """The directory of the Kubeflow CRDs ($EXPCTL_KUBEFLOW_CRDS, else ../shared/kubeflow-crds)."""
    configured = os.environ.get("EXPCTL_KUBEFLOW_CRDS")
    crds = Path(configured) if configured else REPO.parent / "shared" / "kubeflow-crds"
    if not crds.is_dir() or not list(crds.glob("*.yaml")):
        pytest.fail(f"no Kubeflow CRDs in {crds} (set EXPCTL_KUBEFLOW_CRDS)", pytrace=False)
    return crds


def find_kueue_crds() -> Path:
    """The directory of Kueue's CRDs ($EXPCTL_KUEUE_CRDS, else ../shared/kueue-crds): ClusterQueue, LocalQueue,
    ResourceFlavor, Cohort, Workload (no Kueue controller runs: tests write what it would write)."""
    configured = os.environ.get("EXPCTL_KUEUE_CRDS")
    crds = Path(configured) if configured else REPO.parent / "shared" / "kueue-crds"
    if not crds.is_dir() or not list(crds.glob("*.yaml")):
        pytest.fail(f"no Kueue CRDs in {crds} (set EXPCTL_KUEUE_CRDS)", pytrace=False)
    return crds


@dataclass
class Cluster:
    """A running test apiserver: how to reach it, make clients for it, and stop or restart it."""

    bin_dir: Path
    run_dir: Path
    port: int
    etcd_port: int
    kubeconfig: Path

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def kubeconfig_for(self, user: str, token: str) -> Path:
        """A kubeconfig authenticating with ``token`` (a user from tokens.csv)."""
        path = self.run_dir / f"kubeconfig-{user}"
        ca = self.run_dir / "certs" / "apiserver.crt"
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "test", "cluster": {"server": self.server, "certificate-authority": str(ca)}}
                    ],
                    "users": [{"name": user, "user": {"token": token}}],
                    "contexts": [{"name": user, "context": {"cluster": "test", "user": user}}],
                    "current-context": user,
                }
            )
        )
        return path

    def api_client(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def metrics(self) -> str:
        """The apiserver's Prometheus metrics (admin token)."""
        ctx = ssl.create_default_context(cafile=str(self.run_dir / "certs" / "apiserver.crt"))
        req = urllib.request.Request(f"{self.server}/metrics", headers={"Authorization": "Bearer admintoken"})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return str(resp.read().decode())

    def _pid(self, name: str) -> int | None:
        path = self.run_dir / f"{name}.pid"
        return int(path.read_text()) if path.exists() else None

    def stop_apiserver(self) -> None:
        _stop(self._pid("apiserver"))

    def start(self) -> None:
        script = REPO / "scripts" / "start-kube-apiserver.sh"
        args = [str(self.bin_dir), str(self.run_dir), str(self.port), str(self.etcd_port)]
        proc = subprocess.run(
            ["bash", str(script), *args], capture_output=True, text=True, timeout=START_TIMEOUT, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"start-kube-apiserver.sh failed ({proc.returncode}): {proc.stderr[-3000:]}")

    def stop(self) -> None:
        for name in ("apiserver", "etcd"):
            _stop(self._pid(name))


def _stop(pid: int | None, timeout: float = 20) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def install_crds(api_client: Any, crd_dir: Path, timeout: float = 60) -> list[str]:
    """Create (not client-side apply: they are too large) every CRD in ``crd_dir``; wait until Established."""
    from kubernetes import client

    custom = client.CustomObjectsApi(api_client)
    names = []
    for path in sorted(crd_dir.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            custom.create_cluster_custom_object("apiextensions.k8s.io", "v1", "customresourcedefinitions", doc)
            names.append(doc["metadata"]["name"])
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            crd = custom.get_cluster_custom_object("apiextensions.k8s.io", "v1", "customresourcedefinitions", name)
            conds = (crd.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conds):
                pending.discard(name)
        time.sleep(0.1)
    if pending:
        raise RuntimeError(f"CRDs not Established after {timeout}s: {sorted(pending)}")
    return names


def start_cluster(run_dir: Path) -> Cluster:
    """etcd + kube-apiserver with the Kubeflow CRDs in ``run_dir`` (an admin and a restricted token); the test
    fails with the servers' logs when it cannot start."""
    bin_dir = provision_binaries()
    crds = find_crds()
    kueue = find_kueue_crds()
    (run_dir / "tokens.csv").write_text(
        f"admintoken,admin,admin-uid,system:masters\n{RESTRICTED_TOKEN},{RESTRICTED_USER},{RESTRICTED_USER}-uid,team-a\n"
        f"{TEAM_B_TOKEN},{TEAM_B_USER},{TEAM_B_USER}-uid,team-b\n"
    )
    cluster = Cluster(bin_dir, run_dir, free_port(), free_port(pair=True), run_dir / "kubeconfig")
    try:
        cluster.start()
        install_crds(cluster.api_client(), crds)
        install_crds(cluster.api_client(), kueue)
    except Exception as exc:
        cluster.stop()
        logs = "".join(f"\n--- {log.name} ---\n{log.read_text()[-2000:]}" for log in sorted(run_dir.glob("*.log")))
        pytest.fail(f"cannot provision the test kube-apiserver: {exc}{logs}", pytrace=False)
    return cluster


def create_namespace(api_client: Any, prefix: str = "t") -> str:
    from kubernetes import client

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api_client).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name
