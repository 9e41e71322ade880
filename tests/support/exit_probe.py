"""A process that ends through ``expctl.cli.program.exit_now`` (for tests/unit/test_program_exit.py).

    python tests/support/exit_probe.py OUT CODE [--thread] [--bytes N]

Registers an exit handler that writes OUT/atexit, prints N bytes on stdout (buffered: not flushed here), with
``--thread`` starts a non-daemon thread that writes OUT/thread after a moment, then calls ``exit_now(CODE)``
(CODE: an int, ``none``, or any other text: a message).
"""

from __future__ import annotations

import atexit
import sys
import threading
import time
from pathlib import Path

from expctl.cli.program import exit_now


def main() -> None:
    out, raw = Path(sys.argv[1]), sys.argv[2]
    atexit.register(lambda: (out / "atexit").write_text("ran"))
    if "--bytes" in sys.argv:
        sys.stdout.write("x" * int(sys.argv[sys.argv.index("--bytes") + 1]))
    if "--thread" in sys.argv:
        def late() -> None:
            time.sleep(0.3)  # still running when exit_now is called: the exit must wait for it
            (out / "thread").write_text("done")

        threading.Thread(target=late).start()
    code: str | int | None = None if raw == "none" else int(raw) if raw.lstrip("-").isdigit() else raw
    exit_now(code)


main()
