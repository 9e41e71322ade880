"""Crash injection for tests: inert unless an ``EXPCTL_TEST_CRASH_*`` variable is set.

Code that must survive a crash at some point calls ``crash_point("<name>")`` there. Tests then SIGKILL the
real ``expctl`` process at that point and prove that a rerun converges:

* ``EXPCTL_TEST_CRASH_AT=<name>:<n>`` — the n-th time the process reaches ``<name>`` (exact points);
* ``EXPCTL_TEST_CRASH_SEED=<seed>[:<p>]`` — at every crash point, with probability ``p`` (default 0.25) drawn
  from a generator seeded with ``<seed>``: a random crash point among *all* the points the process passes,
  whatever they are called and however the code around them is arranged (reproducible for a sequential
  apply; with parallel writes the draw order follows the threads' interleaving).
"""

from __future__ import annotations

import os
import random
import signal
import threading

_counts: dict[str, int] = {}
_rng: random.Random | None = None
_lock = threading.Lock()  # applies run changes in threads


def crash_point(point: str) -> None:
    """SIGKILL this process here if a test asked for it (see the module docstring); otherwise nothing."""
    global _rng
    wanted, _, nth = os.environ.get("EXPCTL_TEST_CRASH_AT", "").partition(":")
    seeded = os.environ.get("EXPCTL_TEST_CRASH_SEED")
    if wanted != point and not seeded:
        return
    with _lock:
        if wanted == point:
            _counts[point] = _counts.get(point, 0) + 1
            if _counts[point] == int(nth or "1"):
                os.kill(os.getpid(), signal.SIGKILL)
        if seeded:
            seed, _, p = seeded.partition(":")
            if _rng is None:
                _rng = random.Random(int(seed))
            if _rng.random() < float(p or "0.25"):
                os.kill(os.getpid(), signal.SIGKILL)
