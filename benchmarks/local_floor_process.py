"""One process of the local backend's floors (run by ``apply_local.py``): what an apply on the embedded store
must do, and nothing else.

    python benchmarks/local_floor_process.py DB [--compose REPO] [--runs N --threads T]

Opens MLflow's store on the sqlite file DB (a copy of a repository's ``.expctl/mlflow.db``) as ``MlflowSession``
does for the embedded store: the file check and the pragmas of ``tracking/mlflow/sqlite.py`` (a write-ahead log,
``synchronous=NORMAL``), the store's file lock, ``MlflowClient`` with the same tracking and registry URI, then
``check``'s ``search_experiments(max_results=1)``. ``--compose REPO``: then composes REPO's desired state at HEAD
as ``expctl apply`` does (``engine.plan.desired_state``: the settings, Hydra's compose, the run specs).
``--runs N``: then the tracker's per-run floor — N times what ``tracking/mlflow/runs.ensure_run`` sends for a new
run (``create_run`` with the tags and run name of a run the apply created, a fresh ``expctl.create_id`` and run
key each; one ``log_batch`` of its params that also tags ``expctl.ready``), into the same experiment, from T
threads, each call serialised as the session serialises writes to an embedded store — timed in-process after
the import and the open. Prints the in-process seconds of each step (and the per-run floor's CPU seconds) as
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()


def open_store(db: Path) -> Any:
    """``MlflowSession._connect`` + ``check`` for an embedded store (``session.py``)."""
    from filelock import FileLock
    from mlflow import MlflowClient

    from expctl.tracking.mlflow import sqlite as mlflow_sqlite

    uri = f"sqlite:///{db}"
    mlflow_sqlite.check_file(db)
    mlflow_sqlite.tune(db)
    with FileLock(str(db) + ".lock", timeout=120), mlflow_sqlite.signals_deferred():
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.search_experiments(max_results=1)
    return client


def compose(repo: Path) -> int:
    from expctl.engine.plan import PlanOptions, desired_state

    return len(desired_state(repo, PlanOptions()).runs)


def tracker_floor(client: Any, runs: int, threads: int) -> tuple[float, float]:
    """(wall, CPU) seconds of ``runs`` new runs' two MLflow calls (see the module)."""
    from mlflow.entities import Param, RunTag

    (experiment,) = [e for e in client.search_experiments(max_results=1000) if e.name == "big"]
    (applied,) = client.search_runs([experiment.experiment_id], "tags.`expctl.run_key` != ''", max_results=1)
    tags = {k: v for k, v in applied.data.tags.items() if k != "expctl.ready"}
    params = [Param(k, v) for k, v in applied.data.params.items()]
    serial = threading.RLock()  # MlflowSession._serial: one writer at a time on a sqlite store

    def one(i: int) -> None:
        with serial:
            run = client.create_run(experiment.experiment_id, start_time=int(time.time() * 1000),
                                    tags={**tags, "expctl.run_key": f"floor-{i}",
                                          "expctl.create_id": secrets.token_hex(16)},
                                    run_name=tags.get("mlflow.runName"))
        with serial:
            client.log_batch(run.info.run_id, params=params, tags=[RunTag("expctl.ready", "true")])

    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(runs)))
    return time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", type=Path)
    parser.add_argument("--compose", type=Path)
    parser.add_argument("--runs", type=int, default=0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    steps: dict[str, float] = {}
    mark = STARTED
    client = open_store(args.db.resolve())
    steps["open"], mark = time.perf_counter() - mark, time.perf_counter()
    if args.compose is not None:
        steps["runs_composed"] = compose(args.compose)
        steps["compose"], mark = time.perf_counter() - mark, time.perf_counter()
    if args.runs:
        steps["tracker"], steps["tracker_cpu"] = tracker_floor(client, args.runs, args.threads)
    print(json.dumps(steps))
    sys.stdout.flush()
    os._exit(0)  # the work is measured, not the interpreter's teardown of MLflow's modules


if __name__ == "__main__":
    main()
