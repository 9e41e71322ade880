"""The Slurm backend: each attempt of a run is one batch job, submitted and watched through Slurm's CLIs.

``sbatch --parsable`` submits, ``squeue --json`` observes (one call for everything), ``scancel`` stops;
``SLURM_CONF`` and the rest of the Slurm client environment are honoured as the commands honour them. Code
runs at the exact commit from a checkout per commit under ``slurm.workdir`` (a directory every node mounts),
shared by its runs and removed when no unfinished run needs it — never from the dirty working tree.

Slurm forgets a job ``MinJobAge`` after it ends, so expctl keeps its own durable record per job under
``<workdir>/runs/<name>/``: ``record.json`` (``slurm.record``: identity, job id, how it ended), ``config.json``,
``job.sh``, the batch script's ``started`` and ``exit.json`` markers, and one ``task-<rank>.log`` per task; a
producer's ``outputs/`` (its ``EXPCTL_OUTPUT_DIR``, made before ``sbatch``), which the apply that sees the job
succeed reads from this machine (``output_dir``: the workdir is shared) and records (``engine.outputs``).
A job that left Slurm without any record of how it ended is an infrastructure failure ("vanished").

Pipelines: a run that consumes another run still pending or running is submitted with
``--dependency=afterok:<its job id>`` (``core.pipeline.after``): Slurm holds it (reason ``Dependency``) and starts
it once the upstream succeeded. If the upstream fails, Slurm never starts it (``DependencyNeverSatisfied``, or
cancels it under ``kill_invalid_depend``): it is observed with ``after_failed``, which the plan reports as the
upstream's failure, never as a failure of its own.

Idempotent: before submitting, ``create`` looks the name up (its record, then ``squeue``), so a crash between
``sbatch`` and recording never submits a second job for one (run key, attempt). Only jobs carrying expctl's
``--comment`` and a record under the workdir are ever cancelled or deleted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from filelock import FileLock

from expctl.backends import files
from expctl.backends.job_record import identity_of, observed_identity
from expctl.backends.locks import HeldFileLock, state_lock
from expctl.backends.slurm import script as sc
from expctl.backends.slurm.qos_quota import QosQuotas
from expctl.backends.slurm.record import JobRecord, record_from_json
from expctl.backends.worktrees import Worktrees
from expctl.core import bounded, pipeline, safe_json
from expctl.core.errors import BackendError, BackendUnavailable, ExpctlError, truncate
from expctl.core.jobenv import TeamEnv, replica_names
from expctl.core.model import FailureClass, Launch, ObservedRun, Phase
from expctl.core.quota import EnforcedQuotas
from expctl.core.team_platform import Team
from expctl.crash import crash_point


def open_slurm(settings: Any, repo: Path, state_dir: Path) -> SlurmBackend:
    """The backend an ``expctl.yaml`` describes: its ``slurm:`` block (workdir and placement defaults)."""
    return SlurmBackend(sc.workdir_of(settings), repo)


@contextlib.contextmanager
def slurm_lock(settings: Any, timeout: float) -> Iterator[HeldFileLock]:
    """The apply lock: a file lock on the shared workdir, so applies from any machine are serialised (the
    engine checks it before every write)."""
    from expctl.backends.locks import file_lock

    workdir = sc.workdir_of(settings)
    workdir.mkdir(parents=True, exist_ok=True)
    with file_lock(workdir / "apply.lock", timeout) as lock:
        yield lock


def _crash_hook(point: str) -> None:
    """Test hook (``EXPCTL_TEST_CRASH_AT=before-sbatch:1`` or ``after-sbatch:1``): SIGKILL expctl right before
    ``sbatch`` (the record says "submitting") or right after Slurm accepted the job (its id not yet recorded);
    ``EXPCTL_TEST_CRASH_SEED`` picks among these too (see expctl.crash)."""
    crash_point(point)


class SlurmBackend:
    """Runs each attempt as one Slurm batch job; durable records under ``workdir``."""

    name = "slurm"

    def __init__(self, workdir: Path, repo: Path) -> None:
        self.workdir = Path(workdir)
        self.repo = Path(repo)
        self.runs_dir = self.workdir / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.worktrees = Worktrees(self.repo, self.workdir / "checkouts")
        self._lock = FileLock(str(self.workdir / "slurm.lock"), timeout=120)
        self._seen: list[dict[str, Any]] | None = None  # the last squeue listing (creates reuse it)
        self.team_env: TeamEnv | None = None  # set by the engine when the teams declare mlflow: (core.jobenv)
        self.qos_quotas = QosQuotas()  # whose GPU quota Slurm's accounting enforces (asked once per command)

    # -- Backend protocol ------------------------------------------------------------------------------

    def observe(self) -> list[ObservedRun]:
        self._seen = self._squeue()
        return self.observe_jobs(self._seen)

    def observe_jobs(self, jobs: list[dict[str, Any]]) -> list[ObservedRun]:
        """``observe`` given what ``squeue --json`` listed (``jobs``): the records joined with Slurm's view."""
        with self._locked():
            records = [self._resolve(r, jobs) for r in self._records()]
            self.worktrees.collect({r.commit for r in records if r.phase is None})
        return [self._observed(r, jobs) for r in records if r.job_id is not None]

    def create(self, launch: Launch) -> None:
        with self._locked():
            record = self._load(launch.name)
            if record is not None and record.spec_hash != launch.spec.spec_hash:
                raise BackendError(f"{launch.name} already exists with spec hash {record.spec_hash[:12]}, "
                                   f"not {launch.spec.spec_hash[:12]}: delete it first")
            if record is not None and record.job_id is not None:
                return
            # Not (yet) recorded as submitted: the job may still exist (expctl died right after sbatch). The
            # listing of this process's last observe is enough: a job submitted before that is in it, and the
            # apply lock keeps other expctl processes from submitting since.
            jobs = self._seen if self._seen is not None else self._squeue()
            job_id = self._submitted(launch.name, launch.spec.spec_hash, jobs)
            if job_id is not None:
                record = record or self._new_record(launch)
                record.job_id = job_id
                self._save(record)
                return
            # A live job of ours under this name with another spec is superseded (a replace whose delete is
            # still draining it, or one whose record was lost): it must not run alongside its replacement.
            self._scancel([int(j["job_id"]) for j in self._mine(launch.name, jobs) if not _ended(j)])
            self._submit(launch)

    def delete(self, name: str) -> None:
        jobs = self._squeue()
        with self._locked():
            job_ids = {int(j["job_id"]) for j in self._mine(name, jobs)}  # by id alone it may be someone else's
            live = {int(j["job_id"]) for j in jobs if not _ended(j)}
            self._scancel([i for i in job_ids if i in live])
            shutil.rmtree(self.runs_dir / name, ignore_errors=True)

    def cancel(self, name: str, by: str) -> None:
        jobs = self._squeue()
        with self._locked():
            record = self._load(name)
            if record is None or record.job_id is None:
                raise BackendError(f"no Slurm run named {name}")
            job_id = record.job_id
            record = self._resolve(record, jobs)
            if record.phase is None:
                record.phase, record.failure = Phase.CANCELLED.value, None
                record.finished_at, record.message = time.time(), f"cancelled by {by}"
            record.cancelled, record.cancelled_by = True, by
            self._save(record)  # durable first: a crash after scancel never reads as a failure to retry
            self._scancel([job_id] if self._job_of(record, jobs) is not None else [])

    def logs(self, name: str, replica: str | None = None, follow: bool = False) -> Iterator[str]:
        record = self._load(name)
        if record is None or record.job_id is None:
            raise BackendError(f"no Slurm run named {name}")
        names = replica_names(record.kind, record.replicas)
        if replica is not None and replica not in names:
            raise BackendError(f"{name} has no replica {replica!r} (replicas: {', '.join(names)})")
        chosen = [replica] if replica is not None else names
        return self._lines(record, {r: names.index(r) for r in chosen}, follow)

    def replicas(self, name: str) -> list[str]:
        """The run's replica names (what ``logs(name, replica=...)`` accepts): its logs are kept per replica."""
        record = self._load(name)
        return [] if record is None else replica_names(record.kind, record.replicas)

    def output_dir(self, name: str) -> str | None:
        """Where the attempt ``name`` wrote its ``outputs:`` (``ProducesOutputs``), read through the workdir."""
        return str(self.runs_dir / name / sc.OUTPUTS)

    # -- submitting ------------------------------------------------------------------------------------

    def enforced_quotas(self, teams: Sequence[Team]) -> EnforcedQuotas:
        return self.qos_quotas.of(teams)

    def _new_record(self, launch: Launch) -> JobRecord:
        return JobRecord(**identity_of(launch))

    def _submit(self, launch: Launch) -> None:
        run_dir = self.runs_dir / launch.name
        record = self._new_record(launch)
        sched = launch.spec.job.scheduling
        try:
            args = sc.sbatch_args(launch, str(run_dir), sc.Placement(sched.partition, sched.account, sched.qos))
        except ValueError as exc:
            raise BackendError(f"{launch.name}: {exc}") from exc
        try:  # the team's job identity: sbatch hands its environment to the job (--export=ALL); never the script
            identity = dict(self.team_env(launch.spec.experiment)) if self.team_env else None
        except ExpctlError as exc:
            raise BackendError(f"{launch.name}: {exc.message}") from exc
        after = self._after(launch)
        if after:
            args.append(f"--dependency=afterok:{':'.join(str(i) for i in after.values())}")
            record.extra["after"] = after
        files.write_json(run_dir / "config.json", dict(launch.spec.config))
        if launch.spec.job.outputs:  # the job writes its dataset there (EXPCTL_OUTPUT_DIR)
            (run_dir / sc.OUTPUTS).mkdir(exist_ok=True)
        self._save(record)  # the checkout of this commit is now needed: collect keeps it
        try:
            checkout = self.worktrees.ensure(launch.spec.commit)
            script = sc.batch_script(launch, str(run_dir), str(checkout), launch.spec.job.command)
            (run_dir / "job.sh").write_text(script, encoding="utf-8")
            _crash_hook("before-sbatch")
            out = self._run(["sbatch", *args, str(run_dir / "job.sh")], identity)
        except BackendUnavailable:
            # the controller may have taken the job before it went away: its files stay (the job may run from
            # them), and the next apply adopts the job, found by name in squeue, or submits it (see _submitted)
            raise
        except BackendError:
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing was submitted: leave no record behind
            raise
        _crash_hook("after-sbatch")
        record.job_id = int(out.strip().split(";")[0])
        self._save(record)

    def _after(self, launch: Launch) -> dict[str, int]:
        """The Slurm job ids of the upstream attempts the run consumes and Slurm must see succeed first
        (``--dependency=afterok``); an upstream that already succeeded is not waited on."""
        found: dict[str, int] = {}
        for name in pipeline.after(launch.spec):
            record = self._load(name)
            if record is None or record.job_id is None:
                raise BackendError(f"{launch.name}: its upstream {name} has no Slurm job to wait on")
            if record.phase == Phase.SUCCEEDED.value:
                continue
            if record.phase is not None:
                raise BackendError(f"{launch.name}: its upstream {name} ended ({record.message}) before it was "
                                   "submitted; the next apply decides")
            found[name] = record.job_id
        return found

    def _mine(self, name: str, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The jobs this workdir submitted under ``name`` (expctl's comment, and the run's directory)."""
        run_dir = str(self.runs_dir / name)
        return [j for j in self._managed(jobs)
                if j.get("name") == name and j.get("current_working_directory") == run_dir]

    def _job_of(self, record: JobRecord, jobs: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The recorded job as Slurm lists it — by its id *and* as this run's (name, run directory, expctl's
        comment): a controller that crashed before saving its state forgets the jobs it had just accepted and
        hands their ids out again, so a job id alone may name someone else's job."""
        return next((j for j in self._mine(record.name, jobs) if int(j["job_id"]) == record.job_id), None)

    def _submitted(self, name: str, spec_hash: str, jobs: list[dict[str, Any]]) -> int | None:
        """The job id expctl submitted for ``name`` with ``spec_hash``, recorded or not (a crash after sbatch)."""
        same = [int(j["job_id"]) for j in self._mine(name, jobs)
                if (sc.parse_comment(str(j.get("comment") or "")) or {}).get("spec_hash") == spec_hash]
        if same:
            return max(same)
        started = self.runs_dir / name / sc.STARTED_FILE
        if started.exists():  # it ran, and Slurm already forgot it
            return int(bounded.read_text(started, 64, "a job id file").strip())
        return None

    # -- observing -------------------------------------------------------------------------------------

    def _resolve(self, record: JobRecord, jobs: list[dict[str, Any]]) -> JobRecord:
        """Bring a record up to date with Slurm; an ended job's outcome is written down for good."""
        if record.phase is not None:
            return record
        if record.job_id is None:
            found = self._submitted(record.name, record.spec_hash, jobs)
            if found is None:
                return record  # submission never confirmed: not observed, so apply creates it (idempotently)
            record.job_id = found
            self._save(record)
        job = self._job_of(record, jobs)
        if job is not None:
            verdict = sc.verdict(job)
            if not verdict.phase.finished:
                return record
            if verdict.phase is Phase.CANCELLED and sc.dependency_failed(job):
                record.extra["after_failed"] = True  # Slurm's kill_invalid_depend: it never ran
                verdict = sc.Verdict(Phase.FAILED, FailureClass.INFRASTRUCTURE, sc.DEPENDENCY_FAILED)
            elif verdict.phase is Phase.CANCELLED and not record.cancelled:
                verdict = sc.Verdict(Phase.FAILED, FailureClass.INFRASTRUCTURE,
                                     f"{verdict.message}: cancelled outside expctl")
            end = sc.end_time(job) or time.time()
        else:
            verdict, end = self._vanished(record)
        if verdict.failure is FailureClass.CODE and not (self.runs_dir / record.name / "task-0.log").exists():
            # no task ever started, whether Slurm still shows the job or only its batch script's exit record does:
            # srun could not launch (a node's slurmd died, the checkout was missing, the controller was down)
            verdict = sc.Verdict(Phase.FAILED, FailureClass.INFRASTRUCTURE, f"{verdict.message}: no task started")
        record.phase, record.failure = verdict.phase.value, verdict.failure.value if verdict.failure else None
        record.message, record.finished_at = verdict.message, end
        self._save(record)
        return record

    def _vanished(self, record: JobRecord) -> tuple[sc.Verdict, float]:
        """A job Slurm no longer shows: the batch script's own exit record says how it ended, if it got there."""
        exit_record = files.read_exit(self.runs_dir / record.name / sc.EXIT_FILE)
        if exit_record is not None:
            code = int(exit_record["returncode"])
            end = float(exit_record["finished_at"])
            if code == 0:
                return sc.Verdict(Phase.SUCCEEDED), end
            return sc.Verdict(Phase.FAILED, FailureClass.CODE, f"Slurm job FAILED (exit code {code})"), end
        why = f"Slurm job {record.job_id} vanished without a record of how it ended"
        return sc.Verdict(Phase.FAILED, FailureClass.INFRASTRUCTURE, why), time.time()

    def _observed(self, record: JobRecord, jobs: list[dict[str, Any]]) -> ObservedRun:
        after_failed = bool(record.extra.get("after_failed"))
        if record.phase is not None:
            phase, message = Phase(record.phase), record.message
        else:
            job = self._job_of(record, jobs) or {}
            verdict = sc.verdict(job) if job else sc.Verdict(Phase.PENDING, None, "submitted")
            phase, message = verdict.phase, verdict.message
            if job and sc.dependency_failed(job):  # pending for good (no kill_invalid_depend)
                after_failed, message = True, sc.DEPENDENCY_FAILED
        return ObservedRun(
            **observed_identity(record), phase=phase, backend=self.name,
            failure=FailureClass(record.failure) if record.failure else None, message=message,
            finished_at=record.finished_at, cancelled=record.cancelled, live=True, after_failed=after_failed,
        )

    # -- logs ------------------------------------------------------------------------------------------

    def _lines(self, record: JobRecord, tasks: dict[str, int], follow: bool) -> Iterator[str]:
        run_dir = self.runs_dir / record.name
        offsets = dict.fromkeys(tasks, 0)
        prefix = len(tasks) > 1
        while True:
            final = not follow or self._ended(record.name)
            progressed = False
            for replica, rank in tasks.items():
                path = run_dir / f"task-{rank}.log"
                offsets[replica], lines = files.read_new_lines(path, offsets[replica], final)
                for line in lines:
                    progressed = True
                    yield f"[{replica}] {line}" if prefix else line
            if final:
                return
            if not progressed:
                time.sleep(0.5)

    def _ended(self, name: str) -> bool:
        runs = {r.name: r for r in self.observe()}
        run = runs.get(name)
        return run is None or run.phase.finished

    # -- Slurm's CLIs and the records ------------------------------------------------------------------

    def _run(self, argv: list[str], extra_env: Mapping[str, str] | None = None) -> str:
        env = {**os.environ, **extra_env} if extra_env else None
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120, env=env)
        except FileNotFoundError as exc:
            raise BackendError(f"{argv[0]} not found: the Slurm client commands must be on PATH") from exc
        except subprocess.TimeoutExpired as exc:
            raise BackendUnavailable(f"{argv[0]} did not answer in 120s") from exc
        if proc.returncode != 0:
            output = proc.stderr or proc.stdout or str(proc.returncode)
            error = BackendUnavailable if sc.controller_unreachable(output) else BackendError
            raise error(f"{argv[0]} failed: {truncate(output)}")
        return proc.stdout

    def _squeue(self) -> list[dict[str, Any]]:
        """Every job Slurm shows, in one ``squeue --json`` call."""
        out = self._run(["squeue", "--json"])
        try:
            jobs: list[dict[str, Any]] = safe_json.loads(out).get("jobs", [])
        except (ValueError, AttributeError) as exc:
            raise BackendError(f"squeue --json printed something that is not JSON: {truncate(out)}") from exc
        return jobs

    def _scancel(self, job_ids: list[int]) -> None:
        if job_ids:
            self._run(["scancel", *(str(i) for i in sorted(job_ids))])

    @staticmethod
    def _managed(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [j for j in jobs if sc.parse_comment(str(j.get("comment") or "")) is not None]

    def _records(self) -> list[JobRecord]:
        found = (self._load(d.name) for d in sorted(self.runs_dir.iterdir()) if d.is_dir())
        return sorted((r for r in found if r is not None), key=lambda r: (r.created_at, r.name))

    def _load(self, name: str) -> JobRecord | None:
        """The run's record; None when it has none — or a damaged one (a warning): the next create finds the
        job in squeue by name (or submits it) and writes the record again."""
        path = self.runs_dir / name / "record.json"
        try:
            return record_from_json(safe_json.loads(bounded.read_text(path, bounded.MiB, "a Slurm run record")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, ExpctlError) as exc:  # JSON, UTF-8 and shape errors are ValueErrors
            files.warn_once(f"{path}: damaged Slurm run record ({truncate(str(exc), 120)}); skipping this run")
            return None

    def _save(self, record: JobRecord) -> None:
        files.write_json(self.runs_dir / record.name / "record.json", asdict(record))

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return state_lock(self._lock, self.workdir, "Slurm backend")


def _ended(job: dict[str, Any]) -> bool:
    return sc.verdict(job).phase.finished
