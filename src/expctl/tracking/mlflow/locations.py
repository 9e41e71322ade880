"""Where MLflow data lives: an embedded store's artifact root, and the command that serves the UI on a store.

Pure string and path rules; no ``mlflow`` import (``expctl ui`` and ``--help`` stay fast). Which tracking URI to
use is the workspace's decision (``engine/workspace.resolve_tracking_uri``).
"""

from __future__ import annotations

import sys
from pathlib import Path


def default_artifact_root(tracking_uri: str) -> str | None:
    """An embedded sqlite store keeps artifacts beside it in ``mlartifacts/``; a server decides its own."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = Path(tracking_uri[len("sqlite:///") :])
    return (db.parent / "mlartifacts").resolve().as_uri()


def ui_server_command(
    tracking_uri: str, port: int, host: str = "127.0.0.1"
) -> tuple[list[str] | None, dict[str, str], str]:
    """How to serve the MLflow UI on a store: (argv, extra env, URL); argv is None for a tracking server."""
    if tracking_uri.startswith(("http://", "https://")):
        return None, {}, tracking_uri
    beside = Path(sys.executable).with_name("mlflow")
    # the store's URI goes in the environment, not argv: a database URI's password would show in `ps`
    command = [str(beside) if beside.exists() else "mlflow", "server",
               "--host", host, "--port", str(port), "--workers", "1"]
    root = default_artifact_root(tracking_uri)
    if root:
        command += ["--default-artifact-root", root]
    env = {"MLFLOW_BACKEND_STORE_URI": tracking_uri, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return command, env, f"http://{host}:{port}"
