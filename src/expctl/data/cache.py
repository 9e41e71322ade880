"""Content hashes remembered by (path, size, mtime): re-planning an unchanged dataset reads no file twice.

One SQLite file under ``.expctl/`` (standard library only). Everything for one ``kind`` is loaded at the first
lookup (one query), new entries are kept in memory and written by ``flush`` — called only once every dataset
declaration has materialized, so a broken declaration writes nothing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

_SCHEMA = """CREATE TABLE IF NOT EXISTS entries (
  kind TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL, stamp TEXT NOT NULL, value TEXT NOT NULL,
  PRIMARY KEY (kind, path))"""


class HashCache:
    """``(kind, path) → value`` valid while the file's size and stamp (mtime in ns, or a remote version) hold."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._loaded: dict[str, dict[str, tuple[int, str, str]]] = {}
        self._new: list[tuple[str, str, int, str, str]] = []
        self.hits = 0
        self.misses = 0

    def _load(self, kind: str) -> dict[str, tuple[int, str, str]]:
        table = self._loaded.get(kind)
        if table is None:
            table = {}
            if self.path is not None and self.path.exists():
                with sqlite3.connect(self.path) as db:
                    db.execute(_SCHEMA)
                    rows = db.execute("SELECT path, size, stamp, value FROM entries WHERE kind = ?", (kind,))
                    table = {p: (s, st, v) for p, s, st, v in rows}
            self._loaded[kind] = table
        return table

    def get(self, kind: str, path: str, size: int, stamp: str) -> str | None:
        if not stamp:
            return None
        hit = self._load(kind).get(path)
        if hit is not None and hit[0] == size and hit[1] == stamp:
            self.hits += 1
            return hit[2]
        self.misses += 1
        return None

    def put(self, kind: str, path: str, size: int, stamp: str, value: str) -> None:
        if not stamp:
            return
        self._load(kind)[path] = (size, stamp, value)
        self._new.append((kind, path, size, stamp, value))

    def flush(self) -> None:
        if self.path is None or not self._new:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(self.path, timeout=60) as db:
            db.execute(_SCHEMA)
            db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)", self._new)
        self._new.clear()
