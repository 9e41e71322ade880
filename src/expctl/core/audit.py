"""The audit record of one apply: who applied which changes of which plan, and what became of each.

Pure: values and their JSON form; the tracker stores them (``tracking/mlflow/audit.py``). An apply writes its
record as an *intent* (every change ``pending``) before its first write and *completes* it after its last one.
A record still open when the next apply starts belongs to an apply that was killed: ``recover`` completes it
from what is observed, so ``expctl history`` never loses a change that was applied. A record names the *scope*
of the apply lock it was written under (``locking.scope_of``): only an apply under the same lock, which observes
the same jobs, completes it (another project's apply on the same tracking server sees that record open — maybe
still being applied — but not its jobs: it would call every change "not applied").
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from expctl.core.model import Action, Change, ObservedRun, Plan

PENDING = "pending"
DONE = "done"
NOT_APPLIED = "not applied"
INTENT, COMPLETE, RECOVERED = "intent", "complete", "recovered"


@dataclass(frozen=True)
class AuditChange:
    action: str
    run: str
    experiment: str
    run_key: str
    attempt: int
    reason: str
    kind: str
    namespace: str
    spec_hash: str
    deletes: tuple[str, ...] = ()
    result: str = PENDING  # pending | done | not applied | failed: <message>
    team: str = ""  # the team owning the run ("": no team declared, or a run no longer desired)

    @property
    def applied(self) -> bool:
        return self.result == DONE


@dataclass(frozen=True)
class AuditRecord:
    apply_id: str
    who: str
    actor: str
    commit: str
    fingerprint: str
    backend: str
    started: float
    changes: tuple[AuditChange, ...]
    state: str = INTENT
    finished: float | None = None
    note: str = ""  # e.g. "interrupted by SIGINT", "completed by the next apply"
    scope: str = ""  # the apply lock's scope ("": unknown, an older expctl's: any apply completes it)
    project: str = ""  # whose apply (``core.project``; "": an older expctl's, every project's history lists it)
    record_id: str | None = field(default=None, compare=False)  # the tracker's id of the stored record

    def header(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("changes", "record_id")}

    def changes_json(self) -> str:
        return json.dumps([[c.action, c.run, c.experiment, c.run_key, c.attempt, c.reason, c.kind, c.namespace,
                            c.spec_hash, list(c.deletes), *([c.team] if c.team else [])] for c in self.changes],
                          separators=(",", ":"))

    def results_json(self) -> str:
        return json.dumps([c.result for c in self.changes], separators=(",", ":"))


def audit_change(change: Change) -> AuditChange:
    run = change.observed
    kind = change.desired.job.kind.value if change.desired else (run.kind if run else "")
    namespace = (change.desired.job.namespace if change.desired else (run.namespace if run else None)) or ""
    team = (change.desired.job.team if change.desired else None) or ""
    return AuditChange(change.action.value, change.name, change.experiment, change.run_key, change.attempt,
                       change.reason.value, kind, namespace, change.spec_hash or "", change.deletes, team=team)


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def new_record(plan: Plan, changes: Sequence[Change], who: str, actor: str,
               now: float | None = None, scope: str = "") -> AuditRecord:
    """The intent of an apply: its writing changes (a plan's no-ops are not part of the record), all pending."""
    return AuditRecord(new_id(), who, actor, plan.commit, plan.fingerprint, plan.backend,
                       time.time() if now is None else now,
                       tuple(audit_change(c) for c in changes if c.action.writes), scope=scope)


def recovers(record: AuditRecord, scope: str) -> bool:
    """Whether an apply under the lock of ``scope`` completes ``record``, left open: its own lock's records,
    and those of unknown scope."""
    return not record.scope or record.scope == scope


def with_results(record: AuditRecord, results: dict[str, str], state: str = COMPLETE, note: str = "",
                 now: float | None = None) -> AuditRecord:
    """The record completed: each change's result by run name (changes not in ``results``: not applied)."""
    changes = tuple(replace(c, result=results.get(c.run, c.result if c.result != PENDING else NOT_APPLIED))
                    for c in record.changes)
    return replace(record, changes=changes, state=state, note=note or record.note,
                   finished=time.time() if now is None else now)


def recover(record: AuditRecord, observed: Iterable[ObservedRun], now: float | None = None) -> AuditRecord:
    """Complete a killed apply's record from what is observed now: was each pending change applied?"""
    seen = list(observed)
    live = {r.name for r in seen if r.live}
    # a created job that has since finished and been garbage-collected is remembered as finished by the tracker
    launched = {(r.name, r.spec_hash) for r in seen if r.live or r.phase.finished}
    results: dict[str, str] = {}
    for c in record.changes:
        if c.result != PENDING:
            continue
        if c.action == Action.DELETE.value:
            results[c.run] = DONE if all(name not in live for name in c.deletes) else NOT_APPLIED
        else:
            results[c.run] = DONE if (c.run, c.spec_hash) in launched else NOT_APPLIED
    return with_results(record, results, RECOVERED, "interrupted; completed by the next apply", now)


def entries(record: AuditRecord) -> list[dict[str, Any]]:
    """History lines of a record: one per applied change (what ``expctl history`` lists)."""
    when = record.finished or record.started
    return [{"action": c.action, "run": c.run, "experiment": c.experiment, "run_key": c.run_key,
             "attempt": c.attempt, "reason": c.reason, "kind": c.kind, "namespace": c.namespace,
             "who": record.who, "actor": record.actor, "commit": record.commit,
             "fingerprint": record.fingerprint, "time": when, "backend": record.backend,
             "spec_hash": c.spec_hash, "apply": record.apply_id, "result": c.result, "team": c.team or None}
            for c in record.changes if c.applied]


def decode(header: dict[str, Any], changes: list[list[Any]], results: list[str] | None) -> AuditRecord:
    """The record back from its JSON parts (``header()``, ``changes_json()``, ``results_json()``)."""
    parsed = tuple(AuditChange(str(a), str(r), str(e), str(k), int(n), str(why), str(kind), str(ns), str(h),
                               tuple(str(d) for d in dels), team=str(team[0]) if team else "")
                   for a, r, e, k, n, why, kind, ns, h, dels, *team in changes)  # team: since teams (11th)
    if results is not None and len(results) == len(parsed):
        parsed = tuple(replace(c, result=str(res)) for c, res in zip(parsed, results, strict=True))
    fields = {k: header[k] for k in ("apply_id", "who", "actor", "commit", "fingerprint", "backend")}
    return AuditRecord(**{k: str(v) for k, v in fields.items()}, started=float(header["started"]),
                       changes=parsed, state=str(header.get("state", INTENT)),
                       finished=float(header["finished"]) if header.get("finished") else None,
                       note=str(header.get("note", "")), scope=str(header.get("scope", "")),
                       project=str(header.get("project", "")))
