"""Durable state of the local backend: one JSON file per run under ``.expctl/runs/<name>/``.

A run directory holds ``state.json`` (written atomically), ``config.json`` (the resolved config handed to the
job), one ``<replica>.log`` (read incrementally by ``read_new_lines``) and, once the replica ended,
``<replica>.exit`` written by the replica's wrapper.
``judge`` is the pure decision of a run's phase from what its replicas left behind; ``alive`` tells a live
process from a recycled pid (pid + start time + boot id), so a run whose process vanished in a reboot is
observed as an infrastructure failure instead of running forever.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from expctl.backends.files import stage_json, warn_once, write_json
from expctl.backends.job_record import JobIdentity
from expctl.core import bounded, safe_json
from expctl.core.errors import BackendError, ExpctlError
from expctl.core.model import FailureClass, Phase
from expctl.core.sanitize import job_uri

QUEUED = "queued"
STARTED = "started"
FINISHED = "finished"


@dataclass
class Proc:
    """One replica's wrapper process, identified beyond its pid."""

    replica: str
    pid: int
    start_ticks: int | None
    boot_id: str | None


STATE_LIMIT = 16 << 20  # a run state is a few KiB; more is not one (bounded reads refuse it)
MAX_REPLICAS = 10_000  # expctl.replicas' bound (schema.JobIn): a state may not ask status to list a billion


@dataclass
class RunState(JobIdentity):
    """Everything the local backend remembers of one run (mutable record, persisted as JSON): its identity
    (``backends.job_record``), what it runs, and where it is."""

    command: list[str]
    env: dict[str, str]
    timeout_seconds: int | None
    status: str = QUEUED
    started_at: float | None = None
    processes: list[Proc] = field(default_factory=list)
    phase: str = Phase.PENDING.value
    failure: str | None = None
    message: str = ""
    finished_at: float | None = None
    cancelled: bool = False
    cancelled_by: str | None = None
    master_port: int | None = None
    gpu_devices: list[list[str]] = field(default_factory=list)  # each replica's GPUs while started (local_gpus)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunState:
        """The state of a parsed ``state.json``; ValueError when it is not one (foreign or damaged file)."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        data = dict(data)
        try:
            data["processes"] = [Proc(**p) for p in data.get("processes", [])]
            state = cls(**data)
        except TypeError as exc:  # missing or unknown fields
            raise ValueError(str(exc).replace("__init__() ", "")) from exc
        checked: list[tuple[object, Any]] = [(state, RunState), *((p, Proc) for p in state.processes)]
        for obj, kind in checked:
            for name, hint, fits in _hints(kind):
                if not fits(getattr(obj, name)):  # every field: status, describe and logs compute on them
                    raise ValueError(f"{name}: not a {getattr(hint, '__name__', hint)} ({getattr(obj, name)!r:.40})")
        if state.status not in (QUEUED, STARTED, FINISHED) or not 1 <= state.replicas <= MAX_REPLICAS or \
                state.gpus < 0:
            raise ValueError("fields out of range")
        Phase(state.phase)  # ValueError for an unknown phase
        for proc in state.processes:  # a pid expctl would signal: never 0 (our group), 1 (init) or -1 (all)
            if type(proc.pid) is not int or proc.pid <= 1 or not isinstance(proc.replica, str) or \
                    not isinstance(proc.start_ticks, int | None) or not isinstance(proc.boot_id, str | None):
                raise ValueError(f"process {proc.replica!r} has a pid expctl never records ({proc.pid!r})"
                                 if type(proc.pid) is not int or proc.pid <= 1 else "fields have the wrong types")
        return state


@functools.cache
def _hints(cls: Any) -> tuple[tuple[str, Any, Callable[[object], bool]], ...]:
    """Each field's annotation and its check, made once per process (``get_type_hints`` compiles every string
    annotation again at each call, and interpreting the hint for each value was most of reading a thousand
    states)."""
    return tuple((name, hint, _checker(hint)) for name, hint in typing.get_type_hints(cls).items())


def _checker(hint: Any) -> Callable[[object], bool]:
    """Whether a value (parsed JSON) is of the annotated type: int, float, str, bool, None, unions, lists, dicts."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        alternatives = tuple(_checker(arg) for arg in args)
        return lambda value: any(check(value) for check in alternatives)
    if origin is list:
        item = _checker(args[0])
        return lambda value: type(value) is list and all(item(v) for v in value)
    if origin is dict:
        key, val = _checker(args[0]), _checker(args[1])
        return lambda value: type(value) is dict and all(key(k) and val(v) for k, v in value.items())
    if hint is float:
        return lambda value: type(value) in (int, float)
    if hint is type(None):
        return lambda value: value is None
    return lambda value: type(value) is hint  # int is not bool, bool is not int


def scrubbed(state: RunState) -> bool:
    """Drop the password from the tracking URI a run's state keeps (``sanitize.job_uri``): an older expctl
    wrote the URI as given into ``state.json``. True when the state changed and should be saved again."""
    uri = state.env.get("MLFLOW_TRACKING_URI")
    if uri is None or job_uri(uri) == uri:
        return False
    state.env["MLFLOW_TRACKING_URI"] = job_uri(uri)
    return True


class StateUnreadable(BackendError):
    """A run's ``state.json`` is truncated, corrupt, foreign or unreadable: that one run is skipped."""


def save(run_dir: Path, state: RunState, durable: bool = True) -> None:
    write_json(run_dir / "state.json", asdict(state), durable)


def stage(run_dir: Path, state: RunState) -> Path:
    """``stage_json`` of the run's state."""
    return stage_json(run_dir / "state.json", asdict(state))


def load(run_dir: Path) -> RunState | None:
    """The run's state; None when it has none; ``StateUnreadable`` (one line) when the file is damaged."""
    path = run_dir / "state.json"
    try:
        state = RunState.from_json(safe_json.loads(bounded.read_text(path, STATE_LIMIT, "a run state")))
        if state.name != run_dir.name:  # the directory is the run's name: commands find it, and write, there
            raise ValueError(f"the state of run {state.name!r:.80} in the directory of {run_dir.name}")
        return state
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateUnreadable(f"{path}: cannot read run state: {exc.strerror or exc}") from exc
    except ExpctlError as exc:  # a FIFO or a device in its place, or a file far too large to be one
        raise StateUnreadable(f"{exc}; `expctl apply` rebuilds it") from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors too
        raise StateUnreadable(f"{path}: damaged run state ({str(exc).splitlines()[0][:120]}); "
                              "`expctl apply` rebuilds it") from exc


def load_or_skip(run_dir: Path) -> RunState | None:
    """Like ``load``, but a damaged state is a warning and the run is skipped (others keep working)."""
    try:
        return load(run_dir)
    except StateUnreadable as exc:
        warn_once(f"{exc.message}; skipping this run")
        return None


def quarantine(run_dir: Path) -> Path:
    """Move a run directory whose state is damaged aside (kept for inspection), so the run can be rebuilt."""
    target = run_dir.parent / ".damaged" / f"{run_dir.name}.{int(time.time() * 1000)}"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(run_dir, target)
    return target


@functools.cache
def boot_id() -> str | None:
    """This boot's id (it cannot change while this process lives: read once)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), or None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[19])


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] in ("Z", "X")


def alive(proc: Proc) -> bool:
    """True when the recorded process still runs (not a recycled pid, not a zombie, same boot)."""
    if proc.boot_id is not None and boot_id() not in (None, proc.boot_id):
        return False
    try:
        os.kill(proc.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if proc.start_ticks is not None and start_ticks(proc.pid) != proc.start_ticks:
        return False
    return not _zombie(proc.pid)


def signalable(proc: Proc) -> bool:
    """False for a pid no replica of expctl's can have: 1 (init), 0 or -1 (``killpg`` would signal expctl's own
    group, or every process), expctl's own process group (a state edited by hand, or another program's)."""
    return type(proc.pid) is int and proc.pid > 1 and proc.pid != os.getpgrp()


def kill_group(proc: Proc, sig: signal.Signals) -> None:
    """Signal the replica's process group (the wrapper leads its own session), if it is still ours."""
    if not signalable(proc) or not alive(proc):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def may_write(state: RunState) -> bool:
    """True while the run's replicas may still append to their logs: queued, or a replica alive."""
    if state.status == QUEUED:
        return True
    return state.status == STARTED and any(alive(p) for p in state.processes)


# signals a program raises on itself when it is broken; any other signal was sent (OOM killer, shutdown, admin)
_CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGABRT, signal.SIGFPE, signal.SIGILL, signal.SIGBUS,
                            signal.SIGSYS, signal.SIGTRAP})


@dataclass(frozen=True)
class Verdict:
    phase: Phase
    failure: FailureClass | None = None
    message: str = ""
    finished_at: float | None = None


def judge(ended: dict[str, dict[str, Any] | None], running: set[str]) -> Verdict:
    """The run's phase from each replica's exit record (None: no record) and which replicas still run.

    Pure. A non-zero exit fails the run as a code failure (the others are then stopped by the caller), a
    replica killed by a signal nobody sent is an infrastructure failure, and a replica that neither runs
    nor left an exit record vanished (machine rebooted, wrapper killed) — also infrastructure.
    """
    finished_at = max((e["finished_at"] for e in ended.values() if e), default=None)
    for replica, exit_record in sorted(ended.items()):
        if exit_record is None:
            continue
        code = int(exit_record["returncode"])
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            if -code in _CRASH_SIGNALS:  # the program crashed by itself (segfault, abort): its code failed
                return Verdict(Phase.FAILED, FailureClass.CODE, f"{replica} crashed ({name})", finished_at)
            why = f"{replica} killed by {name}"
            return Verdict(Phase.FAILED, FailureClass.INFRASTRUCTURE, why, finished_at)
        if code != 0:
            return Verdict(Phase.FAILED, FailureClass.CODE, f"{replica} exited with code {code}", finished_at)
    vanished = sorted(r for r, e in ended.items() if e is None and r not in running)
    if vanished:
        return Verdict(
            Phase.FAILED,
            FailureClass.INFRASTRUCTURE,
            f"process vanished without an exit code: {', '.join(vanished)}",
            finished_at,
        )
    if running:
        return Verdict(Phase.RUNNING)
    return Verdict(Phase.SUCCEEDED, None, "", finished_at)
