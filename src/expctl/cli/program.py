"""The ``expctl`` program (``python -m expctl`` and the console script): the command line, then the process ends
without the interpreter's teardown.

Once a command that imported MLflow is done, Python's own exit spends about a second tearing down its ~2,500
modules one by one (measured on a no-op ``expctl apply``: 0.9–1.4 s of a 3.5 s process) — work whose only result
is freed memory. ``run`` does what that exit must do and skips the rest: the exit handlers run (``atexit``:
logging's flush, temporary directories' cleanup, whatever a library registered), stdout and stderr are flushed,
then ``os._exit`` with the same exit status. When another non-daemon thread is still alive (the interpreter
would wait for it), a tracer or profiler is on (coverage, ``python -m cProfile``: they write their results at
the exit) or a flush fails (a closed pipe: the interpreter's own handling applies) the ordinary exit takes
over. Files expctl writes are closed where they are written, and its stores commit before a command ends
(a crash loses nothing either), so nothing waits for the teardown. In-process callers (tests) call
``expctl.cli.main`` itself and keep their interpreter.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

from expctl.cli import main


def run() -> None:
    """``main``, then ``exit_now`` with its status."""
    try:
        main()
    except SystemExit as exc:
        exit_now(exc.code)
    exit_now(0)


def exit_now(code: str | int | None) -> None:
    """End the process with ``code`` as ``sys.exit(code)`` would, without the interpreter's teardown."""
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    if sys.gettrace() is not None or sys.getprofile() is not None:  # coverage, cProfile: they write at the exit
        sys.exit(code)
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): the message on stderr, status 1
        print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(status)
    os._exit(status)
