"""A saved plan (``expctl plan --out``) read back for ``expctl apply PLANFILE``: typed and validated.

The file is the JSON view of a plan (``views.as_dict``). Reading it checks every field apply relies on, so a
hand-edited or truncated file is refused with one line naming the file and the key — never a ``KeyError``.
Freshness: apply recomputes the plan under the lock and refuses a saved plan that no longer matches it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expctl.core import bounded, safe_json
from expctl.core.errors import ExpctlError, StalePlanError
from expctl.core.model import Action, Plan
from expctl.core.views import SCHEMA_VERSION

MAX_PLAN_BYTES = 64 * bounded.MiB  # a plan of 100,000 changes is ~20 MiB; /dev/zero never ends
_COMMIT = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")  # SHA-1, or SHA-256 object ids


@dataclass(frozen=True)
class SavedChange:
    action: Action
    name: str
    spec_hash: str | None


@dataclass(frozen=True)
class SavedPlan:
    path: Path
    commit: str
    backend: str
    fingerprint: str
    prune: bool
    replace_running: bool
    changes: tuple[SavedChange, ...]


def _field(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, path: Path) -> Any:
    if key not in data:
        raise ExpctlError("missing (a truncated or hand-edited plan?)", file=str(path), key=f"{where}{key}")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ExpctlError(f"expected {names}, got {type(value).__name__}", file=str(path), key=f"{where}{key}")
    return value


def _change(item: Any, index: int, path: Path) -> SavedChange:
    where = f"changes[{index}]."
    if not isinstance(item, dict):
        raise ExpctlError("expected an object", file=str(path), key=f"changes[{index}]")
    action = _field(item, "action", str, where, path)
    try:
        parsed = Action(action)
    except ValueError:
        choices = ", ".join(a.value for a in Action)
        raise ExpctlError(f"unknown action {action!r} (one of {choices})", file=str(path),
                          key=f"{where}action") from None
    return SavedChange(parsed, _field(item, "name", str, where, path),
                       _field(item, "spec_hash", (str, type(None)), where, path))


def load(path: Path) -> SavedPlan:
    """Read and validate a saved plan; ExpctlError (one line, file and key) when it is not a usable plan."""
    try:
        raw = bounded.read_bytes(path, MAX_PLAN_BYTES, "a saved plan")
    except OSError as exc:
        raise ExpctlError(f"cannot read saved plan: {exc.strerror or exc}", file=str(path)) from exc
    try:
        data = safe_json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise ExpctlError(f"not valid JSON (truncated?): {exc}", file=str(path)) from exc
    if not isinstance(data, dict):
        raise ExpctlError("not an expctl plan (a JSON object expected)", file=str(path))
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ExpctlError(f"not an expctl plan (schema_version {SCHEMA_VERSION} expected)", file=str(path),
                          key="schema_version")
    if _field(data, "worktree", bool, "", path):
        raise ExpctlError("a plan of the working tree cannot be applied: commit first", file=str(path))
    changes = _field(data, "changes", list, "", path)
    summary = _field(data, "summary", dict, "", path)
    for key, count in summary.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ExpctlError("expected a count (a whole number)", file=str(path), key=f"summary.{key}")
    commit, backend = _field(data, "commit", str, "", path), _field(data, "backend", str, "", path)
    if not _COMMIT.fullmatch(commit):  # a ref (HEAD, a branch) would be read at apply time, not where it was made
        raise ExpctlError(f"expected a full commit id, got {commit[:80]!r}", file=str(path), key="commit")
    return SavedPlan(
        path=path,
        commit=commit,
        backend=backend,
        fingerprint=_field(data, "fingerprint", str, "", path),
        prune=_field(data, "prune", bool, "", path),
        replace_running=_field(data, "replace_running", bool, "", path),
        changes=tuple(_change(item, i, path) for i, item in enumerate(changes)),
    )


def check_fresh(saved: SavedPlan, plan: Plan) -> None:
    """Refuse a saved plan when what is observed (or the plan it yields) moved on since it was made."""
    if saved.backend != plan.backend:
        raise StalePlanError(f"saved plan is for backend {saved.backend}, not {plan.backend}", file=str(saved.path))
    ours = [SavedChange(c.action, c.name, c.spec_hash) for c in plan.changes]
    if saved.fingerprint != plan.fingerprint or ours != list(saved.changes):
        raise StalePlanError("saved plan is stale: the observed runs changed since it was made; "
                             "run `expctl plan` again", file=str(saved.path))
