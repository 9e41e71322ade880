"""A GitHub REST API on 127.0.0.1 for tests of ``engine.github_publish``: the few operations it uses, each
checked against GitHub's REST API description (method, path template, required and allowed body fields, the
status's ``state`` enum, as in github/rest-api-description's ``api.github.com`` OpenAPI document). A request
that matches no operation, or carries a body the description does not allow, is answered 400 and recorded
in ``violations``; ``fail`` makes the next requests answer a given HTTP status (403, 404, 422, 5xx)."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (method, path template, required body fields, allowed body fields): from the REST API description
OPERATIONS = [
    ("GET", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)", set(), set()),
    ("GET", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/issues/(?P<n>\d+)", set(), set()),
    ("GET", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/commits/(?P<sha>[0-9a-f]{40})", set(), set()),
    ("GET", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/issues/(?P<n>\d+)/comments", set(), set()),
    ("POST", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/issues/(?P<n>\d+)/comments", {"body"}, {"body"}),
    ("PATCH", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/issues/comments/(?P<id>\d+)", {"body"}, {"body"}),
    ("GET", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/commits/(?P<sha>[0-9a-f]{40})/comments", set(), set()),
    ("POST", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/commits/(?P<sha>[0-9a-f]{40})/comments", {"body"},
     {"body", "path", "position", "line"}),
    ("PATCH", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/comments/(?P<id>\d+)", {"body"}, {"body"}),
    ("POST", r"/repos/(?P<o>[^/]+)/(?P<r>[^/]+)/statuses/(?P<sha>[0-9a-f]{40})", {"state"},
     {"state", "target_url", "description", "context"}),
]
STATES = {"error", "failure", "pending", "success"}


@dataclass
class FakeGitHub:
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)  # id → comment (issue_number or sha)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    fail: int | None = None
    token: str = "test-token"
    url: str = ""

    def answer(self, method: str, path: str, body: dict[str, Any], auth: str) -> tuple[int, Any]:
        path = path.split("?", maxsplit=1)[0]
        self.requests.append((method, path, body))
        if auth not in (f"token {self.token}", f"Bearer {self.token}"):
            return 401, {"message": "Bad credentials"}
        found = [(re.fullmatch(t, path), req, ok) for m, t, req, ok in OPERATIONS if m == method]
        found = [f for f in found if f[0]]
        if not found:
            self.violations.append(f"{method} {path}: no such operation")
            return 400, {"message": "no such operation"}
        match, required, allowed = found[0]
        assert match is not None
        if not required <= set(body) or not set(body) <= allowed or ("state" in body and body["state"] not in STATES):
            self.violations.append(f"{method} {path}: body {sorted(body)} not allowed")
            return 422, {"message": "Validation Failed"}
        if self.fail is not None:
            return self.fail, {"message": f"simulated {self.fail}"}
        where = match.groupdict()
        key = where.get("n") or where.get("sha")
        base = f"{self.url}/repos/{where['o']}/{where['r']}"
        if method == "GET" and not path.endswith("/comments"):
            if key is None:
                return 200, {"id": 1, "name": where["r"], "full_name": f"{where['o']}/{where['r']}", "url": base}
            kind = "issues" if where.get("n") else "commits"
            return 200, {"number": int(key) if where.get("n") else None, "sha": key, "url": f"{base}/{kind}/{key}",
                         "comments_url": f"{base}/{kind}/{key}/comments"}
        if method == "GET":
            return 200, [c for c in self.comments.values() if c["on"] == key]
        if method == "POST" and "statuses" in path:
            self.statuses.append(body)
            return 201, {"id": len(self.statuses), "state": body["state"], "context": body.get("context", "default")}
        if method == "POST":
            cid = len(self.comments) + 1
            self.comments[cid] = {"id": cid, "on": key, "body": body["body"], "user": {"login": "github-actions[bot]",
                                  "type": "Bot", "id": 1}, "html_url": f"{self.url}/comment/{cid}",
                                  "url": f"{base}/{'issues/comments' if where.get('n') else 'comments'}/{cid}"}
            return 201, self.comments[cid]
        comment = self.comments.get(int(where["id"]))
        if comment is None:
            return 404, {"message": "Not Found"}
        comment["body"] = body["body"]
        return 200, comment


def serve(api: FakeGitHub) -> tuple[ThreadingHTTPServer, threading.Thread]:
    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
            status, data = api.answer(self.command, self.path, body, self.headers.get("Authorization", ""))
            out = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def do_PATCH(self) -> None:
            self._handle()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread
