"""A real ``mlflow server --app-name basic-auth --enable-workspaces`` (sqlite stores, one worker) for the teams'
MLflow tests: its admin password and Flask secret key are generated when it starts and held in memory only (the
auth ini written to the server's temporary directory names the user store and the admin user, never a password).

``admin_env()`` is the environment of the platform's CI identity (``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``);
``rest(...)`` sends one REST request as any user, answering ``(status, json)`` — how the isolation tests talk
to MLflow directly, not through expctl.
"""

from __future__ import annotations

import base64
import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.mlflow_server import MlflowServer

ADMIN = "admin"


class MlflowAuthServer(MlflowServer):
    """``mlflow server`` with basic auth and workspaces on 127.0.0.1:<free port>."""

    def __init__(self, workdir: Path, backend_store_uri: str | None = None) -> None:
        self.admin_password = secrets.token_urlsafe(18)
        ini = workdir / "basic_auth.ini"
        ini.write_text("[mlflow]\ndefault_permission = READ\n"
                       f"database_uri = sqlite:///{workdir / 'auth.db'}\n"
                       f"admin_username = {ADMIN}\n"
                       "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                       "grant_default_workspace_access = false\n"
                       "auth_cache_ttl_seconds = 300\n")  # one PBKDF2 check per user, not per request
        super().__init__(workdir, backend_store_uri, args=("--app-name", "basic-auth", "--enable-workspaces"), env={
            "MLFLOW_AUTH_CONFIG_PATH": str(ini),
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.admin_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        })

    def admin_env(self) -> dict[str, str]:
        """The platform CI identity's environment: the tracking URI and the admin's basic-auth credentials."""
        return {"MLFLOW_TRACKING_URI": self.uri, "MLFLOW_TRACKING_USERNAME": ADMIN,
                "MLFLOW_TRACKING_PASSWORD": self.admin_password}

    def rest(self, method: str, path: str, user: tuple[str, str] | None, body: dict[str, Any] | None = None,
             workspace: str | None = None) -> tuple[int, dict[str, Any]]:
        """One request to ``/api/<path>`` as ``user`` (name, password) in ``workspace``: (HTTP status, JSON)."""
        url = f"{self.uri}/api/{path}"
        data = None
        if body is not None and method == "GET":
            url += "?" + urllib.parse.urlencode(body)
        elif body is not None:
            data = json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        if user is not None:
            token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        if workspace is not None:
            req.add_header("X-MLFLOW-WORKSPACE", workspace)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, _json(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {"text": raw.decode(errors="replace")[:500]}
    return value if isinstance(value, dict) else {"value": value}
