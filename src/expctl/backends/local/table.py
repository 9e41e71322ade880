"""The local backend's table of started and queued runs, kept between two holds of its state lock.

``create`` must not re-read every run's state to find a free slot (that is quadratic in the number of runs):
it schedules from this table, filled by the last full read (``observe``) and kept up to date by the process's
own writes. The table is trusted only while no other holder of the state lock can have changed a state
since: whoever takes the lock leaves its table's mark (a random token) in ``local.epoch`` before anything
else, so a holder that finds another mark there drops its table and reads every run again. Replicas that end
on their own only write their exit files (never a state), so a started run in the table may have ended:
``create`` refreshes the started runs before it concludes that every slot is taken.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from expctl.backends.local import state as st
from expctl.backends.local.state import RunState
from expctl.core import bounded
from expctl.core.errors import ExpctlError


def _order(state: RunState) -> tuple[float, str]:
    return (state.created_at, state.name)


class RunTable:
    """Started and queued runs by name (queued ones in start order), and the commits checked out for them."""

    def __init__(self, epoch_path: Path) -> None:
        self._epoch_path = epoch_path
        self._token = os.urandom(8).hex()  # this table's mark in ``local.epoch``
        self._marked = False  # the mark could be written: the table may be trusted
        self.valid = False
        self.started: dict[str, RunState] = {}
        self.queued: dict[str, RunState] = {}
        self.checkouts: set[str] = set()  # commits whose checkout this process made or verified

    def claim(self) -> None:
        """Call right after taking the state lock: the table stays valid only if no other table took the
        lock since this one last did (then ``local.epoch`` still holds this table's mark)."""
        try:
            last = bounded.read_text(self._epoch_path, 256, "a lock mark")
        except (OSError, ValueError, ExpctlError):
            last = None
        if last == self._token and self._marked:
            return
        self.invalidate()
        try:
            self._epoch_path.write_text(self._token, encoding="ascii")
        except OSError:  # cannot leave a mark: never trust the table (every create reads all runs)
            self._marked = False
            return
        self._marked = True

    def invalidate(self) -> None:
        self.valid = False
        self.started, self.queued = {}, {}
        self.checkouts = set()

    def fill(self, states: Iterable[RunState]) -> None:
        """Every run's state, as just read (and advanced) under the lock."""
        self.started, self.queued = {}, {}
        for state in sorted(states, key=_order):
            self.note(state)
        self.valid = self._marked

    def note(self, state: RunState) -> None:
        """Record a state this process just wrote (or refreshed)."""
        self.started.pop(state.name, None)
        self.queued.pop(state.name, None)
        if state.status == st.STARTED:
            self.started[state.name] = state
        elif state.status == st.QUEUED:
            last = next(reversed(self.queued.values()), None)
            self.queued[state.name] = state
            if last is not None and _order(state) < _order(last):  # a clock that went back: keep start order
                self.queued = {s.name: s for s in sorted(self.queued.values(), key=_order)}
