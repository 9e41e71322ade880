"""The HTTP(S) proxy of the tests, in front of a real server (the kube-apiserver, ``mlflow server``): it counts
requests and injects faults.

Requests are forwarded unchanged unless a rule matches: a rule (method and path regex) injects a fault a given
number of times — an HTTP status (5xx, 429 with ``Retry-After``), a connection reset before or after the
request reached the server (the client never learns whether it was applied), or a delay — and ``stop()`` makes
the server look dead (connections refused) until ``start()``. For TLS servers the proxy terminates TLS with the
server's own certificate and key, so clients keep verifying against the same CA, and it connects upstream over
TLS. Only loopback addresses; ``close()`` stops it (so does leaving its ``with`` block). Every request seen is
logged in ``seen``; ``take()`` counts them by MLflow endpoint (``/api/2.0/mlflow/runs/create`` → ``runs/create``)
since the last ``take()``: how many requests a command cost.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def read_body(handler: BaseHTTPRequestHandler) -> bytes | None:
    """The request's body, whether sent with Content-Length or chunked (MLflow uploads artifacts chunked)."""
    if (handler.headers.get("Transfer-Encoding") or "").lower() == "chunked":
        body = b""
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers, then the blank line
                    pass
                return body
            body += handler.rfile.read(size)
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else None


@dataclass
class Rule:
    method: str  # "*" for any
    path: str  # regex searched in the request path
    fault: str  # "status", "reset-before", "reset-after", "delay", "die" (reset, then the server is gone)
    times: int = 1  # how many matching requests get the fault (-1: every one)
    status: int = 503
    retry_after: float | None = None
    delay: float = 0.0
    payload: bytes = b'{"message": "injected fault"}'  # the body of a "status" fault (any status, 200 too)
    nth: int = 0  # > 0: only the nth matching request gets the fault (the ones before it are forwarded)
    hits: int = 0
    seen: int = 0  # matching requests so far (with ``nth``)

    def matches(self, method: str, path: str) -> bool:
        if not ((self.method in ("*", method)) and re.search(self.path, path) is not None and
                (self.times < 0 or self.hits < self.times)):
            return False
        if self.nth > 0:
            self.seen += 1
            return self.seen == self.nth
        return True


@dataclass
class FaultProxy:
    upstream: str  # "127.0.0.1:5000" (or "http://127.0.0.1:5000")
    tls_cert: Path | None = None  # serve TLS with this certificate (and key) and connect upstream over TLS
    tls_key: Path | None = None
    ca: Path | None = None  # verify the upstream against this CA
    rules: list[Rule] = field(default_factory=list)
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, what happened)
    _server: Any = None
    _handler: Any = None
    _thread: threading.Thread | None = None
    _stopping: threading.Thread | None = None  # a "die" fault stopping the server (``start`` waits for it)
    _port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _taken: int = 0  # how many of ``seen`` the last ``take()`` counted

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"{'https' if self.tls_cert else 'http'}://127.0.0.1:{self._port}"

    uri = url

    def take(self) -> Counter[str]:
        """The requests since the last ``take()``, counted by MLflow endpoint (``/health`` checks excluded)."""
        with self._lock:
            new, self._taken = self.seen[self._taken:], len(self.seen)
        counts = Counter(path.split("?", 1)[0].split("/mlflow/", 1)[-1] for _method, path, _what in new)
        counts.pop("/health", None)
        return counts

    def add(self, *rules: Rule) -> None:
        with self._lock:
            self.rules.extend(rules)

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def _rule_for(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.hits += 1
                    return rule
        return None

    # -- life cycle ---------------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Listen (again: on the same port after ``stop()`` or a "die" fault, which is waited for first)."""
        stopping, self._stopping = self._stopping, None
        if stopping is not None:
            stopping.join(timeout=30)  # else the old server still holds the port, and would stop the new one
        proxy = self

        class Handler(_Handler):
            owner = proxy
            alive = True

        self._handler = Handler
        server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        server.daemon_threads = True
        if self.tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(self.tls_cert), str(self.tls_key))
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """The server is gone: the port refuses connections until ``start()`` (same port)."""
        if self._handler is not None:
            self._handler.alive = False  # kept-alive connections die with it (their handler threads live on)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    close = stop

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def upstream_connection(self, timeout: float = 60) -> http.client.HTTPConnection:
        host, port = self.upstream.split("://", 1)[-1].rstrip("/").rsplit(":", 1)
        if self.tls_cert:
            ctx = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
            return http.client.HTTPSConnection(host, int(port), timeout=timeout, context=ctx)
        return http.client.HTTPConnection(host, int(port), timeout=timeout)


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    alive: bool  # False once the server that accepted this connection was stopped
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), as a crashed server or a middlebox would."""
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        try:
            raw = sock.unwrap() if isinstance(sock, ssl.SSLSocket) else sock
            raw.close()
        except (OSError, ValueError):
            sock.close()

    def _handle(self) -> None:
        if not self.alive:  # a request on a connection kept alive from before stop(): the server is gone
            self._reset()
            return
        method, path = self.command, self.path
        body = read_body(self)
        rule = self.owner._rule_for(method, path)
        what = rule.fault if rule else "forwarded"
        self.owner.seen.append((method, path, what))
        if rule and rule.fault == "delay":
            time.sleep(rule.delay)
        if rule and rule.fault == "status":
            payload = rule.payload
            self.send_response(rule.status)
            if rule.retry_after is not None:
                self.send_header("Retry-After", str(int(rule.retry_after)))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if rule and rule.fault in ("reset-before", "die"):
            self._reset()
            if rule.fault == "die":
                stopping = threading.Thread(target=self.owner.stop, daemon=True)
                self.owner._stopping = stopping
                stopping.start()
            return
        conn = self.owner.upstream_connection()
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "connection", "transfer-encoding", "content-length")}
        if body is not None:
            headers["Content-Length"] = str(len(body))
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError:  # the server itself is unreachable: a gateway's answer
            self.send_error(502)
            return
        finally:
            conn.close()
        if rule and rule.fault == "reset-after":  # the server applied it; the client never hears
            self._reset()
            return
        self.send_response(resp.status, resp.reason)
        for key, value in resp.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle  # noqa: N815
