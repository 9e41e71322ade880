"""What the Slurm backend hands to ``sbatch``, and how it reads ``squeue --json`` back (pure: text and data).

``sbatch_args`` turns a ``Launch`` into options: ``--job-name`` (the run's object name), ``--comment`` (the
identity expctl recognises its jobs by), ``--nodes`` = replicas with one task per node, ``--gres=gpu:N`` per
node, ``--cpus-per-task``, ``--mem``, ``--time`` from the timeout, partition / account / qos, ``--output``.
``batch_script`` is the job: it records its start, exports ``expctl.jobenv.job_env``, derives the topology
(``MASTER_ADDR`` from the first node of ``SLURM_JOB_NODELIST``, ``RANK`` = ``SLURM_PROCID``, ...) and runs the
command with ``srun``, one task per node, each writing its own log. ``verdict`` maps a job's Slurm state to
expctl's phase and failure class. ``render_jobs`` shows both for ``expctl render --backend slurm``;
``workdir_of`` reads ``slurm.workdir`` from the settings; ``controller_unreachable`` tells a controller that cannot
be reached from a refused command.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expctl.backends.slurm.settings import slurm_settings
from expctl.core import jobenv
from expctl.core.errors import ConfigError
from expctl.core.model import FailureClass, JobKind, Launch, Phase, RunSpec, TrackingRef

COMMENT_PREFIX = "expctl:"
STARTED_FILE = "started"  # the job id, written by the batch script when it starts
EXIT_FILE = "exit.json"  # {"returncode": int, "finished_at": int}, written by the batch script at its end
BATCH_LOG = "batch.log"
OUTPUTS = "outputs"  # the run directory's folder a producer's job writes ``outputs:`` into (EXPCTL_OUTPUT_DIR)

PENDING_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "CONFIGURING"}
RUNNING_STATES = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"}
# suspended by the scheduler (preemption with PreemptMode=SUSPEND, ``scontrol suspend``) or stopped: waiting, not
# failed — like a Kueue-suspended job, it never counts as an attempt
SUSPENDED_STATES = {"SUSPENDED", "STOPPED"}
CODE_FAILURES = {"FAILED", "TIMEOUT", "OUT_OF_MEMORY"}
INFRASTRUCTURE_FAILURES = {"NODE_FAIL", "BOOT_FAIL", "PREEMPTED", "DEADLINE", "REVOKED"}


# what Slurm's commands print when slurmctld cannot be reached (connection refused, timeouts, a controller
# restarting): every later command would fail the same way
_UNREACHABLE = ("unable to contact slurm controller", "socket timed out on send/recv", "connection refused",
                "slurm_load_jobs error: unexpected message", "zero bytes were transmitted or received")


def controller_unreachable(output: str) -> bool:
    """Whether a failed Slurm command's output says the controller cannot be reached."""
    text = output.lower()
    return any(marker in text for marker in _UNREACHABLE)


@dataclass(frozen=True)
class Placement:
    """Where a job goes and who pays: the experiment's values, else its tenant's, else ``slurm:`` defaults."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None


def comment(launch: Launch) -> str:
    """The identity on the job (``--comment``): run key, spec hash, attempt."""
    spec = launch.spec
    return f"{COMMENT_PREFIX}run_key={spec.run_key},spec_hash={spec.spec_hash},attempt={launch.attempt}"


def parse_comment(text: str) -> dict[str, str] | None:
    """The identity in a job's comment, or None when expctl did not submit the job."""
    if not text.startswith(COMMENT_PREFIX):
        return None
    pairs = (part.partition("=") for part in text[len(COMMENT_PREFIX):].split(","))
    found = {k: v for k, sep, v in pairs if sep}
    return found if {"run_key", "spec_hash", "attempt"} <= set(found) else None


def memory_mb(memory: str) -> int:
    """Kubernetes-style quantities (``2Gi``, ``512Mi``, ``1G``, ``100M``, bytes) in mebibytes for ``--mem``."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGTP]i?)?\s*", memory)
    if not match:
        raise ValueError(f"cannot read memory quantity {memory!r}")
    value, unit = float(match.group(1)), match.group(2) or ""
    factor = {"": 1 / 2**20, "K": 1e3 / 2**20, "Ki": 1 / 2**10, "M": 1e6 / 2**20, "Mi": 1, "G": 1e9 / 2**20,
              "Gi": 2**10, "T": 1e12 / 2**20, "Ti": 2**20, "P": 1e15 / 2**20, "Pi": 2**30}[unit]
    return max(1, math.ceil(value * factor))


def cpus(cpu: str) -> int:
    """Kubernetes-style CPU (``"4"``, ``"500m"``, ``"1.5"``) as whole CPUs for ``--cpus-per-task``."""
    text = cpu.strip()
    value = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    return max(1, math.ceil(value))


def sbatch_args(launch: Launch, run_dir: str, placement: Placement) -> list[str]:
    """``sbatch`` options for one attempt (the script itself comes on stdin or as a file)."""
    job = launch.spec.job
    args = [
        "--parsable",
        f"--job-name={launch.name}",
        f"--comment={comment(launch)}",
        f"--nodes={job.replicas}",
        "--ntasks-per-node=1",
        "--no-requeue",  # one attempt = one job: retries are expctl's, counted by its policy
        f"--output={run_dir}/{BATCH_LOG}",
        f"--chdir={run_dir}",
    ]
    res = job.resources
    if res.gpus > 0:
        args.append(f"--gres=gpu:{res.gpus}")
    if res.cpu:
        args.append(f"--cpus-per-task={cpus(res.cpu)}")
    if res.memory:
        args.append(f"--mem={memory_mb(res.memory)}M")
    if job.timeout_seconds:
        args.append(f"--time={max(1, math.ceil(job.timeout_seconds / 60))}")
    for option, value in (("partition", placement.partition), ("account", placement.account),
                          ("qos", placement.qos)):
        if value:
            args.append(f"--{option}={value}")
    return args


def _exports(env: Mapping[str, str]) -> str:
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items() if re.fullmatch(r"[A-Za-z_]\w*", k))


def batch_script(launch: Launch, run_dir: str, checkout: str, command: Sequence[str]) -> str:
    """The batch job: one ``srun`` task per node running ``command`` in ``checkout`` with the job environment.

    Every task gets ``expctl.jobenv``'s variables; the topology comes from Slurm at run time: ``MASTER_ADDR``
    is the address (``NodeAddr``) of the first node of ``SLURM_JOB_NODELIST``, ``MASTER_PORT`` a port derived
    from the job id, ``RANK`` = ``SLURM_PROCID``, ``WORLD_SIZE`` = ``SLURM_NTASKS``, ``LOCAL_RANK`` =
    ``SLURM_LOCALID``. Slurm itself sets ``CUDA_VISIBLE_DEVICES`` for the GPUs it allocated. A producer
    (``outputs:``) gets ``EXPCTL_OUTPUT_DIR``: ``<run_dir>/outputs``, on the shared workdir.
    """
    env = jobenv.job_env(launch, config_file=f"{run_dir}/config.json",
                         extra=jobenv.output_env(launch.spec, f"{run_dir}/{OUTPUTS}"))
    names = " ".join(jobenv.replica_names(launch.spec.job.kind, launch.spec.job.replicas))
    task = (
        f"names=({names}); "
        f"export {jobenv.RANK}=$SLURM_PROCID {jobenv.WORLD_SIZE}=$SLURM_NTASKS {jobenv.LOCAL_RANK}=$SLURM_LOCALID "
        f"{jobenv.REPLICA}=${{names[$SLURM_PROCID]}}; "
        'exec "$@"'
    )
    run = shlex.quote(run_dir)
    return f"""#!/bin/bash
# expctl job {launch.name}: attempt {launch.attempt} of {launch.spec.experiment} at {launch.spec.commit}
set -u
echo "$SLURM_JOB_ID" > {run}/{STARTED_FILE}.tmp && mv {run}/{STARTED_FILE}.tmp {run}/{STARTED_FILE}
cd {shlex.quote(checkout)} || exit 1
{_exports(env)}
first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
addr=$(scontrol show node "$first" | sed -n 's/.*NodeAddr=\\([^ ]*\\).*/\\1/p' | head -n 1)
export {jobenv.MASTER_ADDR}="${{addr:-$first}}"
export {jobenv.MASTER_PORT}=$((20000 + SLURM_JOB_ID % 20000))
srun --kill-on-bad-exit=1 --output={run}/task-%t.log bash -c {shlex.quote(task)} expctl-task \\
  {" ".join(shlex.quote(part) for part in command)}
code=$?
printf '{{"returncode": %d, "finished_at": %d}}\\n' "$code" "$(date +%s)" > {run}/{EXIT_FILE}.tmp
mv {run}/{EXIT_FILE}.tmp {run}/{EXIT_FILE}
exit $code
"""


def workdir_of(settings: Any) -> Path:
    """``slurm.workdir`` of ``expctl.yaml``: required, absolute (the shared directory of checkouts and records)."""
    workdir = slurm_settings(settings).workdir
    if not workdir:
        raise ConfigError("required for the slurm backend: a directory every Slurm node mounts",
                          file="expctl.yaml", key="slurm.workdir")
    path = Path(workdir).expanduser()
    if not path.is_absolute():
        raise ConfigError(f"must be an absolute path (got {workdir!r})", file="expctl.yaml", key="slurm.workdir")
    return path


def render_jobs(runs: Iterable[RunSpec], settings: Any, repo: Path | None = None) -> str:
    """``expctl render --backend slurm``: the ``sbatch`` command and batch script of each run's first attempt."""
    workdir = workdir_of(settings)
    out: list[str] = []
    for run in runs:
        if run.job.kind not in (JobKind.PYTORCH, JobKind.LOCAL):
            continue
        ref = TrackingRef(settings.tracking_uri or "", "<assigned-at-apply>", run.experiment)
        launch = Launch(spec=run, attempt=1, name=run.name, tracking=ref)
        run_dir = workdir / "runs" / run.name
        sched = run.job.scheduling
        args = sbatch_args(launch, str(run_dir), Placement(sched.partition, sched.account, sched.qos))
        script = batch_script(launch, str(run_dir), str(workdir / "checkouts" / run.commit), run.job.command)
        out.append(f"# sbatch {' '.join(shlex.quote(a) for a in args)} {run_dir}/job.sh\n{script}")
    return "---\n".join(out)


@dataclass(frozen=True)
class Verdict:
    phase: Phase
    failure: FailureClass | None = None
    message: str = ""


def _number(value: Any) -> int:
    """A number as squeue prints it: plain (data v0.0.38, Slurm 22.05) or ``{"set", "number"}`` (later)."""
    if isinstance(value, Mapping):
        return int(value.get("number") or 0) if value.get("set", True) else 0
    return int(value or 0)


def state_of(job: Mapping[str, Any]) -> str:
    """The job's state: a string (Slurm 22.05) or a list of state and flags (later versions)."""
    state = job.get("job_state")
    if isinstance(state, list):
        return str(state[0]) if state else ""
    return str(state or "")


def end_time(job: Mapping[str, Any]) -> float:
    return float(_number(job.get("end_time")))


def wait_status(job: Mapping[str, Any]) -> int:
    """The batch script's wait status (``exit_code``; later versions give return code and signal apart)."""
    code = job.get("exit_code")
    if isinstance(code, Mapping):
        return (_number(code.get("return_code")) << 8) | (_number((code.get("signal") or {}).get("id")) & 0x7F)
    return int(code or 0)


DEPENDENCY_FAILED = "never started: the upstream job it waited on did not succeed (DependencyNeverSatisfied)"


def dependency_failed(job: Mapping[str, Any]) -> bool:
    """Whether Slurm will never start the job (or cancelled it) because an ``afterok`` upstream did not succeed."""
    return str(job.get("state_reason") or "") == "DependencyNeverSatisfied"


def verdict(job: Mapping[str, Any]) -> Verdict:
    """expctl's view of one ``squeue --json`` job: PENDING (with Slurm's reason), RUNNING, or how it ended.

    FAILED, TIMEOUT and OUT_OF_MEMORY are the code's failures; NODE_FAIL, BOOT_FAIL, PREEMPTED are the
    platform's. CANCELLED is decided by the caller (expctl's own cancel, or someone else's scancel).
    """
    state = state_of(job)
    reason = str(job.get("state_reason") or "None")
    if state in PENDING_STATES:
        return Verdict(Phase.PENDING, None, f"Pending: {reason}" if reason != "None" else "Pending")
    if state in SUSPENDED_STATES:
        return Verdict(Phase.PENDING, None, f"suspended by Slurm ({state}, reason {reason})")
    if state in RUNNING_STATES:
        return Verdict(Phase.RUNNING, None, "" if state == "RUNNING" else state.lower())
    if state == "COMPLETED":
        return Verdict(Phase.SUCCEEDED)
    code = wait_status(job)
    status = f"exit code {code >> 8}" if code & 0xFF == 0 else f"signal {code & 0x7F}"
    if state in CODE_FAILURES:
        return Verdict(Phase.FAILED, FailureClass.CODE, f"Slurm job {state} ({status}, reason {reason})")
    if state in INFRASTRUCTURE_FAILURES:
        return Verdict(Phase.FAILED, FailureClass.INFRASTRUCTURE, f"Slurm job {state} (reason {reason})")
    if state == "CANCELLED":
        return Verdict(Phase.CANCELLED, None, f"Slurm job CANCELLED (reason {reason})")
    return Verdict(Phase.FAILED, FailureClass.INFRASTRUCTURE, f"Slurm job in unexpected state {state}")
