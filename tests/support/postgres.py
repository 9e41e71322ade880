"""Start and stop a real PostgreSQL server (Debian's ``postgresql``) for tests and benchmarks.

A throwaway cluster: ``initdb`` into a fresh directory, ``postgres`` listening on 127.0.0.1:<free port> and on
a Unix socket in that directory, trust authentication on loopback only (no password anywhere), one database.
PostgreSQL refuses to run as root: as root, the cluster's directory belongs to the ``postgres`` user (the
package creates it) and every server program runs as that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.mlflow_server import free_port


def bindir() -> Path:
    """The directory of ``initdb``/``postgres`` (Debian keeps them out of PATH), newest major version first."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not candidates:
        raise RuntimeError("PostgreSQL is not installed (scripts/test-prereqs.sh installs Debian's postgresql)")
    return Path(candidates[-1]).parent


class Postgres:
    """``with Postgres() as pg: pg.uri`` — a PostgreSQL server with one database, stopped and removed on exit.

    ``durable=False`` (tests) turns fsync off; benchmarks keep PostgreSQL's defaults (``durable=True``), as a
    deployed tracking server has them."""

    def __init__(self, database: str = "mlflow", durable: bool = False) -> None:
        self.database = database
        self.durable = durable
        self.port = free_port()
        self.user = "expctl"
        self.dir = Path(tempfile.mkdtemp(prefix="expctl-pg-"))
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._as_root = os.geteuid() == 0

    @property
    def uri(self) -> str:
        """The SQLAlchemy URI of the database (``postgresql://expctl@127.0.0.1:<port>/<database>``)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _prefix(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if self._as_root else []

    def _run(self, *cmd: str) -> None:
        proc = subprocess.run([*self._prefix(), *cmd], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")

    def start(self, timeout: float = 60.0) -> None:
        bins = bindir()
        if self._as_root:
            entry = pwd.getpwnam("postgres")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        os.chmod(self.dir, 0o700)
        self._run(str(bins / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--locale=C.UTF-8")
        options = ["-c", f"unix_socket_directories={self.dir}", "-c", "listen_addresses=127.0.0.1",
                   "-p", str(self.port), "-c", "max_connections=200"]
        if not self.durable:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        with open(self.log_path, "ab") as log:
            if self._as_root:
                os.chown(self.log_path, pwd.getpwnam("postgres").pw_uid, -1)
            self.proc = subprocess.Popen([*self._prefix(), str(bins / "postgres"), "-D", str(self.data), *options],
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready(bins, timeout)
            self._run(str(bins / "createdb"), "-h", str(self.dir), "-p", str(self.port), "-U", self.user,
                      self.database)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, bins: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            ready = subprocess.run([str(bins / "pg_isready"), "-q", "-h", str(self.dir), "-p", str(self.port)],
                                   check=False)
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres not ready after {timeout}s:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, close connections), then remove the cluster."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Postgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
