"""The audit trail in MLflow: one run per apply in the experiment ``expctl-audit``.

An apply's record is created before its first write (``begin``: one ``create_run`` carrying every tag) and
completed after its last one (``complete``: one ``log_batch`` of results plus ``set_terminated``). The plan's
changes are JSON split over tags ``expctl.audit.changes.NNN`` (MLflow caps a tag value at 8,000 characters).
While open, the record carries ``expctl.managed=true`` and the backend's tag, so the one search of every managed
run (``MlflowStore.view``) also finds the records a killed apply left open; completing one flips the tag.
Entries of older expctl versions (one run per change, tag ``expctl.audit.entry``) are still read. Records are
created exactly once (``MlflowSession.create_run``); should two records of one apply exist anyway (written by an
older expctl), ``history`` lists the apply once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from contextlib import closing
from dataclasses import replace
from typing import Any

from expctl.core import audit as a
from expctl.core import safe_json
from expctl.core.project import TAG as PROJECT
from expctl.tracking.mlflow import tags as g
from expctl.tracking.mlflow.session import MlflowSession

log = logging.getLogger(__name__)

AUDIT_EXPERIMENT, STATE = g.AUDIT_EXPERIMENT, g.AUDIT_STATE
HEADER, CHANGES, RESULTS = "expctl.audit.header", "expctl.audit.changes", "expctl.audit.results"
APPLY_ID = "expctl.audit.apply_id"  # searchable: a replayed record is written once
_CHUNK = g.MAX_TAG_VALUE
_RANK = {a.COMPLETE: 0, a.RECOVERED: 1, a.INTENT: 2}  # which of two records of one apply ``history`` keeps


def _chunks(prefix: str, text: str) -> dict[str, str]:
    parts = [text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
    return {f"{prefix}.{i:04d}": part for i, part in enumerate(parts)}


def _joined(tags: dict[str, str], prefix: str) -> str | None:
    keys = sorted(k for k in tags if k.startswith(prefix + "."))
    return "".join(tags[k] for k in keys) if keys else None


def _batches(session: MlflowSession, run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    items = [RunTag(k, v) for k, v in tags.items()]
    for start in range(0, len(items), g.MAX_PER_BATCH):
        with session.calling("write the audit record"):
            session.client.log_batch(run_id, tags=items[start : start + g.MAX_PER_BATCH])


def _stamped(session: MlflowSession, record: a.AuditRecord) -> a.AuditRecord:
    """The record naming the session's project (``core.project``), unless it names one already."""
    return record if record.project or session.project is None else replace(record, project=session.project)


def _project_tag(record: a.AuditRecord) -> dict[str, str]:
    return {PROJECT: record.project} if record.project else {}


def _mine(session: MlflowSession, record: a.AuditRecord) -> bool:
    """Whether a record is the session's project's (``core.project.owned``): an older expctl's names none."""
    return session.owns(_project_tag(record))


def begin(session: MlflowSession, record: a.AuditRecord) -> a.AuditRecord:
    """Store the intent (every change pending) as an open audit run; returns the record with its run id."""
    experiment_id = session.experiment_id(AUDIT_EXPERIMENT, managed=False)
    record = _stamped(session, record)
    tags = {STATE: a.INTENT, HEADER: json.dumps(record.header(), sort_keys=True), APPLY_ID: record.apply_id,
            **_project_tag(record), "expctl.managed": "true",
            "expctl.backend": session.backend_name, "mlflow.runName": f"apply-{record.apply_id}",
            "mlflow.user": record.who[:250], **_chunks(CHANGES, record.changes_json())}
    first = dict(list(tags.items())[: g.MAX_PER_BATCH - 1])  # and the create's own key
    rest = dict(list(tags.items())[g.MAX_PER_BATCH - 1 :])
    run = session.create_run(experiment_id, first, "write the audit record", start_time=int(record.started * 1000))
    if rest:
        _batches(session, run.info.run_id, rest)
    return replace(record, record_id=run.info.run_id)


def complete(session: MlflowSession, record: a.AuditRecord) -> None:
    """Store each change's result and close the record (it is no longer a managed, open run)."""
    assert record.record_id is not None
    tags = {STATE: record.state, HEADER: json.dumps(record.header(), sort_keys=True), "expctl.managed": "false",
            **_chunks(RESULTS, record.results_json())}
    _batches(session, record.record_id, tags)
    with session.calling("close the audit record"):
        session.client.set_terminated(record.record_id, status="FINISHED",
                                      end_time=int((record.finished or time.time()) * 1000))


def record_entry(session: MlflowSession, entry: dict[str, Any]) -> None:
    """One completed single-change record (an operator's cancel), in the same shape as an apply's. An entry
    that names its ``apply`` id is written only if no record of that id exists (a replay is idempotent)."""
    change = a.AuditChange(str(entry.get("action", "")), str(entry.get("run", "")),
                           str(entry.get("experiment", "")), str(entry.get("run_key", "")),
                           int(entry.get("attempt") or 0), str(entry.get("reason", "")), str(entry.get("kind", "")),
                           str(entry.get("namespace") or ""), str(entry.get("spec_hash", "")), (), a.DONE,
                           team=str(entry.get("team") or ""))
    now = float(entry.get("time") or time.time())
    apply_id = str(entry.get("apply") or "") or a.new_id()
    record = a.AuditRecord(apply_id, str(entry.get("who", "")), str(entry.get("actor", "")),
                           str(entry.get("commit", "")), str(entry.get("fingerprint", "")),
                           str(entry.get("backend", session.backend_name)), now, (change,), a.COMPLETE, now)
    record = _stamped(session, record)
    experiment_id = session.experiment_id(AUDIT_EXPERIMENT, managed=False)
    # replayed (``engine/cancel_journal``): recorded once, whatever happened before
    if entry.get("apply") and session.search([experiment_id], f"tags.`{APPLY_ID}` = {g.quoted(apply_id)}"):
        return
    tags = {STATE: a.COMPLETE, HEADER: json.dumps(record.header(), sort_keys=True), APPLY_ID: apply_id,
            **_project_tag(record),
            "mlflow.runName": f"{change.action}-{change.run}"[:250], **_chunks(CHANGES, record.changes_json()),
            **_chunks(RESULTS, record.results_json())}
    run = session.create_run(experiment_id, tags, "record audit entry", start_time=int(now * 1000))
    with session.calling("record audit entry"):
        session.client.set_terminated(run.info.run_id, status="FINISHED", end_time=int(now * 1000))


def _decode(run: Any) -> a.AuditRecord | None:
    tags = run.data.tags
    try:
        results = _joined(tags, RESULTS)
        record = a.decode(safe_json.loads(tags[HEADER]), safe_json.loads(_joined(tags, CHANGES) or "[]"),
                          safe_json.loads(results) if results else None)
    except (KeyError, ValueError, TypeError) as exc:
        log.warning("skipping unreadable audit record %s: %s", run.info.run_id, exc)
        return None
    return replace(record, state=tags.get(STATE, record.state), record_id=run.info.run_id)


def _old_entry(text: str) -> dict[str, Any]:
    """A one-change record of an older expctl (``expctl.audit.entry``); ``{}`` when it is damaged."""
    try:
        entry = safe_json.loads(text)
    except ValueError:
        return {}
    return entry if isinstance(entry, dict) else {}


def open_records(session: MlflowSession, runs: Iterable[Any]) -> list[a.AuditRecord]:
    """The records a killed apply of the session's project (or of an older expctl) left open, among the
    searched managed runs."""
    found = (_decode(r) for r in runs if r.data.tags.get(STATE) == a.INTENT)
    return sorted((r for r in found if r is not None and _mine(session, r)), key=lambda r: r.started)


def entries(session: MlflowSession, experiment: str | None, limit: int,
            team: str | None = None) -> list[dict[str, Any]]:
    """Applied changes of the session's project, newest first (of one experiment, of one team's runs, or all);
    records of an older expctl, which name no project, are every project's."""
    experiment_id = session.existing_experiment_id(AUDIT_EXPERIMENT) if limit > 0 else None
    if experiment_id is None:
        return []  # nothing was ever applied
    found: list[list[dict[str, Any]]] = []
    best: dict[str, tuple[int, int]] = {}  # apply id -> (rank of its best record, its place in ``found``)
    with closing(session.run_pages([experiment_id], "", order="DESC")) as pages:
        for page in pages:
            for run in page:
                if "expctl.audit.entry" in run.data.tags:  # an older expctl: one run per change (no team)
                    old = _old_entry(run.data.tags["expctl.audit.entry"])
                    if team is None and experiment in (None, old.get("experiment")):
                        found.append([old])
                    continue
                record = _decode(run) if HEADER in run.data.tags else None
                if record is None or not _mine(session, record):
                    continue
                rows = [r for r in reversed(a.entries(record)) if experiment in (None, r.get("experiment"))
                        and team in (None, r.get("team"))]
                # one apply, one record: a second one (a create whose answer was lost, then sent again) is
                # not listed twice; the completed one is kept
                rank = _RANK.get(record.state, len(_RANK))
                kept = best.get(record.apply_id)
                if kept is None:
                    best[record.apply_id] = (rank, len(found))
                    found.append(rows)
                elif rank < kept[0]:
                    best[record.apply_id] = (rank, kept[1])
                    found[kept[1]] = rows
            if sum(map(len, found)) >= limit:
                break
    return [row for rows in found for row in rows][:limit]
