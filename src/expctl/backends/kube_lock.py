"""A ``coordination.k8s.io/v1`` Lease lock that serialises applies on a cluster (like client-go's leader election).

The holder writes its identity and renews the lease from a background thread every ``duration / 3`` seconds;
another reconciler waits (bounded) and takes over once the lease is released or has not been renewed for
``leaseDurationSeconds``. Every write is a compare-and-swap on ``resourceVersion``, so two contenders can never
both win. The Lease API itself is reached through a ``LeaseStore`` (implemented in ``backends.kubernetes``),
so this module has no Kubernetes import and its logic works on any store.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Protocol

from expctl.errors import LockError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseRecord:
    """The spec of a Lease, plus the resourceVersion it was read at (None for a new one)."""

    holder: str
    duration_seconds: int
    acquire_time: float | None
    renew_time: float | None
    transitions: int = 0
    resource_version: str | None = None

    def expired(self, now: float) -> bool:
        return not self.holder or self.renew_time is None or now > self.renew_time + self.duration_seconds


class LeaseStore(Protocol):
    def read_lease(self, namespace: str, name: str) -> LeaseRecord | None: ...

    def create_lease(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord | None:
        """Create; None when it already exists (409)."""
        ...

    def update_lease(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord | None:
        """Replace at ``record.resource_version``; None on a conflict (409: someone else wrote first)."""
        ...


def default_identity() -> str:
    return f"{os.environ.get('USER', 'expctl')}@{socket.gethostname()}/{os.getpid()}"


class LeaseLock:
    """``with backend.lock(): ...`` — or ``acquire(timeout)`` / ``release()``."""

    def __init__(
        self,
        store: LeaseStore,
        namespace: str,
        name: str = "expctl-apply",
        *,
        identity: str | None = None,
        duration_seconds: int = 30,
        timeout: float = 60.0,
        poll_seconds: float = 1.0,
        renew: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.duration_seconds = duration_seconds
        self.timeout = timeout
        self.poll_seconds = poll_seconds
        self.renew = renew
        self._clock = clock
        self._record: LeaseRecord | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    @property
    def held(self) -> bool:
        return self._record is not None and not self.lost

    def _try_acquire(self) -> LeaseRecord | None:
        """One round: take the lease if it is free, expired or ours; returns what blocks us otherwise."""
        now = self._clock()
        current = self.store.read_lease(self.namespace, self.name)
        mine = LeaseRecord(self.identity, self.duration_seconds, now, now)
        if current is None:
            self._record = self.store.create_lease(self.namespace, self.name, mine)
            return None if self._record else self.store.read_lease(self.namespace, self.name)
        if current.holder != self.identity and not current.expired(now):
            return current
        if current.holder == self.identity and current.acquire_time is not None:
            mine = replace(mine, acquire_time=current.acquire_time)
        taken_over = current.holder not in ("", self.identity)
        mine = replace(
            mine,
            transitions=current.transitions + (1 if current.holder != self.identity else 0),
            resource_version=current.resource_version,
        )
        self._record = self.store.update_lease(self.namespace, self.name, mine)
        if self._record and taken_over:
            log.warning("took over lease %s/%s from %s (expired)", self.namespace, self.name, current.holder)
        return None if self._record else current

    def acquire(self, timeout: float | None = None) -> None:
        """Take the lease, waiting at most ``timeout`` seconds; LockError names the holder otherwise."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            blocker = self._try_acquire()
            if blocker is None and self._record is not None:
                break
            if time.monotonic() >= deadline:
                holder = blocker.holder if blocker else "?"
                age = self._clock() - blocker.renew_time if blocker and blocker.renew_time else 0.0
                raise LockError(
                    f'lease {self.namespace}/{self.name} is held by "{holder}" (renewed {age:.0f}s ago, '
                    f"expires after {blocker.duration_seconds if blocker else '?'}s without renewal); "
                    f"gave up waiting after {self.timeout if timeout is None else timeout:.0f}s"
                )
            time.sleep(min(self.poll_seconds, max(deadline - time.monotonic(), 0.01)))
        self.lost = False
        if self.renew:
            self._stop.clear()
            self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{self.name}", daemon=True)
            self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.duration_seconds / 3):
            record = self._record
            if record is None:
                return
            try:
                renewed = self.store.update_lease(
                    self.namespace, self.name, replace(record, renew_time=self._clock())
                )
            except Exception as exc:  # a failed renewal is retried next period until the lease expires
                log.warning("renewing lease %s/%s failed: %s", self.namespace, self.name, exc)
                if (
                    record.renew_time is not None
                    and self._clock() > record.renew_time + self.duration_seconds
                ):
                    self.lost = True
                    return
                continue
            if renewed is None:
                log.error("lost lease %s/%s: someone else wrote it", self.namespace, self.name)
                self.lost = True
                return
            self._record = renewed

    def check(self) -> None:
        """Raise LockError when the lease was lost while held (another reconciler took over)."""
        if self.lost:
            raise LockError(f"lost lease {self.namespace}/{self.name} while applying")

    def release(self) -> None:
        """Stop renewing and free the lease (holder emptied) so the next reconciler need not wait."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        record, self._record = self._record, None
        if record is None or self.lost:
            return
        current = self.store.read_lease(self.namespace, self.name)
        if current is None or current.holder != self.identity:
            return
        freed = replace(current, holder="", duration_seconds=1, renew_time=self._clock())
        if self.store.update_lease(self.namespace, self.name, freed) is None:
            log.warning("lease %s/%s changed while releasing it", self.namespace, self.name)

    def __enter__(self) -> LeaseLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
