"""A loopback HTTP file server for dataset URL sources: ``serve_files({"d.csv": b"..."})`` serves those files on
127.0.0.1 (a query string, such as a signed URL's token, is ignored) and stops when the block ends."""

from __future__ import annotations

import functools
import http.server
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FileServer:
    url: str  # http://127.0.0.1:PORT


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_files(files: dict[str, bytes]) -> Iterator[FileServer]:
    with tempfile.TemporaryDirectory(prefix="expctl-http-") as root:
        for name, data in files.items():
            (Path(root) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(root) / name).write_bytes(data)
        handler = functools.partial(_Quiet, directory=root)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield FileServer(f"http://127.0.0.1:{server.server_address[1]}")
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
