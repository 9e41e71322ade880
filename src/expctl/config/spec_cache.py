"""Composed specs kept between commands: what ``describe`` shows without composing with Hydra again.

``describe RUN`` shows the spec hash and config HEAD wants for the run, which is a Hydra composition (~0.4 s
with its imports: most of the command). A plan, validate or apply that succeeded (``keep``;
a command refused for bad input writes nothing) and a ``describe`` that had to compose leave the spec hash and
config of every run they composed in ``.expctl/cache/specs/<experiment digest>.json``; a later ``describe`` at the
same commit reads them there.

An entry is used only when it was made from exactly the same inputs:
- the same commit (configs are read from the commit, never the working tree: a ``--worktree`` plan writes none);
- the same expctl, Hydra and OmegaConf code (``fingerprint``: the size and modification time of every source
  file of expctl and of the two packages' ``__init__``; an upgrade or an edit changes it);
- nothing composed from outside the commit or from other experiments: runs with a ``data:`` block (their
  digest depends on the data root), runs with ``inputs:`` (expanded from their upstream's points) and
  repositories that allow-list extra resolvers (``allow_resolvers`` may read the environment) are never cached.

Files are replaced atomically; an unreadable, foreign or stale file is a miss (the command composes, as without
a cache). One file per experiment, for the last commit written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expctl.core.model import JSON, RunSpec

if TYPE_CHECKING:
    from expctl.config.desired_state import Desired

FORMAT = 1
CACHE_DIR = Path(".expctl") / "cache" / "specs"


@cache
def fingerprint() -> str:
    """Identifies the code that composes: every expctl source file and Hydra's and OmegaConf's packages."""
    root = Path(__file__).resolve().parent.parent
    parts: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                st = os.stat(path)
                parts.append(f"{os.path.relpath(path, root)}:{st.st_size}:{st.st_mtime_ns}")
    for package in ("hydra", "omegaconf"):
        spec = find_spec(package)
        origin = spec.origin if spec is not None else None
        found = os.stat(origin) if origin else None
        parts.append(f"{package}:{origin}:{found.st_size if found else 0}:{found.st_mtime_ns if found else 0}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _path(repo: Path, experiment: str) -> Path:
    return repo / CACHE_DIR / f"{hashlib.sha256(experiment.encode()).hexdigest()[:24]}.json"


def cacheable(spec: RunSpec, allow_resolvers: Iterable[str]) -> bool:
    """Whether the spec depends on nothing but the commit and the code (see the module's docstring)."""
    return not spec.datasets and not spec.job.inputs and not spec.upstream and not list(allow_resolvers)


def keep(desired: Desired) -> None:
    """Keep the spec hash and config of each cacheable run of a commit's desired state, one file per experiment
    (called once a command succeeded, so a command refused for bad input writes nothing). Never fails a
    command: a directory that cannot be written (a read-only checkout) leaves no cache."""
    snap = desired.snapshot
    if snap.worktree:
        return  # the working tree is not the commit
    resolvers = list(desired.settings.allow_resolvers)
    by_experiment: dict[str, dict[str, list[Any]]] = {}
    for spec in desired.runs:
        if cacheable(spec, resolvers):
            by_experiment.setdefault(spec.experiment, {})[spec.run_key] = [spec.spec_hash, dict(spec.config)]
    for experiment, runs in by_experiment.items():
        path = _path(snap.repo, experiment)
        kept = _load(path, snap.commit, experiment) or {}
        if runs.keys() <= kept.keys():
            continue  # written for this commit already (the same inputs compose the same specs)
        body = {"format": FORMAT, "fingerprint": fingerprint(), "commit": snap.commit, "experiment": experiment,
                "runs": {**kept, **runs}}  # a describe keeps one run; a plan then adds the others
        with contextlib.suppress(OSError, ValueError):
            _write(path, json.dumps(body, separators=(",", ":")))


def lookup(repo: Path, commit: str, experiment: str, run_key: str) -> tuple[str, Mapping[str, JSON]] | None:
    """``(spec hash, config)`` of the run at ``commit`` when a cache entry made from the same inputs holds it."""
    runs = _load(_path(repo, experiment), commit, experiment)
    entry = runs.get(run_key) if runs is not None else None
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str) and isinstance(entry[1], dict)):
        return None
    return entry[0], entry[1]


def _load(path: Path, commit: str, experiment: str) -> dict[str, Any] | None:
    try:
        body = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not (isinstance(body, dict) and body.get("format") == FORMAT and body.get("commit") == commit
            and body.get("experiment") == experiment and body.get("fingerprint") == fingerprint()
            and isinstance(body.get("runs"), dict)):
        return None
    runs: dict[str, Any] = body["runs"]
    return runs


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".spec-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
