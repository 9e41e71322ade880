"""The teams' platform objects as desired state (``expctl teams plan`` / ``teams apply``): each team as plain
data (what every backend's reconciler gets), the objects a backend renders from them, and the pure diff of those
against what the backend observed — create, update, leave alone, delete (only with ``--prune``), or refuse.

Pure: no I/O. A backend renders ``PlatformObject``s and observes its managed ones; this module decides.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from expctl.core.naming import canonical_json, sha256_hex


@dataclass(frozen=True)
class Team:
    """One team of ``expctl.yaml`` as plain data: its placement per backend, who may act for it, its GPUs."""

    name: str
    members: tuple[str, ...] = ()
    namespace: str | None = None
    queue: str | None = None
    priority_class: str | None = None
    users: tuple[str, ...] = ()  # Kubernetes users and groups granted its training jobs (members, CI identity)
    groups: tuple[str, ...] = ()
    max_jobs: int | None = None
    borrow: bool = False
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus: int | None = None
    max_gpus_per_run: int | None = None
    # its MLflow job identity (user, password, workspace) for its namespace's Secret JOB_SECRET: never shown
    job_env: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)


JOB_SECRET = "expctl-mlflow-job"  # a team's Secret in its namespace: its MLflow job identity (envFrom)
JOB_SECRET_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_WORKSPACE")


@dataclass(frozen=True)
class PlatformObject:
    """One object a backend keeps for the teams (``namespace`` "" when cluster-wide; ``team`` "" when shared)."""

    kind: str
    name: str
    namespace: str = ""
    team: str = ""
    digest: str = ""  # of the desired body (what the backend stores on the object, to compare)
    body: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.kind, self.namespace, self.name

    @property
    def shown(self) -> str:
        return f"{self.kind}/{self.namespace + '/' if self.namespace else ''}{self.name}"


def digest_of(body: Mapping[str, Any]) -> str:
    return sha256_hex(canonical_json(body))[:16]


class PlatformAction(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    UNCHANGED = "unchanged"
    WOULD_PRUNE = "would-prune"  # no longer desired; --prune deletes it
    BLOCKED = "blocked"  # refused: an object of that name expctl did not create, a namespace holding others'

    @property
    def writes(self) -> bool:
        return self in (PlatformAction.CREATE, PlatformAction.UPDATE, PlatformAction.DELETE)


@dataclass(frozen=True)
class PlatformChange:
    action: PlatformAction
    obj: PlatformObject
    detail: str = ""


class PruneRefused(Exception):
    """``--prune`` with no team declared: an empty or broken checkout would delete every team's objects."""


def plan_platform(desired: Sequence[PlatformObject], observed: Sequence[PlatformObject], *, prune: bool,
                  unmanaged: Mapping[tuple[str, str, str], str] | None = None,
                  order: Sequence[str] = ()) -> list[PlatformChange]:
    """Diff the rendered objects against the managed ones observed.

    ``unmanaged``: desired keys that exist without expctl's label (with what to say): a Namespace is left as is
    and used, anything else is blocked. ``order``: kinds in creation order (namespaces, queues first); deletes
    come first, in the reverse order. A namespace to delete that holds objects expctl did not create is blocked
    (the backend says which through ``unmanaged`` for the namespace's key).
    """
    if prune and not desired and observed:
        raise PruneRefused("refusing to prune: expctl.yaml declares no teams (an empty or broken checkout?)")
    foreign = unmanaged or {}
    have = {o.key: o for o in observed}
    changes: list[PlatformChange] = []
    for obj in desired:
        cur = have.get(obj.key)
        if cur is None and obj.key in foreign:
            action = PlatformAction.UNCHANGED if obj.kind == "Namespace" else PlatformAction.BLOCKED
            changes.append(PlatformChange(action, obj, foreign[obj.key]))
        elif cur is None:
            changes.append(PlatformChange(PlatformAction.CREATE, obj))
        elif cur.digest != obj.digest:
            changes.append(PlatformChange(PlatformAction.UPDATE, obj))
        else:
            changes.append(PlatformChange(PlatformAction.UNCHANGED, obj))
    wanted = {o.key for o in desired}
    for obj in observed:
        if obj.key in wanted:
            continue
        if not prune:
            changes.append(PlatformChange(PlatformAction.WOULD_PRUNE, obj, "no longer declared; run with --prune"))
        elif obj.key in foreign:
            changes.append(PlatformChange(PlatformAction.BLOCKED, obj, foreign[obj.key]))
        else:
            changes.append(PlatformChange(PlatformAction.DELETE, obj))
    rank = {kind: i for i, kind in enumerate(order)}

    def position(c: PlatformChange) -> tuple[int, int]:
        r = rank.get(c.obj.kind, len(rank))
        return (0, -r) if c.action is PlatformAction.DELETE else (1, r)

    return sorted(changes, key=position)
