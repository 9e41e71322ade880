"""The embedded MLflow store's sqlite settings: a write-ahead log, and no disk sync per commit.

MLflow opens a sqlite store through SQLAlchemy with sqlite's defaults: a rollback journal and
``synchronous=FULL``, so each commit (two per new run) syncs the disk several times. The embedded store
(``.expctl/mlflow.db``) is expctl's own file, so expctl sets what sqlite recommends for such a store on every
connection this process opens to it: ``journal_mode=WAL`` (kept in the file: readers, such as ``expctl ui``'s
server, and the writer do not block each other) and ``synchronous=NORMAL`` (a commit survives the death of
the process; a power loss may lose the last commits but never corrupts the file). A store that expctl did
not create (a tracking server, a sqlite URI given by the user) is left as it is. Opening any sqlite store
defers SIGINT and SIGTERM until MLflow's schema migrations are done (``signals_deferred``).
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_embedded: set[str] = set()  # resolved paths of the embedded stores opened by this process
_lock = threading.Lock()
_listening = False


def tune(db_path: Path) -> None:
    """Every SQLAlchemy connection opened from now on to ``db_path`` gets the pragmas (see the module)."""
    global _listening
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    with _lock:
        _embedded.add(str(db_path.resolve()))
        if not _listening:
            event.listen(Engine, "connect", on_connect)
            _listening = True


def on_connect(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    files = {str(row[2]) for row in dbapi_connection.execute("PRAGMA database_list").fetchall() if row[2]}
    if not files & _embedded:
        return
    try:
        dbapi_connection.execute("PRAGMA journal_mode=WAL").fetchall()
    except sqlite3.OperationalError:  # another process holds the file right now: a later connection switches it
        pass
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")



@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the ``with`` block is over (then they act as they would have): MLflow
    creates or upgrades a sqlite store's tables with migrations that are not atomic — interrupted, they leave
    a scratch table (``_alembic_tmp_…``) that makes every later open fail. Only the main thread can
    defer them; elsewhere the block runs as is (the main thread gets the interrupt, and the block finishes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    wanted = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, _frame: caught.append(signum)) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)




def check_file(db_path: Path) -> None:
    """A sqlite store that is not one (a directory, a file of something else) is one line: MLflow would retry
    opening it ten times with backoff, for about 100 s, printing each failure as a multi-line warning.

    The file is read through SQLite itself, never opened by Python: closing any descriptor of a database file
    drops every POSIX lock this process holds on it (SQLite's own connections in other threads — the plain
    reads of ``sqlite_search`` — included), and another process could then checkpoint and remove the WAL under
    them: a corrupt store. SQLite keeps its descriptors of one file together and closes them safely."""
    from expctl.core.errors import TrackingError

    if db_path.is_dir():
        raise TrackingError(f"{db_path}: a directory, not an SQLite database (the MLflow store)")
    if not db_path.exists():
        return  # a new store: MLflow creates it
    try:
        with contextlib.closing(sqlite3.connect(db_path.resolve().as_uri() + "?mode=ro", uri=True,
                                                timeout=30)) as conn:
            conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if "not a database" in text or "malformed" in text:
            raise TrackingError(f"{db_path}: not an SQLite database (the MLflow store is damaged, or another "
                                "file has its name)") from exc
        if "unable to open" in text:
            raise TrackingError(f"{db_path}: cannot read the MLflow store: {text}") from exc
        # busy or locked: another process writes it right now, which only a database can be
