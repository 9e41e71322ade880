"""A ``coordination.k8s.io/v1`` Lease lock that serialises applies on a cluster (client-go's leader election).

The holder writes its identity and renews the lease from a background thread every ``duration / 3`` seconds;
another reconciler waits (bounded) and takes over once the lease is released or has not been renewed for
``leaseDurationSeconds``. Every write is a compare-and-swap on ``resourceVersion``, so two contenders can
never both win. Leases are read and written through a ``LeaseStore``: ``ApiLeaseStore`` uses the API client
that ``KubernetesBackend`` hands it, so this module itself imports no Kubernetes library.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol

from expctl.core.errors import BackendError, LockError

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
    """``user@host/pid-random``: unique per lock object, readable in ``kubectl get lease -o yaml``."""
    return f"{os.environ.get('USER', 'expctl')}@{socket.gethostname()}/{os.getpid()}-{uuid.uuid4().hex[:6]}"


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
    def scope(self) -> str:
        """What this lock serialises (``locking.scope_of``): the applies to its namespace."""
        return f"lease {self.namespace}/{self.name}"

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
                renewed = self.store.update_lease(self.namespace, self.name, replace(record, renew_time=self._clock()))
            except Exception as exc:  # a failed renewal is retried next period until the lease expires
                log.warning("renewing lease %s/%s failed: %s", self.namespace, self.name, exc)
                if record.renew_time is not None and self._clock() > record.renew_time + self.duration_seconds:
                    self.lost = True
                    return
                continue
            if renewed is None:
                log.error("lost lease %s/%s: someone else wrote it", self.namespace, self.name)
                self.lost = True
                return
            self._record = renewed

    def check(self) -> None:
        """Raise LockError unless the lease is still ours and unexpired (checked before every write)."""
        record = self._record
        if self.lost or record is None:
            raise LockError(f"lost lease {self.namespace}/{self.name} while applying (another apply took it over)")
        if record.expired(self._clock()):
            raise LockError(f"lease {self.namespace}/{self.name} expired while applying (not renewed for "
                            f"{record.duration_seconds}s)")

    def release(self) -> None:
        """Stop renewing and free the lease (holder emptied) so the next reconciler need not wait."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        record, self._record = self._record, None
        if record is None or self.lost:
            return
        try:  # a release that cannot reach the apiserver must not hide the outcome of the work it guarded
            current = self.store.read_lease(self.namespace, self.name)
            if current is None or current.holder != self.identity:
                return
            freed = replace(current, holder="", duration_seconds=1, renew_time=self._clock())
            if self.store.update_lease(self.namespace, self.name, freed) is None:
                log.warning("lease %s/%s changed while releasing it", self.namespace, self.name)
        except BackendError as exc:
            log.warning("could not release lease %s/%s (it expires %ss after its last renewal): %s",
                        self.namespace, self.name, record.duration_seconds, exc)

    def __enter__(self) -> LeaseLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class ApiLeaseStore:
    """``LeaseStore`` on ``coordination.k8s.io/v1`` leases, through a backend's generic object API.

    ``custom_api`` is the client's ``CustomObjectsApi`` (it reaches any group's plural as plain JSON);
    ``call(verb, resource, namespace, fn, name)`` runs one request throttled, retried and wrapped into
    ``ApiError`` (see ``KubernetesBackend.request``).
    """

    group, version, plural = "coordination.k8s.io", "v1", "leases"

    def __init__(self, custom_api: Any, call: Callable[..., Any]) -> None:
        self.api = custom_api
        self.call = call

    @staticmethod
    def _record(data: Mapping[str, Any]) -> LeaseRecord:
        spec = data.get("spec") or {}
        return LeaseRecord(
            holder=spec.get("holderIdentity") or "",
            duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=_parse_micro(spec.get("acquireTime")),
            renew_time=_parse_micro(spec.get("renewTime")),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=(data.get("metadata") or {}).get("resourceVersion"),
        )

    @staticmethod
    def _body(name: str, record: LeaseRecord) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "labels": {"expctl.io/managed-by": "expctl"}}
        if record.resource_version:
            meta["resourceVersion"] = record.resource_version
        spec = {
            "holderIdentity": record.holder,
            "leaseDurationSeconds": record.duration_seconds,
            "acquireTime": _micro(record.acquire_time),
            "renewTime": _micro(record.renew_time),
            "leaseTransitions": record.transitions,
        }
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}

    def _request(self, verb: str, namespace: str, name: str, fn: Callable[[], Any]) -> LeaseRecord | None:
        """The lease the server returned; None for 404 on reads and 409 on writes."""
        try:
            return self._record(self.call(verb, self.plural, namespace, fn, name))
        except BackendError as exc:
            if getattr(exc, "status", None) == (404 if verb == "get" else 409):
                return None
            raise

    def read_lease(self, namespace: str, name: str) -> LeaseRecord | None:
        args = (self.group, self.version, namespace, self.plural, name)
        return self._request("get", namespace, name, lambda: self.api.get_namespaced_custom_object(*args))

    def create_lease(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord | None:
        args = (self.group, self.version, namespace, self.plural, self._body(name, record))
        return self._request("create", namespace, name, lambda: self.api.create_namespaced_custom_object(*args))

    def update_lease(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord | None:
        args = (self.group, self.version, namespace, self.plural, name, self._body(name, record))
        return self._request("update", namespace, name, lambda: self.api.replace_namespaced_custom_object(*args))


def _micro(t: float | None) -> str | None:
    """A Kubernetes MicroTime: RFC 3339 with exactly six fractional digits."""
    return None if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_micro(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
