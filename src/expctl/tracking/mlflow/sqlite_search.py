"""Read-only searches of the embedded MLflow store (``.expctl/mlflow.db``) with Python's ``sqlite3``: no MLflow import.

``expctl status``, ``describe``, ``history`` and a plan with no changes only read what MLflow stored; through
``MlflowClient`` every one of them paid for importing ``mlflow`` and SQLAlchemy and opening the store (about
2.5 s on the development machine) before its first row. Here the same searches that ``rest_search`` sends to a
tracking server are answered from MLflow's own tables (``experiments``, ``experiment_tags``, ``runs``, ``tags``,
``params``, ``latest_metrics``) with the same small read-only objects (``rest_search.Run``, ``Experiment``) and in
MLflow's order (``start_time`` as asked, runs without one last, then ``run_uuid``).

It is strict about what it answers, and says ``Unsupported`` for anything else, so that the session asks
MLflow's client instead (correct, only slower):

* the schema: the ``alembic_version`` of the MLflow releases expctl is tested with (``KNOWN_REVISIONS``); a
  store migrated by another release is read by MLflow's client;
* the filters expctl sends: conjunctions (``and``) of ``tags.`key` = 'v'`` / ``!=`` and of the attributes
  ``run_id`` (``=``, ``!=``, ``IN``), ``status`` and ``run_name`` (``=``, ``!=``); the order
  ``attributes.start_time ASC|DESC``; for experiments, tags and ``name``;
* MLflow workspaces (``MLFLOW_ENABLE_WORKSPACES``, ``MLFLOW_WORKSPACE``) are MLflow's own business.

Every search is one read transaction on a connection opened read-only (``mode=ro``): a consistent snapshot
while MLflow (an apply, ``expctl ui``'s server, a training job) writes, which the store's write-ahead log allows
without blocking either side (``sqlite``). Pages of a long search come from that one snapshot, so a run cannot
move between pages. A store that does not exist yet holds no runs. Writes never come here.
"""

from __future__ import annotations

import os
import re
import sqlite3
import urllib.parse
import urllib.request
from collections.abc import Collection, Generator, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expctl.core.errors import TrackingError
from expctl.tracking.mlflow.rest_search import Experiment, Run, RunData, RunInfo

# ``alembic_version`` of the MLflow releases whose tables this module was checked against: 3.18.0 is the lock
# (tested); 3.17.2's migrations and models give the same columns for the six tables read here
KNOWN_REVISIONS = {"f4a9b2c7d1e6": "3.18.0", "dc11669786a5": "3.17.2"}
_CHUNK = 500  # run ids per ``IN (...)`` (well under sqlite's limit of bound parameters)
_BUSY_SECONDS = 10.0  # a reader waits only while a writer checkpoints or recovers the log
_WORKSPACE_SETTINGS = ("MLFLOW_ENABLE_WORKSPACES", "MLFLOW_WORKSPACE")

_KEY = r"(?:`(?P<{0}q>[^`]+)`|(?P<{0}b>[A-Za-z_][\w.]*))"
_VALUE = r"""(?:'(?P<{0}s>[^']*)'|"(?P<{0}d>[^"]*)")"""
_CLAUSE = re.compile(
    r"\s*(?P<kind>tags|tag|attributes|attribute|attr|run)\.(?P<key>" + _KEY.format("k") + r")\s*"
    r"(?:(?P<op>=|!=)\s*(?P<value>" + _VALUE.format("v") + r")"
    r"|(?P<inop>(?i:not\s+in|in))\s*\((?P<items>[^()]*)\))\s*$")
_ITEM = re.compile(r"\s*" + _VALUE.format("i") + r"\s*(?:,|$)")
_ORDER = re.compile(r"\s*(?:(?:attributes|attribute|attr|run)\.)?start_time(?:\s+(?P<dir>(?i:asc|desc)))?\s*$")
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
_RUN_ATTRIBUTES = {"run_id": "run_uuid", "status": "status", "run_name": "name"}
_RUN_COLUMNS = "run_uuid, experiment_id, status, start_time, end_time, lifecycle_stage"


class Unsupported(Exception):
    """This search is not one this module answers exactly: ask MLflow's client."""


class UnknownSchema(Unsupported):
    """The store's schema is not one of ``KNOWN_REVISIONS`` (nor is it likely to become one in this session)."""


_READ_ONLY_PROCESS = False  # set by the commands that never write to the store (``reads_only``)


def reads_only(only: bool = True) -> None:
    """This process only reads the store (``plan``, ``status``, ``describe``, ``history``, ``logs``,
    ``lineage``): its searches may be read from the file. A process that also writes through MLflow's client
    (``apply``, ``cancel``, ...) keeps every request on the client: plain reads beside MLflow's writes in one
    process corrupted the store under load (the demo's ``apply --wait``: "database disk image is malformed"),
    and until that is understood they are not mixed."""
    global _READ_ONLY_PROCESS
    _READ_ONLY_PROCESS = only


def usable(tracking_uri: str, embedded: bool) -> bool:
    """Whether searches of ``tracking_uri`` can be read here: expctl's own store, outside MLflow workspaces, in
    a process that only reads it (``reads_only``)."""
    return (_READ_ONLY_PROCESS and embedded and tracking_uri.startswith("sqlite:///")
            and not any(os.environ.get(name) for name in _WORKSPACE_SETTINGS))


def local_path(uri: str) -> Path | None:
    """The local path of an artifact URI (``file:///abs`` or ``/abs``), None for any other kind."""
    if uri.startswith("/"):
        return Path(uri)
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        return None
    path = urllib.request.url2pathname(parts.path)
    return Path(path) if path.startswith("/") else None


@dataclass(frozen=True)
class _Where:
    sql: str
    args: tuple[Any, ...]


def _literal(match: re.Match[str], prefix: str) -> str:
    single = match.group(prefix + "s")
    return single if single is not None else str(match.group(prefix + "d"))


def _clause(text: str, entity: str) -> _Where:
    """One comparison of a filter as SQL on ``r`` (a run) or ``e`` (an experiment)."""
    match = _CLAUSE.match(text)
    if match is None:
        raise Unsupported(f"filter clause {text.strip()!r}")
    kind = match.group("kind").lower()
    key = match.group("kq") or match.group("kb")
    op, inop = match.group("op"), match.group("inop")
    if kind in ("tags", "tag"):
        if op is None:
            raise Unsupported(f"{inop} on a tag")
        table, owner, column = ("tags", "run_uuid", "r.run_uuid") if entity == "run" else \
            ("experiment_tags", "experiment_id", "e.experiment_id")
        return _Where(f"EXISTS (SELECT 1 FROM {table} t WHERE t.{owner} = {column} AND t.key = ? "
                      f"AND t.value {op} ?)", (key, _literal(match, "v")))
    attributes = _RUN_ATTRIBUTES if entity == "run" else {"name": "name"}
    if key not in attributes:
        raise Unsupported(f"attribute {key}")
    column = f"{'r' if entity == 'run' else 'e'}.{attributes[key]}"
    if op is not None:
        return _Where(f"{column} {op} ?", (_literal(match, "v"),))
    if key != "run_id":
        raise Unsupported(f"{inop} on {key}")
    items_text = match.group("items")
    items: list[str] = []
    position = 0
    while position < len(items_text):
        item = _ITEM.match(items_text, position)
        if item is None or item.end() == position:
            raise Unsupported(f"list {items_text!r}")
        items.append(_literal(item, "i"))
        position = item.end()
    if not items:
        raise Unsupported("an empty list")
    negated = "NOT " if inop.lower().startswith("not") else ""
    return _Where(f"{column} {negated}IN ({', '.join('?' * len(items))})", tuple(items))


def parse_filter(filter_string: str, entity: str = "run") -> _Where:
    """``filter_string`` (MLflow's search syntax) as SQL; ``Unsupported`` for anything this module does not
    read exactly as MLflow would."""
    if not filter_string.strip():
        return _Where("1", ())
    parts = [_clause(part, entity) for part in _AND.split(filter_string.strip())]
    return _Where(" AND ".join(f"({p.sql})" for p in parts), tuple(a for p in parts for a in p.args))


def parse_order(order_by: Sequence[str]) -> str:
    """``ORDER BY`` of MLflow's run search: as asked (only ``start_time``), missing start times last, then
    ``start_time DESC`` when not asked, then ``run_uuid``."""
    if len(order_by) > 1:
        raise Unsupported(f"order by {list(order_by)}")
    direction = "DESC"
    if order_by:
        match = _ORDER.match(order_by[0])
        if match is None:
            raise Unsupported(f"order by {order_by[0]!r}")
        direction = (match.group("dir") or "ASC").upper()
    return f"(r.start_time IS NULL), r.start_time {direction}, r.run_uuid"


def _time(value: Any) -> int | None:
    return int(value) if value is not None else None


class SqliteSearch:
    """``search_experiments``, ``search_runs`` and ``experiment_by_name`` of one MLflow sqlite file, read-only."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.reads = 0  # searches answered (for tests: the client was not asked)

    def _snapshot(self) -> Any:
        return self.snapshot(KNOWN_REVISIONS)

    @contextmanager
    def snapshot(self, revisions: Collection[str]) -> Iterator[sqlite3.Connection | None]:
        """One read transaction on the store (None: there is no store yet); ``UnknownSchema`` when the store
        was written by an MLflow release whose tables the reader was not checked against (``revisions``)."""
        if self.db_path.is_dir():  # one line, as on writes (a stat: the file itself is never opened here, for
            # closing any descriptor of it would drop the POSIX locks this process's sqlite connections hold)
            raise TrackingError(f"{self.db_path}: a directory, not an SQLite database (the MLflow store)")
        if not self.db_path.exists() and not self.db_path.is_symlink():
            yield None
            return
        uri = self.db_path.resolve().as_uri() + "?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=_BUSY_SECONDS, isolation_level=None,
                                     check_same_thread=False)) as conn:
            conn.execute("BEGIN")
            try:
                try:
                    rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
                except sqlite3.OperationalError as exc:  # no such table: being created (or not MLflow's)
                    raise UnknownSchema(f"no schema revision ({exc})") from exc
                found = {str(row[0]) for row in rows}
                if len(found) != 1 or not found <= set(revisions):
                    raise UnknownSchema(f"schema revision {sorted(found)} is not one of {sorted(revisions)}")
                self.reads += 1
                yield conn
            finally:
                conn.execute("ROLLBACK")

    # -- experiments -------------------------------------------------------------------------------------

    def _experiments(self, conn: sqlite3.Connection, where: _Where) -> list[Experiment]:
        rows = conn.execute(f"SELECT e.experiment_id, e.name, e.lifecycle_stage FROM experiments e "
                            f"WHERE ({where.sql}) ORDER BY e.creation_time DESC, e.experiment_id ASC",
                            where.args).fetchall()
        tags: dict[str, dict[str, str]] = {str(row[0]): {} for row in rows}
        for experiment_id, key, value in conn.execute("SELECT experiment_id, key, value FROM experiment_tags"):
            if str(experiment_id) in tags:
                tags[str(experiment_id)][str(key)] = str(value or "")
        return [Experiment(str(i), str(name), str(stage), tags[str(i)]) for i, name, stage in rows]

    def search_experiments(self, filter_string: str) -> list[Experiment]:
        """Every active experiment matching ``filter_string``."""
        where = parse_filter(filter_string, "experiment")
        with self._snapshot() as conn:
            if conn is None:
                return []
            return self._experiments(conn, _Where(f"e.lifecycle_stage = 'active' AND ({where.sql})", where.args))

    def experiment_by_name(self, name: str) -> Experiment | None:
        """The experiment called ``name`` (active or deleted), or None."""
        with self._snapshot() as conn:
            if conn is None:
                return None
            found = self._experiments(conn, _Where("e.name = ?", (name,)))
            return found[0] if found else None

    # -- runs --------------------------------------------------------------------------------------------

    def experiment_of_run(self, run_id: str) -> str | None:
        """The experiment id of run ``run_id`` (deleted or not, as ``get_run``), or None when there is none."""
        with self._snapshot() as conn:
            if conn is None:
                return None
            row = conn.execute("SELECT experiment_id FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
            return str(row[0]) if row else None

    def run_by_id(self, run_id: str) -> Run | None:
        """Run ``run_id`` (deleted or not, as ``get_run``) with its tags, params and latest metrics, or None."""
        with self._snapshot() as conn:
            if conn is None:
                return None
            rows = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_uuid = ?", (run_id,)).fetchall()
            return self._runs(conn, rows)[0] if rows else None

    def artifact_dir(self, run_id: str) -> Path | None:
        """The local directory of run ``run_id``'s artifacts (its ``artifact_uri``, a ``file:`` URI or an
        absolute path, as the embedded store's artifact root gives); None when the run is not in the store or
        its artifacts are elsewhere (a proxied or remote store: MLflow's client reads those)."""
        with self._snapshot() as conn:
            if conn is None:
                return None
            row = conn.execute("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
        if row is None or not isinstance(row[0], str):
            return None
        return local_path(row[0])

    def run_pages(self, experiment_ids: Sequence[str], filter_string: str, order_by: Sequence[str],
                  page: int = 1000) -> Generator[list[Run], None, None]:
        """Every active run of ``experiment_ids`` matching ``filter_string``, in ``order_by`` order, ``page``
        runs at a time, all from one snapshot. ``Unsupported`` before the first page, or never."""
        where, order = parse_filter(filter_string), parse_order(order_by)
        ids = [int(i) for i in experiment_ids if str(i).isdigit()]
        if len(ids) != len(experiment_ids):
            raise Unsupported(f"experiment ids {list(experiment_ids)}")
        return self._pages(ids, where, order, page)

    def _pages(self, ids: list[int], where: _Where, order: str, page: int) -> Generator[list[Run], None, None]:
        if not ids:
            return
        with self._snapshot() as conn:
            if conn is None:
                return
            sql = (f"SELECT {_RUN_COLUMNS} FROM runs r WHERE r.lifecycle_stage = 'active' "
                   f"AND r.experiment_id IN ({', '.join('?' * len(ids))}) AND ({where.sql}) "
                   f"ORDER BY {order} LIMIT ? OFFSET ?")
            offset = 0
            while True:
                rows = conn.execute(sql, (*ids, *where.args, page, offset)).fetchall()
                if rows:
                    yield self._runs(conn, rows)
                if len(rows) < page:
                    return
                offset += page

    def search_runs(self, experiment_ids: Sequence[str], filter_string: str, order_by: Sequence[str],
                    page: int = 1000) -> list[Run]:
        """Every active run matching (see ``run_pages``), as one list."""
        return [run for part in self.run_pages(experiment_ids, filter_string, order_by, page) for run in part]

    @staticmethod
    def _runs(conn: sqlite3.Connection, rows: list[Any]) -> list[Run]:
        ids = [str(row[0]) for row in rows]
        tags: dict[str, dict[str, str]] = {i: {} for i in ids}
        params: dict[str, dict[str, str]] = {i: {} for i in ids}
        metrics: dict[str, dict[str, float]] = {i: {} for i in ids}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            for run_id, key, value in conn.execute(
                    f"SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({marks})", chunk):
                tags[run_id][str(key)] = str(value or "")
            for run_id, key, value in conn.execute(
                    f"SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({marks})", chunk):
                params[run_id][str(key)] = str(value or "")
            for run_id, key, value, is_nan in conn.execute(
                    f"SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN ({marks})", chunk):
                metrics[run_id][str(key)] = float("nan") if is_nan else float(value)
        return [Run(RunInfo(i, str(experiment_id), str(status), _time(start), _time(end), str(stage)),
                    RunData(tags[i], params[i], metrics[i]))
                for (i, experiment_id, status, start, end, stage) in ((str(r[0]), *r[1:]) for r in rows)]


__all__ = [
    "KNOWN_REVISIONS",
    "SqliteSearch",
    "UnknownSchema",
    "Unsupported",
    "parse_filter",
    "parse_order",
    "usable",
]
