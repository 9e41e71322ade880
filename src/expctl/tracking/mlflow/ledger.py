"""Settled runs leave the search: the ledger that remembers them, read with every view, written by applies.

Every plan reads what MLflow knows of every run expctl launched. Read as one search, that grows with every run
ever launched (the server loads each run's tags, params and metrics: seconds per thousand runs). A run nothing
will change any more is *settled* instead: an apply copies it into the ledger (``ledger_codec``: one MLflow
run per backend, ``expctl-ledger-<backend>`` in the experiment ``expctl-audit``, named by that experiment's tag
``expctl.ledger.<backend>``) and only then flips the run's ``expctl.managed`` tag from ``true`` to
``settled``, which takes it out of the search. A view is the search of the runs still open, the ledger run
among them.

* **Settled** (``settleable``): the run is finished in MLflow; its job, if the backend still has it, is
  finished and its logs are kept; a succeeded run that a gate judges has its verdict; its params are logged;
  and this apply wrote nothing to it (it settles at the next apply). A sweep's parent run settles with (or
  after) the last of its points; audit records and runs of older expctl versions never settle. An apply
  settles its own repository's runs only (``candidates``).
* **Reopened on write**: expctl's next write to a settled run (a retry's new attempt changes its sweep's parent,
  a cancel tags a finished run …) carries ``expctl.managed=true`` (``MlflowSession.reopening``), in the same
  request or just before, so the search, not the ledger's older copy, shows it again; it settles again later.
* **Cost**: the ledger run is itself one of the open runs, so the view's one search reads it; only when that
  search took several pages is it read again (one request) after them. (MLflow's page tokens are offsets: a
  search paging through more than 1,000 open runs while another apply flips runs it already read may skip an
  open run — applies of other projects or namespaces hold other locks — so when an open run of a paged search
  is in the ledger too (it may have been flipped meanwhile), the view searches once more.)
* **Crash-safe**: the ledger batch is complete (its header written last) before any run is flipped, and the
  ledger still the one read (not ``replaced`` by another apply's rebuild); a run found both open and in the
  ledger is read from the search; flips are idempotent.
* **Damage is never silent**: a ledger that is missing (its experiment tag says there is one) or has a batch
  that does not decode makes the view read every settled run with a second full search (correct, slow, with a
  warning), and the next apply rebuilds the ledger from that search.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from expctl.core.errors import TrackingError
from expctl.core.model import ObservedRun, RunSpec
from expctl.core.project import TAG as PROJECT
from expctl.crash import crash_point
from expctl.tracking.base import TrackerUnavailable
from expctl.tracking.mlflow import ledger_codec as codec
from expctl.tracking.mlflow import tags as g
from expctl.tracking.mlflow.session import MlflowSession

log = logging.getLogger(__name__)


def experiment_tag(backend: str) -> str:
    """The audit experiment's tag naming a backend's ledger run (absent: nothing of it settled yet)."""
    return f"{codec.PREFIX}.{backend}"


@dataclass
class Ledger:
    """What the last view read of the ledger."""

    ledger_ids: list[str] = field(default_factory=list)
    next_seq: int = 0
    runs: list[Any] = field(default_factory=list)  # settled runs not also in the search of open runs
    damaged: str = ""  # why the ledger could not be trusted (then ``runs`` came from a search)
    reread: bool = False  # the search took several pages and an open run of them is in the ledger too


def read(session: MlflowSession, searched: Sequence[Any], experiment_ids: Sequence[str], paged: bool) -> Ledger:
    """The settled runs of ``session``'s backend. The ledger run is one of the open runs ``searched`` (no extra
    request); when that search took several requests it is read again after them (a run settled between two
    pages is in this later copy), and a damaged or missing ledger costs a search of every settled run."""
    backend = session.backend_name
    audit_id = session.experiments.get(g.AUDIT_EXPERIMENT)
    named = session.experiment_tags.get(g.AUDIT_EXPERIMENT, {}).get(experiment_tag(backend))
    found = [run for run in searched if run.data.tags.get(codec.MARK) == "true"]
    if not named and not found:
        return Ledger()  # nothing of this backend was ever settled
    if (paged or not found) and audit_id is not None:
        found = session.search_runs([audit_id], f"tags.`{codec.MARK}` = 'true' and tags.`expctl.backend` = "
                                                f"{g.quoted(backend)}")
    decoded = codec.decode(run.data.tags for run in found)
    # the run the experiment names must be among them: another (an unnamed leftover) does not stand in for it
    missing = named is not None and named not in {run.info.run_id for run in found}
    damaged = decoded.damaged or ("its run is missing" if missing or not found else "")
    runs = decoded.runs
    if damaged:
        log.warning("the ledger of settled %s runs in MLflow is damaged (%s): reading every settled run instead "
                    "(slower); the next apply rebuilds it", backend, damaged)
        runs = session.search_runs(list(experiment_ids), f"tags.`expctl.managed` = '{codec.SETTLED}' and "
                                                         f"tags.`expctl.backend` = {g.quoted(backend)}")
    open_ids = {run.info.run_id for run in searched if codec.MARK not in run.data.tags}
    # an open run of the pages in the ledger may have been flipped while the search paged on, which moved the
    # later pages' offsets: the view searches again (``MlflowStore.view``)
    reread = paged and any(run.info.run_id in open_ids for run in runs)
    return Ledger([run.info.run_id for run in found], decoded.next_seq,
                  [run for run in runs if run.info.run_id not in open_ids], damaged, reread)


def settleable(run: Any, live: ObservedRun | None, gated: bool, touched: bool) -> bool:
    """Whether nothing will write to ``run`` any more (see the module's docstring). ``gated``: a gate of
    the run's experiment judges it from its own metrics (a validation job's run always is)."""
    tags = run.data.tags
    if touched or tags.get("expctl.managed") != "true" or not tags.get("expctl.run_key"):
        return False
    if tags.get("expctl.parent") == "true" or g.AUDIT_STATE in tags or tags.get("expctl.ready") != "true":
        return False
    status = run.info.status
    if status not in g.TERMINAL_STATUSES:
        return False
    if live is not None and not (live.phase.finished and g.LOGS in tags):
        return False
    return not (status == "FINISHED" and (gated or tags.get("expctl.validates")) and "expctl.gate" not in tags)


def parent_settleable(run: Any, touched: bool, points: Sequence[str], settled: set[str]) -> bool:
    """Whether a sweep's parent run settles: finished, not written by this apply, and each of its ``points``
    (child run ids) already settled or settling now — the parent's summary follows the points."""
    tags = run.data.tags
    return (tags.get("expctl.parent") == "true" and tags.get("expctl.managed") == "true" and not touched
            and codec.MARK not in tags and run.info.status in g.TERMINAL_STATUSES
            and all(point in settled for point in points))


def candidates(runs: Sequence[Any], live: Sequence[ObservedRun], desired: Sequence[RunSpec],
               touched: set[str], from_ledger: set[str],
               owns: Callable[[Mapping[str, str]], bool] | None = None) -> list[Any]:
    """The open runs of a view that settle now: runs, then the sweep parents all of whose points settled.
    Only runs of the project when ``owns`` is given (``core.project``; a run of an older expctl that names no
    repository as its source is nobody's to settle): another project's runs are its own applies' to settle —
    only they see its jobs and know its gates."""
    if owns is not None:
        runs = [run for run in runs if owns(run.data.tags) and (
            PROJECT in run.data.tags or "#" in run.data.tags.get("mlflow.source.name", ""))]
    by_run = {o.mlflow_run_id: o for o in live if o.live and o.mlflow_run_id}
    # a gate judges the experiment's succeeded runs: from their own metrics, or (by the platform) from the
    # validation job's, whose verdict is written on the training run too (it waits open for it)
    gated = {s.experiment for s in desired if s.job.validation is not None}
    chosen = [run for run in runs if run.info.run_id not in from_ledger and settleable(
        run, by_run.get(run.info.run_id), run.data.tags.get("expctl.experiment") in gated,
        run.info.run_id in touched)]
    points: dict[str, list[str]] = {}
    for run in runs:
        if parent := run.data.tags.get("mlflow.parentRunId"):
            points.setdefault(parent, []).append(run.info.run_id)
    settled = from_ledger | {run.info.run_id for run in chosen}
    return chosen + [run for run in runs if run.info.run_id not in from_ledger and parent_settleable(
        run, run.info.run_id in touched, points.get(run.info.run_id, []), settled)]


def _create(session: MlflowSession) -> str:
    """A new ledger run for the session's backend, named by the audit experiment's tag."""
    backend = session.backend_name
    audit_id = session.experiment_id(g.AUDIT_EXPERIMENT, managed=False)
    # managed: the view's one search of open runs reads it too
    tags = {codec.MARK: "true", "expctl.managed": "true", "expctl.backend": backend,
            "mlflow.runName": f"expctl-ledger-{backend}",
            "mlflow.note.content": "expctl's ledger of settled runs (expctl reads and writes it: do not edit or "
                                   "delete it)"}
    what = "create the ledger of settled runs"
    run_id = str(session.create_run(audit_id, tags, what, run_name=tags["mlflow.runName"]).info.run_id)
    with session.calling(what):
        session.client.set_terminated(run_id, status="FINISHED")
    session.set_experiment_tag(g.AUDIT_EXPERIMENT, experiment_tag(backend), run_id, what)
    return run_id


def _named_first(session: MlflowSession, ledger_ids: Sequence[str]) -> str:
    """The ledger run to append to: the one the audit experiment names; when it names none of them (a crash
    between creating a ledger and naming it), the first, named now — a ledger no tag names could be deleted
    without anyone noticing."""
    key = experiment_tag(session.backend_name)
    named = session.experiment_tags.get(g.AUDIT_EXPERIMENT, {}).get(key)
    if named in ledger_ids:
        return str(named)
    target = ledger_ids[0]
    session.set_experiment_tag(g.AUDIT_EXPERIMENT, key, target, "name the ledger of settled runs")
    return target


def settle(session: MlflowSession, ledger: Ledger, runs: Sequence[Any], stop: Callable[[], bool]) -> int:
    """Copy ``runs`` into the ledger, then take them out of the search; the number taken out. A damaged
    ledger is rebuilt first (a new run holding every settled run; the old ones marked ``replaced``)."""
    if not runs and not ledger.damaged:
        return 0
    if ledger.damaged or not ledger.ledger_ids:
        target, seq, batch = _create(session), 0, [*ledger.runs, *runs]
    else:
        target, seq, batch = _named_first(session, ledger.ledger_ids), ledger.next_seq, list(runs)
    # the header last: the batch is whole from here on; named by this apply (another may append at once)
    session.set_run_tags(target, codec.encode(seq, batch, secrets.token_hex(4)))
    crash_point("after-ledger-batch")
    if ledger.damaged:
        for old in ledger.ledger_ids:
            session.set_run_tags(old, {codec.MARK: "replaced", "expctl.managed": "replaced"})  # out of the search
        ledger.damaged, ledger.ledger_ids = "", [target]
    ledger.next_seq = seq + 1
    if not _still_read(session, target):
        return 0
    return _flip(session, [run.info.run_id for run in runs], stop)


def _still_read(session: MlflowSession, target: str) -> bool:
    """Whether plans still read the ledger the batch went to: another apply (another project's, under its own
    lock) may have rebuilt the ledger since this view, marking this one ``replaced``. Runs flipped then would
    be in no ledger read: they stay open (the next apply settles them into the new one)."""
    with session.calling("read the ledger of settled runs"):
        mark = session.client.get_run(target).data.tags.get(codec.MARK)
    if mark != "true":
        log.warning("the ledger of settled %s runs was replaced meanwhile: these runs settle at the next apply",
                    session.backend_name)
    return bool(mark == "true")


def _flip(session: MlflowSession, run_ids: Sequence[str], stop: Callable[[], bool]) -> int:
    """``expctl.managed=settled`` on each run (one request each; a few at once on a tracking server)."""
    gone: list[str] = []  # the server cannot be reached: stop flipping (the next apply goes on)

    def one(run_id: str) -> bool:
        if stop() or gone:
            return False
        try:
            session.set_run_tags(run_id, {"expctl.managed": codec.SETTLED})
        except TrackerUnavailable as exc:
            gone.append(str(exc))
            return False
        except TrackingError as exc:  # it stays open (and in the ledger): the next apply flips it
            log.warning("could not settle run %s: %s", run_id, exc)
            return False
        return True

    with ThreadPoolExecutor(max_workers=session.writers) as pool:
        flipped = sum(pool.map(one, run_ids))
    if gone:
        log.warning("settling stopped: %s", gone[0])
    return flipped


MARK = codec.MARK

__all__ = ["MARK", "Ledger", "candidates", "experiment_tag", "parent_settleable", "read", "settle", "settleable"]
