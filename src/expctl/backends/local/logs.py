"""Reading (and following) a local run's replica logs from ``.expctl/runs/<name>/<replica>.log``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from expctl.backends.files import read_new_lines
from expctl.backends.local import state as st


def follow_lines(run_dir: Path, replicas: list[str], prefix: bool, follow: bool,
                 start_queued: Callable[[], object]) -> Iterator[str]:
    """A run's log lines (``[replica] `` prefixed when several); with ``follow`` until no replica can write
    any more. There is no daemon: following a queued run calls ``start_queued`` (an observe) now and then."""
    offsets = dict.fromkeys(replicas, 0)
    last_observe = time.monotonic()
    while True:
        # Decide "final" before reading: once no replica can write, one more read gets everything.
        state = st.load(run_dir) if follow else None
        final = state is None or not st.may_write(state)
        progressed = False
        for replica in replicas:
            offsets[replica], lines = read_new_lines(run_dir / f"{replica}.log", offsets[replica], final)
            for line in lines:
                progressed = True
                yield f"[{replica}] {line}" if prefix else line
        if final or state is None:
            return
        if not progressed:
            if state.status == st.QUEUED and time.monotonic() - last_observe > 2.0:
                start_queued()  # no daemon: following a queued run is what starts it
                last_observe = time.monotonic()
            time.sleep(0.2)
