"""Perform a plan's writes in a bounded pool: deletes first, then find-or-create each MLflow run and create its job.

Every write is idempotent by deterministic name, so a crash at any point followed by a rerun converges to
exactly one job and one MLflow run per (run key, attempt). ``guard`` (the apply lock's check) runs before every
write; once ``stop`` is set (a signal, a lost lock, an unreachable tracker or backend) no further change is
started, the ones in flight finish, and the rest are reported as not applied. A change that raises — anything, not only
expctl's errors — is failed with a one-line message; nothing escapes as a traceback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from expctl import crash as _crash
from expctl.backends.base import Backend
from expctl.core.errors import BackendUnavailable, ExpctlError, LockError, truncate
from expctl.core.model import Action, Change, Launch
from expctl.engine.resume import resume_point
from expctl.tracking.base import Tracker, TrackerUnavailable, TrackerView

log = logging.getLogger(__name__)

Progress = Callable[[Change, str], None]
Guard = Callable[[], None]


class Stop:
    """Set once: why the apply stops starting changes (a signal, a lost lock, an unreachable tracker)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""
        self.signum: int | None = None

    def set(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)


@dataclass
class ApplyResult:
    done: list[Change] = field(default_factory=list)
    failed: list[tuple[Change, str]] = field(default_factory=list)
    skipped: list[Change] = field(default_factory=list)  # not started: the apply was stopped
    stopped: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped

    def results(self) -> dict[str, str]:
        """Each change's result by object name, for the audit record."""
        out = {c.name: "done" for c in self.done}
        out.update({c.name: f"failed: {message}" for c, message in self.failed})
        out.update({c.name: "not applied" + (f" ({self.stopped})" if self.stopped else "") for c in self.skipped})
        return out


# the test hook (``EXPCTL_TEST_CRASH_AT=<point>:<n>`` or ``EXPCTL_TEST_CRASH_SEED=<seed>[:<p>]``): see expctl.crash.
# Points: ``before-ensure-run``, ``after-ensure-run``, ``after-create`` (here), ``after-audit-intent``,
# ``before-audit-complete`` (engine), ``replica-started``, ``before-local-state`` and ``after-replica`` (local).
crash_point = _crash.crash_point


def apply_change(change: Change, backend: Backend, tracker: Tracker, applied_by: str,
                 view: TrackerView | None = None, guard: Guard = lambda: None) -> None:
    if change.action in (Action.DELETE, Action.REPLACE):
        for name in change.deletes:
            guard()
            backend.delete(name)
        # a replaced job that had not finished never reports again: close its MLflow run (KILLED), or it would
        # stay RUNNING forever (and keep its sweep's parent run RUNNING)
        cur = change.observed
        if (change.action is Action.REPLACE and cur is not None and cur.live and cur.mlflow_run_id
                and not cur.phase.finished and cur.name in change.deletes):
            guard()
            tracker.mark_killed(cur.mlflow_run_id, by=applied_by)
    if change.action in (Action.CREATE, Action.RETRY, Action.REPLACE):
        spec = change.desired
        assert spec is not None
        crash_point("before-ensure-run")
        guard()
        ref = tracker.ensure_run(spec, change.attempt, applied_by, view)
        crash_point("after-ensure-run")
        try:
            guard()
            resume = resume_point(change, tracker, ref.run_id)  # a retry starts from the failed attempt's checkpoint
            guard()
            backend.create(Launch(spec=spec, attempt=change.attempt, name=change.name, tracking=ref,
                                  applied_by=applied_by, resume=resume))
        except (LockError, TrackerUnavailable, BackendUnavailable):
            raise  # not this run's failure: the lock is lost, or a create may have reached the backend anyway
        except Exception as exc:
            fail_launch(tracker, ref.run_id, exc)
            raise
        crash_point("after-create")


def fail_launch(tracker: Tracker, run_id: str, exc: Exception) -> None:
    """The job of ``run_id`` could not be launched (``exc``): its run, created already, would stay RUNNING with
    no job. Mark it failed (an infrastructure failure: the next apply retries it by policy, as a failed
    attempt). Best effort, once: a failure to mark it is added to ``exc``'s message, never raised instead."""
    try:
        tracker.fail_launch(run_id, _one_line(exc))
    except Exception as marking:
        log.debug("marking run %s failed failed", run_id, exc_info=True)
        exc.add_note(f"its MLflow run {run_id} is left RUNNING: {_one_line(marking)}")


class _InOrder:
    """Reports changes in plan order as they finish (a finished change waits for the ones before it)."""

    def __init__(self, changes: Sequence[Change], progress: Progress | None) -> None:
        self.changes, self.progress = list(changes), progress
        self.status: dict[int, str] = {}
        self.next = 0
        self.lock = threading.Lock()

    def report(self, index: int, status: str) -> None:
        with self.lock:
            self.status[index] = status
            while self.next in self.status:
                if self.progress is not None:
                    self.progress(self.changes[self.next], self.status[self.next])
                self.next += 1


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ExpctlError):
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    else:
        text = truncate(f"{type(exc).__name__}: {exc}")
    notes = [n for n in getattr(exc, "__notes__", []) if isinstance(n, str)]
    return "; ".join([text, *notes]) if notes else text


def apply_changes(changes: Sequence[Change], backend: Backend, tracker: Tracker, applied_by: str, *,
                  view: TrackerView | None = None, concurrency: int = 1, guard: Guard = lambda: None,
                  stop: Stop | None = None, progress: Progress | None = None) -> ApplyResult:
    """Apply the writing changes, at most ``concurrency`` at a time: every delete before any create."""
    stop = stop or Stop()
    writes = [c for c in changes if c.action.writes]
    order = _InOrder(writes, progress)
    outcome: dict[int, tuple[str, str]] = {}  # index -> (done|failed|skipped, message)

    def task(index: int, change: Change) -> None:
        if stop.is_set():
            outcome[index] = ("skipped", "")
            order.report(index, f"not applied ({stop.reason})")
            return
        try:
            apply_change(change, backend, tracker, applied_by, view, guard)
        except LockError as exc:  # raised by guard() before a write: this change was not (fully) applied
            stop.set(str(exc))
            outcome[index] = ("failed", str(exc))
            order.report(index, f"failed: {exc}")
            return
        except Exception as exc:
            log.debug("change %s failed", change.name, exc_info=True)
            message = _one_line(exc)
            if isinstance(exc, TrackerUnavailable):
                stop.set("the tracking store is unreachable")
            elif isinstance(exc, BackendUnavailable):
                stop.set(f"the {backend.name} backend is unreachable")
            outcome[index] = ("failed", message)
            order.report(index, f"failed: {message}")
            return
        outcome[index] = ("done", "")
        order.report(index, "done")

    deletes = [i for i, c in enumerate(writes) if c.action is Action.DELETE]
    others = [i for i, c in enumerate(writes) if c.action is not Action.DELETE]
    slots = threading.BoundedSemaphore(max(1, concurrency))
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="apply") as pool:
        for phase in (deletes, others):
            futures: list[Future[None]] = []
            for index in phase:
                while not slots.acquire(timeout=0.2):  # a bounded queue: a stop leaves the rest unstarted
                    pass
                future = pool.submit(task, index, writes[index])
                future.add_done_callback(lambda _f: slots.release())
                futures.append(future)
            for future in futures:
                future.result()
    result = ApplyResult(stopped=stop.reason)
    for index, change in enumerate(writes):
        state, message = outcome[index]
        if state == "done":
            result.done.append(change)
        elif state == "failed":
            result.failed.append((change, message))
        else:
            result.skipped.append(change)
    return result
