"""A local run's replica processes: the wrapper that records how each one ended, its distributed-training
environment and ports, starting it detached (its own session, so it outlives expctl) and stopping its group."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from expctl.backends.local import state as st
from expctl.backends.local.state import RunState
from expctl.core.jobenv import replica_env
from expctl.core.model import JobKind

# Runs one replica and records how it ended in <exit file>, atomically, before exiting with the same code.
# It starts with ``-I -S`` and imports nothing beyond the interpreter's built-in modules (no ``subprocess``,
# no ``json``): its start-up is most of what a local run costs beyond the job's own process.
_WRAPPER = r"""
import os, signal, sys, time
exit_path, argv = sys.argv[1], sys.argv[2:]
try:
    child = os.posix_spawnp(argv[0], argv, os.environ, setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
except OSError as exc:
    print(f"expctl: cannot start {argv[0]!r}: {exc}", flush=True)
    code = 127
else:
    def forward(signum, frame):
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, forward)
    code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
tmp = exit_path + ".tmp"
fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, ('{"returncode": %d, "finished_at": %r}' % (code, time.time())).encode())
os.fsync(fd)
os.close(fd)
os.replace(tmp, exit_path)
sys.exit(code if code >= 0 else 128 - code)
"""

_STOP_GRACE_SECONDS = 5.0
_children: list[subprocess.Popen[bytes]] = []  # kept so that Python reaps them; the state file is the truth


def topology_env(kind: str, names: list[str], index: int, ports: list[int]) -> dict[str, str]:
    """The distributed-training environment of replica ``index`` (ports[0] is the master's port)."""
    tf = [f"127.0.0.1:{port}" for port in ports[1:]] if kind == JobKind.TF else []
    return replica_env(kind, names, index, "127.0.0.1", ports[0], tf_addresses=tf)


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def resolve_command(command: list[str]) -> list[str]:
    """``python`` in a job's command means the interpreter expctl runs on (the local "image")."""
    if command and command[0] in ("python", "python3"):
        return [sys.executable, *command[1:]]
    return command


def spawn_replica(run_dir: Path, replica: str, command: list[str], checkout: Path, env: dict[str, str]) -> int:
    """Start one replica under the wrapper, detached, its output appended to ``<replica>.log``; its pid.
    OSError when the machine cannot start it (fork failed, too many processes, disk full)."""
    with open(run_dir / f"{replica}.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _WRAPPER, str(run_dir / f"{replica}.exit"), *command],
            cwd=checkout,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children.append(proc)
    return proc.pid


def reap() -> None:
    """Forget the children that have exited (Python reaps them; the state and exit files are the truth)."""
    _children[:] = [p for p in _children if p.poll() is None]


def stop(state: RunState) -> None:
    """SIGTERM every replica's process group, then SIGKILL what is left after a grace period."""
    procs = [p for p in state.processes if st.signalable(p) and st.alive(p)]
    for proc in procs:
        st.kill_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_SECONDS
    while procs and time.monotonic() < deadline:
        for child in _children:
            child.poll()
        procs = [p for p in procs if st.alive(p)]
        if procs:
            time.sleep(0.05)
    for proc in procs:
        st.kill_group(proc, signal.SIGKILL)
