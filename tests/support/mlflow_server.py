"""Start and stop a real ``mlflow server`` (sqlite backend store by default, or any SQLAlchemy URI such as
``tests/support/postgres.py``'s; proxied artifacts) for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class MlflowServer:
    """``mlflow server`` on 127.0.0.1:<free port>, waited on through ``/health``."""

    def __init__(self, workdir: Path, backend_store_uri: str | None = None, workers: int = 1,
                 env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.backend_store_uri = backend_store_uri or f"sqlite:///{workdir / 'mlflow.db'}"
        self.workers = workers
        self.env = env or {}
        self.args = args
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"

    def start(self, timeout: float = 90.0) -> None:
        mlflow_bin = Path(sys.executable).with_name("mlflow")
        artifacts = self.workdir / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(mlflow_bin), "server",
            "--backend-store-uri", self.backend_store_uri,
            "--default-artifact-root", "mlflow-artifacts:/",
            "--artifacts-destination", str(artifacts),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers),
            *self.args,
        ]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **self.env}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        try:
            wait_healthy(self.uri, self.proc, timeout, self.log_path)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float, log_path: Path) -> None:
    """Wait (bounded) until an MLflow server answers ``/health``; RuntimeError with its log's tail otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not healthy after {timeout}s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)
