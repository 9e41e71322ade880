"""``core/lock_wait``: a lock wait longer than the quiet grace is announced once, naming the lock and its holder;
a short timeout fails without a word; the holder is noted once the lock is taken."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from expctl.core import lock_wait


class Busy(Exception):
    pass


class Lock:
    """Taken after ``busy`` refused attempts (each attempt's timeout recorded)."""

    def __init__(self, busy: int, timeout: float = 120.0) -> None:
        self.busy, self.timeout, self.asked = busy, timeout, []  # type: list[float]

    def acquire(self, timeout: float) -> None:
        self.asked.append(timeout)
        if len(self.asked) <= self.busy:
            raise Busy


def test_a_wait_is_announced_with_the_holder_then_waited_for_the_rest(tmp_path: Path) -> None:
    path = str(tmp_path / "x.lock")
    lock_wait.note_holder(path)
    lock = Lock(busy=1)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        lock_wait.acquire(lock, path, tmp_path, "apply", None, Busy)
    [warning] = seen
    assert str(warning.message).startswith(f"{tmp_path}: waiting up to 120 s for the apply lock, held by pid "
                                           f"{os.getpid()} (since ")
    assert lock.asked == [lock_wait.QUIET_WAIT_SECONDS, 120 - lock_wait.QUIET_WAIT_SECONDS]


def test_a_quick_lock_says_nothing_and_a_short_timeout_fails_silently(tmp_path: Path) -> None:
    path = str(tmp_path / "x.lock")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        lock_wait.acquire(Lock(busy=0), path, tmp_path, "apply", None, Busy)
        with pytest.raises(Busy):
            lock_wait.acquire(Lock(busy=1), path + "2", tmp_path, "apply", 0, Busy)
    assert seen == []
    assert (tmp_path / "x.lock.holder").read_text().split()[0] == str(os.getpid())
    assert lock_wait.holder(path + "2") == "another expctl"  # no note: nobody said
