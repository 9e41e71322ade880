"""The daily commands as whole processes, at 3 and at 1,000 finished runs, next to baselines of the same run.

    python benchmarks/cli_reads.py [--runs 3,1000] [--repeat 5]

For each size: a real git repository with one sweep of N trivial runs (``command: [python, -c, pass]``) on the
embedded default (local backend, MLflow store ``.expctl/mlflow.db``), applied with ``expctl apply -y --wait``
and applied once more (the finished runs synced into MLflow and settled into the ledger), exactly as a user
gets there. Then each read command (``status``, ``describe RUN``, ``history``, ``logs RUN``, ``lineage``), the no-op
``plan`` and ``--help`` are timed as whole processes (``python -m expctl``, the median of ``--repeat``), with
the baselines measured in the same run: ``python -c pass`` (the interpreter's start), ``git log`` of the same
repository, and ``squeue`` / ``kubectl get pods`` when they are installed and answer. Ratios are to the
interpreter's start and to the targets of issue 24 (reads 0.5 s, no-op plan 1.5 s, ``--help`` 0.3 s).
``lineage`` reads a version registered (with MLflow's client) from one of the runs. ``describe RUN`` reads the
specs the plan kept (``config.spec_cache``); ``describe RUN, composing`` is the same command with that cache
deleted before each process: the first describe after a commit that no plan has read yet.

``--compare REV`` times the same commands, interleaved, with expctl's sources of another commit (``git archive``
into a temporary directory) on the same repositories: before/after figures of one run, under one load. Every
command's median CPU time (user + system) is printed next to its wall time (less inflated by other load),
and so are floors: the imports every read command needs before its own work. Every process may write its
bytecode (``PYTHONDONTWRITEBYTECODE`` is dropped): an installed expctl has it, and
without it each command compiled its ~70 modules again (a third of ``status`` at 3 runs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.gitrepo import GitRepo  # noqa: E402

SWEEP = ("defaults:\n  - config\n  - _self_\nhydra:\n  sweeper:\n    params:\n      seed: range(0,{n})\n"
         "expctl:\n  command: [python, -c, pass]\n")
TARGETS = {"plan": 1.5, "--help": 0.3}
FLOORS = {  # imports and work every read command (or plan) needs before its own, measured alone
    "import click": "import click",
    "+ settings schema (pydantic)": "import click, expctl.config.schema",
    "+ Hydra compose (plan)": "import click, expctl.config.schema, hydra.compose",
}
READ_TARGET = 0.5


DROPPED = ("MLFLOW_TRACKING_URI", "EXPCTL_BACKEND", "CI", "PYTHONDONTWRITEBYTECODE")


def env(src: Path = ROOT / "src") -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in DROPPED}
    out["PYTHONPATH"] = str(src)
    return out


def expctl(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "expctl", *args], cwd=repo, capture_output=True, text=True,
                          env=env(), check=False)
    if proc.returncode != 0:
        raise SystemExit(f"expctl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                         f"{proc.stderr[-2000:]}")
    return proc


CPU: dict[tuple[str, ...], float] = {}  # the median CPU seconds (user + system) of each command last timed


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], cwd: Path, repeat: int, src: Path = ROOT / "src",
          before_each: Callable[[], None] | None = None) -> float:
    """The median wall time of ``command`` as a whole process (output discarded; a failure stops the run);
    its median CPU time goes to ``CPU`` (what the process itself computed: less inflated by other load)."""
    times, cpu = [], []
    for _ in range(repeat):
        if before_each is not None:
            before_each()
        started, used = time.perf_counter(), _children_cpu()
        proc = subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env(src),
                              check=False)
        times.append(time.perf_counter() - started)
        cpu.append(_children_cpu() - used)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}): {proc.stderr[-1000:]!r}")
    CPU[tuple(command)] = statistics.median(cpu)
    return statistics.median(times)


def make_repo(path: Path, runs: int) -> tuple[Path, str]:
    """A repository whose N-run sweep finished and was synced; (its path, one run's name)."""
    repo = GitRepo(path)
    repo.write("conf/config.yaml", "seed: 0\noptimizer:\n  lr: 0.1\n")
    repo.write("code/train.py", "print('train')\n")
    repo.write("expctl.yaml", f"backend: local\ncode_paths: [code]\nlocal:\n  parallelism: {min(runs, 16)}\n")
    repo.write("experiments/sweep.yaml", SWEEP.format(n=runs))
    repo.write(".gitignore", ".expctl/\n")
    repo.commit("a sweep")
    started = time.perf_counter()
    expctl(repo.path, "apply", "-y", "--wait", "--timeout", "3600")
    expctl(repo.path, "apply", "-y")  # the finished runs synced (and settled into the ledger)
    print(f"  (set-up: {runs} runs applied and finished in {time.perf_counter() - started:.0f} s)")
    status = json.loads(expctl(repo.path, "status", "--output", "json").stdout)
    assert len(status) == runs and all(r["state"] == "Succeeded" for r in status), status[:3]
    assert "No changes." in expctl(repo.path, "plan").stdout
    register(repo.path)
    return repo.path, str(status[0]["run"])


def register(repo: Path) -> None:
    """``bench-model@champion``: a registered version of one of the runs, for ``lineage``."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{repo / '.expctl' / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("sweep")
    (run,) = client.search_runs([experiment.experiment_id], max_results=1)
    client.create_registered_model("bench-model")
    version = client.create_model_version("bench-model", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("bench-model", "champion", version.version)


def baselines(repo: Path, repeat: int) -> dict[str, float]:
    found = {"python -c pass": timed([sys.executable, "-c", "pass"], repo, repeat),
             "git log": timed(["git", "log", "--oneline"], repo, repeat)}
    for name, command in (("squeue", ["squeue"]), ("kubectl get pods", ["kubectl", "get", "pods"])):
        if shutil.which(command[0]) is None:
            continue
        try:
            found[name] = timed(command, repo, repeat)
        except SystemExit:  # installed but no cluster to answer
            continue
    return found


def sources_of(rev: str, tmp: Path) -> Path:
    """expctl's ``src`` at ``rev``, extracted (not checked out) under ``tmp``."""
    target = tmp / f"src-{rev}"
    target.mkdir()
    archive = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src"


def measure(runs: int, tmp: Path, repeat: int, before: Path | None) -> None:
    repo, run = make_repo(tmp / f"repo-{runs}", runs)
    base = baselines(repo, repeat)
    commands = {"status": ["status"], "describe RUN": ["describe", run],
                "describe RUN, composing": ["describe", run, "--output", "human"], "history": ["history"],
                "logs RUN": ["logs", run], "lineage MODEL@ALIAS": ["lineage", "bench-model@champion"],
                "plan (no changes)": ["plan"], "--help": ["--help"]}
    print(f"{runs} finished runs, embedded MLflow store, median of {repeat} whole processes "
          f"(load average {os.getloadavg()[0]:.1f}):")
    start = base["python -c pass"]
    for name, args in commands.items():
        command = [sys.executable, "-m", "expctl", *args]
        # "composing": the first describe after a commit, before any plan kept the specs (config.spec_cache)
        fresh = (lambda: shutil.rmtree(repo / ".expctl" / "cache", ignore_errors=True)) if "composing" in name else None
        if before is not None:  # interleaved with this tree's: the same load for both
            old = timed(command, repo, repeat, before, fresh)
            old_cpu = CPU[tuple(command)]
        seconds = timed(command, repo, repeat, before_each=fresh)
        target = TARGETS.get(args[0], READ_TARGET)
        was = f"   before: {old:6.2f} s, cpu {old_cpu:5.2f} s" if before is not None else ""
        print(f"  expctl {name:<24} {seconds:6.2f} s  cpu {CPU[tuple(command)]:5.2f} s  {seconds / start:5.1f}x "
              f"python start  target {target:.1f} s: {'met' if seconds <= target else 'MISSED'}{was}")
    for name, seconds in base.items():
        print(f"  baseline {name:<16} {seconds:6.3f} s")
    for name, code in FLOORS.items():  # what every command of that kind imports or does before its own work
        seconds = timed([sys.executable, "-c", code], repo, repeat)
        print(f"  floor {name:<28} {seconds:6.3f} s  cpu {CPU[(sys.executable, '-c', code)]:5.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="3,1000", help="comma-separated sizes (default 3,1000)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--compare", metavar="REV", default=None,
                        help="also time expctl's sources at REV (a commit of this repository), interleaved")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        before = sources_of(args.compare, Path(tmp)) if args.compare else None
        if before is not None:
            print(f"before: expctl's sources at {args.compare}")
        for runs in (int(n) for n in args.runs.split(",")):
            measure(runs, Path(tmp), max(args.repeat, 1), before)


if __name__ == "__main__":
    main()
