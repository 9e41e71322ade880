"""``expctl teams plan`` / ``teams apply``: the teams' platform objects reconciled as desired state, with the
semantics of runs — under the apply lock, each write audited (action ``team-<create|update|delete>``, the
object as the run, the team; journalled before the write like a cancel, ``engine/cancel_journal``, so that a
crash or an MLflow failure never loses an entry), ``--prune`` needed to delete, never deleting what expctl did
not create.

The seam: ``RECONCILERS`` names each backend's reconciler (``"module:function"``, called with the settings, and
returning an object with ``backend_name``, ``order``, ``desired(teams)``, ``observe(desired)`` and
``write(change)``, and optionally ``notes``: lines the plan prints) — Kubernetes' (namespaces, RBAC, quotas,
Kueue queues) and Slurm's (``sacctmgr``: QOS with the GPU limits, accounts, associations), both fed the same
plain ``core.team_platform.Team`` values. When the teams declare ``mlflow:``, MLflow is reconciled too
(``team_mlflow``): on a backend without a reconciler (local), MLflow alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from expctl.config.schema import Settings
from expctl.core.backend_registry import load
from expctl.core.errors import BackendError, ExpctlError, TrackingError
from expctl.core.naming import canonical_json, sha256_hex
from expctl.core.team_platform import (
    PlatformChange,
    PlatformObject,
    PruneRefused,
    Team,
    plan_platform,
)
from expctl.engine import cancel_journal
from expctl.engine.apply import apply_lock
from expctl.engine.identity import operator
from expctl.engine.operate import settings_at_head
from expctl.engine.team_mlflow import MlflowSide, apply_mlflow, job_envs, mlflow_entry, mlflow_side, plan_mlflow
from expctl.engine.workspace import Workspace

if TYPE_CHECKING:
    from expctl.tracking.mlflow.teams_access import MlflowTeamsReport
    from expctl.tracking.mlflow.teams_access_plan import Change

RECONCILERS = {"kubernetes": "expctl.backends.kubernetes.team_reconcile:open_teams",
               "slurm": "expctl.backends.slurm.team_reconcile:open_teams"}


class Reconciler(Protocol):
    backend_name: str
    order: Sequence[str]

    def desired(self, teams: Sequence[Team]) -> list[PlatformObject]: ...

    def observe(self, desired: Sequence[PlatformObject]) -> tuple[list[PlatformObject],
                                                                   dict[tuple[str, str, str], str]]: ...

    def write(self, change: PlatformChange) -> None: ...


def teams_of_settings(settings: Settings, job_envs: Mapping[str, Mapping[str, str]] | None = None) -> list[Team]:
    """expctl.yaml's teams as plain data (what every backend's reconciler gets); ``job_envs``: each team's MLflow
    job identity, for its Kubernetes Secret."""
    out = []
    for t in settings.teams:
        kube, slurm = t.kubernetes, t.slurm
        out.append(Team(
            t.name, tuple(t.members), kube.namespace if kube else None, kube.queue if kube else None,
            kube.priority_class if kube else None, tuple(kube.users) if kube else (),
            tuple(kube.groups) if kube else (), kube.max_jobs if kube else None, bool(kube and kube.borrow),
            slurm.partition if slurm else None, slurm.account if slurm else None, slurm.qos if slurm else None,
            t.gpus, t.max_gpus_per_run, (job_envs or {}).get(t.name, {}) if kube and kube.namespace else {}))
    return out


def open_reconciler(backend: str, settings: Settings) -> Reconciler:
    where = RECONCILERS.get(backend)
    if where is None:
        raise ExpctlError(f"expctl teams plan/apply: nothing to reconcile on backend {backend} (kubernetes: "
                          "namespaces, RBAC, quotas and Kueue queues; slurm: accounts, QOS, associations; "
                          "docs/teams.md)")
    reconciler: Reconciler = load(where)(settings)
    return reconciler


@dataclass
class TeamsPlan:
    backend: str
    commit: str
    changes: list[PlatformChange]
    fingerprint: str
    notes: list[str] = field(default_factory=list)
    mlflow: MlflowTeamsReport | None = None  # the teams declare ``mlflow:``

    @property
    def writes(self) -> list[PlatformChange]:
        return [c for c in self.changes if c.action.writes]

    @property
    def total_writes(self) -> int:
        """The platform's writes and MLflow's changes."""
        return len(self.writes) + (len(self.mlflow.changes) if self.mlflow else 0)


def make_teams_plan(reconciler: Reconciler, teams: Sequence[Team], commit: str, prune: bool) -> TeamsPlan:
    desired = reconciler.desired(teams)
    observed, unmanaged = reconciler.observe(desired)
    try:
        changes = plan_platform(desired, observed, prune=prune, unmanaged=unmanaged, order=reconciler.order)
    except PruneRefused as exc:
        raise ExpctlError(str(exc)) from exc
    rows = sorted((o.kind, o.namespace, o.name, o.digest) for o in observed)
    return TeamsPlan(reconciler.backend_name, commit, changes, sha256_hex(canonical_json(rows))[:16],
                     list(getattr(reconciler, "notes", [])))


def _platform_plan(reconciler: Reconciler | None, backend: str, settings: Settings, commit: str,
                   prune: bool, side: MlflowSide | None) -> TeamsPlan:
    if reconciler is None:
        return TeamsPlan(backend, commit, [], "")
    envs = job_envs(side) if side is not None else {}
    return make_teams_plan(reconciler, teams_of_settings(settings, envs), commit, prune)


def _open(ws: Workspace, backend_name: str | None) -> tuple[Settings, str, str, Reconciler | None,
                                                            MlflowSide | None]:
    """Settings, backend, commit, the backend's reconciler (None: MLflow alone) and the MLflow side."""
    settings = settings_at_head(ws)
    backend = ws.backend_name(settings, backend_name)
    from expctl.config import source

    commit = source.snapshot(ws.repo, "HEAD").commit
    side = mlflow_side(ws, settings)
    reconciler = open_reconciler(backend, settings) if side is None or backend in RECONCILERS else None
    return settings, backend, commit, reconciler, side


def teams_plan(ws: Workspace, backend_name: str | None, prune: bool, rotate: bool = False) -> TeamsPlan:
    settings, backend, commit, reconciler, side = _open(ws, backend_name)
    plan = _platform_plan(reconciler, backend, settings, commit, prune, side)
    if side is not None:
        plan.mlflow = plan_mlflow(side, prune, rotate)
    return plan


@dataclass
class TeamsApplied:
    plan: TeamsPlan
    done: list[PlatformChange] = field(default_factory=list)
    failed: list[tuple[PlatformChange, str]] = field(default_factory=list)
    declined: bool = False
    warnings: list[str] = field(default_factory=list)
    mlflow: MlflowTeamsReport | None = None  # what MLflow's apply made and refused

    @property
    def failures(self) -> list[str]:
        """One line per change not made (the platform's, then MLflow's)."""
        out = [f"{c.action.value} {c.obj.shown}: {why}" for c, why in self.failed]
        return out + [f"mlflow: {f}" for f in (self.mlflow.failed if self.mlflow else ())]

    @property
    def done_count(self) -> int:
        return len(self.done) + (len(self.mlflow.changes) if self.mlflow else 0)


def teams_apply(ws: Workspace, backend_name: str | None, prune: bool, confirm: Callable[[TeamsPlan], bool],
                lock_timeout: float = 600.0, rotate: bool = False) -> TeamsApplied:
    """Plan and apply under the backend's apply lock; each write audited as it is done (a failing write is
    reported and the others still run, as for runs). MLflow's changes first (a job identity's password exists
    before the team's Secret that carries it), then the platform's objects, planned again after them."""
    settings, backend, commit, reconciler, side = _open(ws, backend_name)
    tracker = ws.open_tracker(settings, backend)
    tracker.check()
    warnings = cancel_journal.replay(ws.state_dir, tracker)
    with apply_lock(ws.state_dir, backend, settings, lock_timeout) as lock:
        plan = _platform_plan(reconciler, backend, settings, commit, prune, side)
        if side is not None:
            plan.mlflow = plan_mlflow(side, prune, rotate)
        result = TeamsApplied(plan, warnings=warnings)
        if not plan.total_writes:
            return result
        if not confirm(plan):
            result.declined = True
            return result
        who = operator()
        if side is not None and plan.mlflow is not None and plan.mlflow.changes:
            def audited(change: Change) -> Callable[[str | None], None]:
                lock.check()
                path = cancel_journal.write(ws.state_dir, mlflow_entry(change, who, plan.commit, plan.fingerprint,
                                                                       plan.backend), None, who)

                def done(failed: str | None) -> None:
                    if failed is not None:
                        path.unlink(missing_ok=True)
                        return
                    _record(tracker, path, f"mlflow {change.kind} {change.name}", result)
                return done

            result.mlflow = apply_mlflow(side, prune, rotate, audited)
            if reconciler is not None:  # the job identities' Secrets now hold the passwords just made
                fresh = _platform_plan(reconciler, backend, settings, commit, prune, side)
                plan.changes, plan.fingerprint = fresh.changes, fresh.fingerprint
        for change in plan.writes:
            assert reconciler is not None  # only a reconciler plans platform writes
            lock.check()
            # journalled first (as a cancel is): a crash or an MLflow failure after the write never loses it
            journal = cancel_journal.write(ws.state_dir, _entry(change, who, plan), None, who)
            try:
                reconciler.write(change)
            except BackendError as exc:
                journal.unlink(missing_ok=True)
                result.failed.append((change, str(exc)))
                continue
            result.done.append(change)
            _record(tracker, journal, change.obj.shown, result)
    return result


def _record(tracker: Any, journal: Any, shown: str, result: TeamsApplied) -> None:
    """Record a journalled team write in the audit trail; when MLflow refuses, it stays journalled (a warning)."""
    try:
        cancel_journal.record(tracker, journal)
    except TrackingError as exc:
        result.warnings.append(f"{shown}: not yet in the audit trail (the next apply, teams apply or cancel "
                               f"records it): {exc}")


def _entry(change: PlatformChange, who: str, plan: TeamsPlan) -> dict[str, Any]:
    obj = change.obj
    return {"action": f"team-{change.action.value}", "run": obj.shown, "experiment": "", "run_key": "",
            "attempt": 0, "reason": "teams apply", "kind": obj.kind, "namespace": obj.namespace, "who": who,
            "commit": plan.commit, "fingerprint": plan.fingerprint, "time": time.time(), "backend": plan.backend,
            "spec_hash": obj.digest, "team": obj.team or None}
