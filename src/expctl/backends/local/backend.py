"""The local backend: each replica of a run is a subprocess here, in a checkout of the run's pinned commit.

Replicas get the environment a Kubeflow pod would get (``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``; ``TF_CONFIG`` for TFJob) plus the MLflow run they log into, and run detached
from expctl (their own session), so they outlive it. A tiny wrapper records each replica's exit code in a
file; the run's state is a JSON file under ``.expctl/runs/<name>/``; both survive restarts of expctl. There
is no daemon: runs beyond ``parallelism`` are queued and started by whichever later ``observe()`` or
``create()`` finds a slot.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock

from expctl.backends import files
from expctl.backends.job_record import identity_of, observed_identity
from expctl.backends.local import gpus as gpu
from expctl.backends.local import procs
from expctl.backends.local import state as st
from expctl.backends.local.logs import follow_lines
from expctl.backends.local.settings import local_settings
from expctl.backends.local.state import Proc, RunState
from expctl.backends.local.table import RunTable
from expctl.backends.locks import state_lock
from expctl.backends.worktrees import CheckoutError, Worktrees
from expctl.core.errors import BackendError, ExpctlError
from expctl.core.jobenv import DATA_DIGEST_ENV, OUTPUT_DIR, TeamEnv, inputs_in, job_env, output_env, replica_names
from expctl.core.model import FailureClass, JobKind, Launch, ObservedRun, Phase
from expctl.crash import crash_point

OUTPUTS = "outputs"  # a run directory's subdirectory its job writes ``outputs:`` into (EXPCTL_OUTPUT_DIR)


def open_local(settings: Any, repo: Path, state_dir: Path) -> LocalBackend:
    """The backend an ``expctl.yaml`` describes (its ``local:`` block), state in ``state_dir``."""
    block = local_settings(settings)
    return LocalBackend(state_dir, repo, parallelism=block.parallelism, gpus=block.gpus)


class LocalBackend:
    """Runs jobs as local processes; state under ``state_dir`` (the project's ``.expctl/``)."""

    name = "local"

    def __init__(self, state_dir: Path, repo: Path, parallelism: int | None = None, gpus: object = None) -> None:
        self.state_dir = Path(state_dir)
        self.repo = Path(repo)
        self.parallelism = max(1, parallelism if parallelism is not None else (os.cpu_count() or 1))
        self.runs_dir = self.state_dir / "runs"
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendError(f"{self.runs_dir}: cannot create the local state directory: {exc.strerror}") from exc
        self.worktrees = Worktrees(self.repo, self.state_dir / "worktrees")
        self._lock = FileLock(str(self.state_dir / "local.lock"), timeout=120)
        # the apply's pool threads queue here, not by polling the file lock
        self._thread_lock = threading.RLock()
        self._table = RunTable(self.state_dir / "local.epoch")  # what create() schedules from (local_table)
        self.gpus_declared = gpus  # ``local.gpus`` of expctl.yaml; EXPCTL_LOCAL_GPUS wins (see local_gpus)
        self.team_env: TeamEnv | None = None  # set by the engine when the teams declare mlflow: (core.jobenv)
        gpu.declared(gpus)  # a bad declaration fails here, before an apply's first write (not at each create)
        self._gpu_inventory: tuple[str, ...] | None = None
        self._gpu_looked_up = False
        self._waiting: dict[str, str] = {}  # queued run → why it waits (from the last _advance)

    # -- Backend protocol ------------------------------------------------------------------------------

    def observe(self) -> list[ObservedRun]:
        with self._locked():
            states = self._advance()
            return [self._observed(s) for s in states]

    def create(self, launch: Launch) -> None:
        run_dir = self.runs_dir / launch.name
        state = self._new_state(launch, run_dir)
        # Its config and queued state are synced to disk before taking the lock (in parallel with the other
        # creates of an apply); under the lock they are only renamed into place.
        staged = self._stage(launch, state)
        try:
            with self._locked():
                try:
                    existing = st.load(run_dir)
                except st.StateUnreadable as exc:  # rebuilt from the launch; the damaged files are kept aside
                    files.warn_once(f"{exc.message}; moved to {st.quarantine(run_dir)}")
                    existing, staged = None, self._stage(launch, state)  # the staged files moved aside too
                if existing is not None:
                    if existing.spec_hash == launch.spec.spec_hash:
                        self._schedule()
                        return
                    raise BackendError(
                        f"{launch.name} already exists with spec hash {existing.spec_hash[:12]}, "
                        f"not {launch.spec.spec_hash[:12]}: delete it first"
                    )
                os.replace(staged[0], run_dir / "config.json")
                crash_point("before-local-state")
                os.replace(staged[1], run_dir / "state.json")
                if self._table.valid:
                    self._table.note(state)
                self._schedule()
        finally:
            for path in staged:
                path.unlink(missing_ok=True)

    def _stage(self, launch: Launch, state: RunState) -> tuple[Path, Path]:
        run_dir = self.runs_dir / launch.name
        config: Path | None = None
        try:
            config = files.stage_json(run_dir / "config.json", dict(launch.spec.config))
            return config, st.stage(run_dir, state)
        except OSError as exc:
            if config is not None:
                config.unlink(missing_ok=True)
            raise BackendError(f"{run_dir}: cannot write the run's state: {exc.strerror or exc}") from exc

    def delete(self, name: str) -> None:
        run_dir = self.runs_dir / name
        with self._locked():
            state = st.load_or_skip(run_dir)
            if state is not None:
                self._stop(state)
            shutil.rmtree(run_dir, ignore_errors=True)
            self._advance()

    def cancel(self, name: str, by: str) -> None:
        run_dir = self.runs_dir / name
        with self._locked():
            state = st.load(run_dir)
            if state is None:
                raise BackendError(f"no local run named {name}")
            if state.status != st.FINISHED or not state.cancelled:
                self._stop(state)
                state.cancelled, state.cancelled_by = True, by
                if state.status != st.FINISHED:
                    state.phase, state.status = Phase.CANCELLED.value, st.FINISHED
                    state.finished_at = time.time()
                    state.message = f"cancelled by {by}"
                st.save(run_dir, state)
            self._advance()

    def logs(self, name: str, replica: str | None = None, follow: bool = False) -> Iterator[str]:
        state = st.load(self.runs_dir / name)
        if state is None:
            raise BackendError(f"no local run named {name}")
        names = replica_names(state.kind, state.replicas)
        if replica is not None and replica not in names:
            raise BackendError(f"{name} has no replica {replica!r} (replicas: {', '.join(names)})")
        chosen = [replica] if replica is not None else names
        return follow_lines(self.runs_dir / name, chosen, prefix=len(chosen) > 1, follow=follow,
                            start_queued=self.observe)

    def replicas(self, name: str) -> list[str]:
        """The run's replica names (what ``logs(name, replica=...)`` accepts); none for an unknown run."""
        state = st.load(self.runs_dir / name)
        return [] if state is None else replica_names(state.kind, state.replicas)

    # -- state machine ---------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock, state_lock(self._lock, self.state_dir, "local backend"):
            self._table.claim()
            try:
                yield
            except BaseException:
                self._table.invalidate()  # a write may have failed half-way: read everything next time
                raise

    def output_dir(self, name: str) -> str | None:
        """Where the attempt ``name`` wrote its ``outputs:`` (``ProducesOutputs``)."""
        return str((self.runs_dir / name / OUTPUTS).resolve())

    def _new_state(self, launch: Launch, run_dir: Path) -> RunState:
        spec = launch.spec
        env = job_env(launch, config_file=str((run_dir / "config.json").resolve()),
                      extra=output_env(spec, str((run_dir / OUTPUTS).resolve())))
        return RunState(**identity_of(launch), command=list(spec.job.command), env=env,
                        timeout_seconds=spec.job.timeout_seconds)

    def _load_all(self) -> list[RunState]:
        states = [st.load_or_skip(d) for d in sorted(self.runs_dir.iterdir()) if d.is_dir() and
                  not d.name.startswith(".")]
        for state in states:  # under the lock: a state an older expctl wrote with the tracking password
            if state is not None and st.scrubbed(state):
                st.save(self.runs_dir / state.name, state)
        return sorted((s for s in states if s is not None), key=lambda s: (s.created_at, s.name))

    def _advance(self) -> list[RunState]:
        """Read every run: refresh started runs, start queued runs while slots are free, drop unneeded
        checkouts; the table is filled from what was read."""
        states = self._load_all()
        for state in states:
            if state.status == st.STARTED:
                self._refresh(state)
        self._start_queued([s for s in states if s.status == st.STARTED],
                           [s for s in states if s.status == st.QUEUED])
        removed = self.worktrees.collect({s.commit for s in states if s.status != st.FINISHED})
        self._table.fill(states)
        self._table.checkouts.difference_update(removed)
        return states

    def _schedule(self) -> None:
        """Start queued runs while slots are free, from the table (no other run's state is read; the started
        ones are refreshed only when every slot looks taken, or a run waits for GPUs one of them may have
        freed), or by reading every run when the table is not valid."""
        table = self._table
        if not table.valid:
            self._advance()
            return
        if table.queued and len(table.started) >= self.parallelism:
            self._refresh_table()
        self._start_from_table()
        if self._waiting and table.started:
            self._refresh_table()
            self._start_from_table()

    def _refresh_table(self) -> None:
        for state in list(self._table.started.values()):
            self._refresh(state)
            self._table.note(state)

    def _start_from_table(self) -> None:
        table = self._table
        for state in self._start_queued(list(table.started.values()), list(table.queued.values())):
            table.note(state)

    def _start_queued(self, running: list[RunState], queued: list[RunState]) -> list[RunState]:
        """Start ``queued`` runs (in start order) while fewer than ``parallelism`` run; returns the runs whose
        state changed (started, or failed to start)."""
        self._waiting = {}
        running = list(running)
        changed: list[RunState] = []
        gpu_blocked = False  # a GPU run that does not fit keeps later GPU runs waiting too (no starvation)
        for state in queued:
            if len(running) >= self.parallelism:
                break
            devices = self._gpus_for(state, running, gpu_blocked)
            if devices is None:
                gpu_blocked = gpu_blocked or state.status == st.QUEUED
                if state.status != st.QUEUED:
                    changed.append(state)
                continue
            self._start(state, devices)
            changed.append(state)
            if state.status == st.STARTED:
                running.append(state)
        return changed

    def _refresh(self, state: RunState) -> None:
        run_dir = self.runs_dir / state.name
        names = replica_names(state.kind, state.replicas)
        running = {p.replica for p in state.processes if st.alive(p)}
        ended = {r: files.read_exit(run_dir / f"{r}.exit") for r in names}
        verdict = st.judge(ended, running)
        now = time.time()
        if len(state.processes) < len(names) and verdict.phase is not Phase.FAILED:
            verdict = st.Verdict(Phase.FAILED, FailureClass.INFRASTRUCTURE, "start was interrupted", now)
        timeout, started = state.timeout_seconds, state.started_at
        if verdict.phase is Phase.RUNNING and timeout and started and now - started > timeout:
            verdict = st.Verdict(
                Phase.FAILED,
                FailureClass.INFRASTRUCTURE,
                f"exceeded its timeout of {timeout}s (DeadlineExceeded)",
                now,
            )
        if verdict.phase.finished:
            if running:
                self._stop(state)
            state.status, state.phase = st.FINISHED, verdict.phase.value
            state.failure = verdict.failure.value if verdict.failure else None
            state.message, state.finished_at = verdict.message, verdict.finished_at or now
            st.save(run_dir, state)
        elif state.phase != verdict.phase.value:
            state.phase = verdict.phase.value
            st.save(run_dir, state)

    def _inventory(self) -> tuple[str, ...] | None:
        """This machine's GPUs as expctl may hand them out (None: not managed); looked up once per instance."""
        if not self._gpu_looked_up:
            self._gpu_inventory, self._gpu_looked_up = gpu.machine_inventory(self.gpus_declared), True
        return self._gpu_inventory

    def _gpus_for(self, state: RunState, running: list[RunState], blocked: bool) -> list[list[str]] | None:
        """Each replica's devices, or None when the run must wait (or can never fit: then it failed)."""
        in_use = {d for s in running for group in s.gpu_devices for d in group}
        where = gpu.place(self._inventory(), len(replica_names(state.kind, state.replicas)), state.gpus, in_use,
                          blocked)
        if where.impossible:
            state.status, state.phase, state.failure = st.FINISHED, Phase.FAILED.value, FailureClass.CODE.value
            state.message, state.finished_at = where.impossible, time.time()
            st.save(self.runs_dir / state.name, state)
        elif where.waiting:
            self._waiting[state.name] = where.waiting
        return where.devices

    def _start(self, state: RunState, devices: list[list[str]] | None = None) -> None:
        run_dir = self.runs_dir / state.name
        try:
            checkout = self._checkout(state.commit)
        except BackendError as exc:  # a full disk is the machine's failure (retried), a missing commit the run's
            state.status, state.phase = st.FINISHED, Phase.FAILED.value
            machine = isinstance(exc, CheckoutError) and exc.infrastructure
            state.failure = (FailureClass.INFRASTRUCTURE if machine else FailureClass.CODE).value
            state.message, state.finished_at = exc.message, time.time()
            st.save(run_dir, state)
            return
        try:  # the team's job identity: into the processes' environment only, never into the state file
            identity = dict(self.team_env(state.experiment)) if self.team_env else {}
        except ExpctlError as exc:
            state.status, state.phase = st.FINISHED, Phase.FAILED.value
            state.failure = FailureClass.INFRASTRUCTURE.value
            state.message, state.finished_at = exc.message, time.time()
            st.save(run_dir, state)
            return
        if OUTPUT_DIR in state.env:  # outputs: the job writes its dataset there
            (run_dir / OUTPUTS).mkdir(exist_ok=True)
        names = replica_names(state.kind, state.replicas)
        ports = procs.free_ports(1 + (len(names) if state.kind == JobKind.TF else 0))
        state.status, state.phase, state.started_at = st.STARTED, Phase.RUNNING.value, time.time()
        state.master_port = ports[0]
        managed_gpus = self._inventory() is not None
        state.gpu_devices = devices if devices is not None and managed_gpus else []
        # Saved before spawning: a crash from here on reads as "start was interrupted", never as a rerun. The
        # saves of a start are not synced to disk: the processes they record do not outlive a power loss
        # either, and the run's creation (its config and queued state) was synced by create().
        st.save(run_dir, state, durable=False)
        command = procs.resolve_command(state.command)
        boot = st.boot_id()
        for index, replica in enumerate(names):
            env = {**os.environ, **state.env, **identity, **procs.topology_env(state.kind, names, index, ports)}
            if managed_gpus:  # exactly this replica's GPUs (none for a CPU-only run)
                env.update(gpu.visible_devices(state.gpu_devices[index] if state.gpu_devices else []))
            try:
                pid = procs.spawn_replica(run_dir, replica, command, checkout, env)
            except OSError as exc:  # fork failed, too many processes, disk full: the machine, not the code
                self._stop(state)
                state.status, state.phase = st.FINISHED, Phase.FAILED.value
                state.failure = FailureClass.INFRASTRUCTURE.value
                state.message, state.finished_at = f"cannot start {replica}: {exc}", time.time()
                st.save(run_dir, state)
                return
            state.processes.append(Proc(replica, pid, st.start_ticks(pid), boot))
            st.save(run_dir, state, durable=False)
            crash_point("replica-started")
            if os.environ.get("EXPCTL_TEST_CRASH_AT") == f"after-replica:{index + 1}":  # test hook: apply.crash_point
                os.kill(os.getpid(), signal.SIGKILL)
        procs.reap()

    def _checkout(self, commit: str) -> Path:
        """The commit's checkout; verified with git once while the table is valid (no one else could have
        removed it since)."""
        if self._table.valid and commit in self._table.checkouts:
            return self.worktrees.path(commit)
        checkout = self.worktrees.ensure(commit)
        self._table.checkouts.add(commit)
        return checkout

    def _stop(self, state: RunState) -> None:
        procs.stop(state)

    def _observed(self, state: RunState) -> ObservedRun:
        phase = Phase(state.phase)
        message = state.message
        if state.status == st.QUEUED:
            slot = f"queued: waiting for a free slot (parallelism {self.parallelism})"
            message = self._waiting.get(state.name) or slot
        return ObservedRun(**observed_identity(state), phase=phase, backend=self.name,
                           failure=FailureClass(state.failure) if state.failure else None, message=message,
                           finished_at=state.finished_at, cancelled=state.cancelled, live=True,
                           data_digest=state.env.get(DATA_DIGEST_ENV), inputs=inputs_in(state.env))
