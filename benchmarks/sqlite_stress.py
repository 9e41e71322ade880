"""Stress the embedded MLflow store: plain sqlite reads beside MLflow's writes, in one process and across many.

    python benchmarks/sqlite_stress.py [--seconds 60] [--writers 3] [--readers 2] [--no-plain] [--fd-close]

One process opens an embedded store (``MlflowSession`` with ``embedded=True``: the pragmas of
``tracking/mlflow/sqlite.py``) with plain reads enabled (``sqlite_search.reads_only``), writes runs, metrics and
tags through MLflow's client in its main thread while ``--readers`` threads search it with ``SqliteSearch``
(whole searches, and ``run_pages`` generators dropped after their first page, so that a snapshot is closed by
the garbage collector, possibly in another thread). ``--writers`` other processes write runs, metrics and tags
through plain MLflow (as training jobs do: no pragmas of expctl's) to the same file, each for ``--job-seconds``
and then exits (its last connection's close checkpoints, and deletes the WAL when it is the store's last
user), followed by the next one, as the jobs of a sweep. At the end, with every
process gone, ``PRAGMA integrity_check`` of the file; exit 1 when it is not ``ok`` or any process saw
"malformed". ``--no-plain`` is the control (no plain reads in the writing process); ``--fd-close`` adds what
the old ``check_file`` did: open and close the file with Python in a thread now and then (the POSIX-lock
hazard). Bounded by ``--seconds``; the machine is shared, keep it short.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def child(uri: str, seconds: float, seed: int) -> int:
    """A job: plain MLflow writes (runs, metric batches, tags) until the time is up."""
    import mlflow
    from mlflow.entities import Metric, RunTag

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("stress")
    assert experiment is not None
    rnd = random.Random(seed)
    end = time.monotonic() + seconds
    step = 0
    while time.monotonic() < end:
        run = client.create_run(experiment.experiment_id, tags={"expctl.managed": "true", "w": str(seed)})
        for _ in range(rnd.randint(1, 5)):
            now = int(time.time() * 1000)
            client.log_batch(run.info.run_id, metrics=[Metric(f"m{i}", rnd.random(), now, step) for i in range(8)],
                             tags=[RunTag(f"t{step % 7}", "x" * rnd.randint(1, 300))])
            step += 1
        client.set_terminated(run.info.run_id, "FINISHED")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--writers", type=int, default=3)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--no-plain", action="store_true")
    parser.add_argument("--fd-close", action="store_true")
    parser.add_argument("--job-seconds", type=float, default=5.0)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--child", nargs=2, metavar=("URI", "SEED"))
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.seconds, int(args.child[1]))

    from expctl.tracking.mlflow import sqlite_search
    from expctl.tracking.mlflow.session import MlflowSession

    where = Path(args.dir or tempfile.mkdtemp(prefix="sqlite-stress-"))
    db = where / ".expctl" / "mlflow.db"
    uri = f"sqlite:///{db}"
    sqlite_search.reads_only(not args.no_plain)
    session = MlflowSession(uri, "local", artifact_root=where / "mlartifacts", embedded=True)
    assert (session.local is not None) != args.no_plain
    client = session.client
    experiment_id = client.create_experiment("stress", artifact_location=(where / "mlartifacts").as_uri())
    stop = threading.Event()
    errors: list[str] = []
    counts = {"reads": 0, "writes": 0, "closes": 0}

    def reader() -> None:
        search = sqlite_search.SqliteSearch(db)
        while not stop.is_set():
            try:
                if random.random() < 0.5:
                    search.search_runs([experiment_id], "tags.`expctl.managed` = 'true'", ["start_time DESC"], page=50)
                else:
                    pages = search.run_pages([experiment_id], "", [], page=20)
                    next(pages, None)  # dropped mid-iteration: closed by the garbage collector
                    del pages
                counts["reads"] += 1
            except Exception as exc:
                errors.append(f"reader: {exc!r}")
                if "malformed" in str(exc):
                    stop.set()

    def closer() -> None:  # the old check_file: Python opens and closes the database file
        while not stop.is_set():
            with db.open("rb") as fh:
                fh.read(16)
            counts["closes"] += 1
            time.sleep(0.01)

    def spawn(seed: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, __file__, "--seconds", str(args.job_seconds), "--child", uri,
                                 str(seed)], env={**os.environ, "PYTHONPATH": str(ROOT / "src")})

    children = [spawn(i) for i in range(args.writers)]
    codes: list[int] = []
    threads = [threading.Thread(target=reader, daemon=True) for _ in range(0 if args.no_plain else args.readers)]
    if args.fd_close:
        threads.append(threading.Thread(target=closer, daemon=True))
    for thread in threads:
        thread.start()
    end = time.monotonic() + args.seconds
    try:
        while time.monotonic() < end and not stop.is_set():
            run = client.create_run(experiment_id, tags={"expctl.managed": "true"})
            client.log_metric(run.info.run_id, "loss", random.random())
            client.set_tag(run.info.run_id, "expctl.state", "Running")
            client.set_terminated(run.info.run_id, "FINISHED")
            if session.local is not None:
                session.search([experiment_id], "tags.`expctl.managed` = 'true'")
            counts["writes"] += 1
            for i, proc in enumerate(children):  # a job that ended is followed by the next one, as in a sweep
                if proc.poll() is not None:
                    codes.append(proc.returncode)
                    children[i] = spawn(len(codes) + args.writers)
    except Exception as exc:
        errors.append(f"writer: {exc!r}")
    stop.set()
    codes += [c.wait() for c in children]
    for thread in threads:
        thread.join(timeout=30)
    del client, session
    import gc

    gc.collect()
    runs: object = "?"
    try:
        with sqlite3.connect(db) as conn:
            check = [str(row[0]) for row in conn.execute("PRAGMA integrity_check").fetchall()]
            runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        check = [f"integrity_check failed: {exc}"]
    failed = sum(1 for code in codes if code)
    print(f"{where}: {counts}, runs {runs}, jobs {len(codes)} (failed {failed}), errors {len(errors)}: {errors[:5]}")
    print("integrity_check:", check[:10])
    return 0 if check == ["ok"] and not any("malformed" in e for e in errors) and not any(codes) else 1


if __name__ == "__main__":
    sys.exit(main())
