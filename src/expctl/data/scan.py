"""Read a batch's source into items: local paths and globs (``os.scandir``), or fsspec URLs.

Data types: ``folders`` (each file is an item labelled by its parent folder), ``csv`` / ``parquet`` (each row is
an item) and ``jsonl`` (each line's record is an item). File hashes and parsed rows are cached by path, size
and mtime (``cache``), so an unchanged file is stat'ed, not read. Every problem is a ``DataError``.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from expctl.core import safe_json
from expctl.core.naming import canonical_json
from expctl.core.sanitize import data_location
from expctl.data.cache import HashCache
from expctl.data.declare import Dataset
from expctl.data.manifest import Item

_GLOB_CHARS = set("*?[")
_SMALL = 1 << 20


class DataError(Exception):
    """A dataset source cannot be read as declared (the message names what and why, in one line)."""


@dataclass(frozen=True)
class Entry:
    """One file of a source: where it is, its path relative to the batch root, and what says it changed."""

    location: str  # absolute local path or full URL
    rel: str
    size: int
    stamp: str  # mtime in ns (local) or the store's version/mtime (fsspec); "" when unknown: never cached


def is_url(source: str) -> bool:
    return "://" in source


def locate(source: str, data_root: str) -> str:
    """The source as an absolute path or URL: relative sources are under the data root."""
    if is_url(source) or os.path.isabs(source):
        return source
    if is_url(data_root):
        return data_root.rstrip("/") + "/" + source
    return os.path.normpath(os.path.join(data_root, source))


def _split_glob(location: str) -> tuple[str, str | None]:
    """(base directory, glob pattern or None)."""
    parts = location.split("/")
    for i, part in enumerate(parts):
        if _GLOB_CHARS & set(part):
            return "/".join(parts[:i]) or "/", location
    return location, None


def _walk(base: str) -> Iterator[os.DirEntry[str]]:
    stack = [(base, frozenset([_identity(os.stat(base))]))]  # each directory with those above it
    while stack:
        path, above = stack.pop()
        with os.scandir(path) as it:
            for entry in it:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=True):
                    if _identity(entry.stat()) in above:  # a link to a directory it is in: walked forever
                        raise DataError(f"{entry.path}: a symbolic link loop (a link to a directory it is in)")
                    stack.append((entry.path, above | {_identity(entry.stat())}))
                else:
                    yield entry


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _regular(path: str, st: os.stat_result) -> tuple[str, os.stat_result]:
    """A file to read: a FIFO would block the scan forever, a device (/dev/zero) never end."""
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{path}: not a regular file (a FIFO, socket or device): a dataset is made of files")
    return path, st


def _relative(path: str, prefix: str) -> str:
    """``path`` relative to ``prefix`` (an absolute directory ending in a separator), '/'-separated."""
    absolute = path if os.path.isabs(path) else os.path.abspath(path)
    rel = absolute[len(prefix):] if absolute.startswith(prefix) else os.path.relpath(absolute, prefix)
    return rel.replace(os.sep, "/") if os.sep != "/" else rel


def _local_entries(location: str) -> tuple[str, list[Entry]]:
    try:
        return _listed(location)
    except OSError as exc:  # a dangling link, a directory that cannot be read: one line, as for a file
        where = f"{exc.filename}: " if exc.filename and exc.filename != location else ""
        raise DataError(f"{location}: cannot list: {where}{exc.strerror or exc}") from exc


def _listed(location: str) -> tuple[str, list[Entry]]:
    base, pattern = _split_glob(location)
    if pattern is not None:
        paths = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        if not paths:
            raise DataError(f"{location}: matches no files")
        stats = [_regular(p, os.stat(p)) for p in paths]
    elif os.path.isdir(location):
        stats = [_regular(e.path, e.stat()) for e in _walk(location)]
    elif os.path.exists(location):
        base = os.path.dirname(location)
        stats = [_regular(location, os.stat(location))]
    else:
        raise DataError(f"{location}: no such file or directory")
    prefix = os.path.join(os.path.abspath(base), "")
    entries = [Entry(p, _relative(p, prefix), s.st_size, str(s.st_mtime_ns)) for p, s in stats]
    return base, sorted(entries, key=lambda e: e.rel)


def _remote_entries(location: str) -> tuple[str, list[Entry]]:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(location)
    except (ImportError, ValueError) as exc:
        raise DataError(f"{location}: no fsspec filesystem for it ({exc})") from exc
    # what fsspec's paths lack of the URL: "s3://" (the bucket is in the path), "ftp://host" (the host is not),
    # "" for http (its paths are whole URLs)
    at = location.find(path)
    prefix = location[:at] if at >= 0 else location.split("://", 1)[0] + "://"
    base, pattern = _split_glob(path)
    try:
        if pattern is not None:
            found = fs.glob(pattern, detail=True)
        elif fs.isdir(path):
            found = fs.find(path, detail=True)
        elif fs.exists(path):
            base, found = path.rsplit("/", 1)[0], {path: fs.info(path)}
        else:
            raise DataError(f"{location}: no such file or directory")
    except OSError as exc:
        raise DataError(f"{location}: cannot list: {exc}") from exc
    files = {p: info for p, info in found.items() if info.get("type") == "file"}
    if not files:
        raise DataError(f"{location}: matches no files")
    entries = []
    for p, info in sorted(files.items()):
        stamp = next((str(info[k]) for k in ("mtime", "LastModified", "ETag", "etag", "md5Hash", "created")
                      if info.get(k) is not None), "")
        rel = p[len(base.rstrip("/")) + 1:] if p.startswith(base.rstrip("/") + "/") else p.rsplit("/", 1)[-1]
        entries.append(Entry(_joined(prefix, p), rel, int(info.get("size") or 0), stamp))
    return _joined(prefix, base), entries


def _joined(prefix: str, path: str) -> str:
    """A listed path as a URL fsspec opens again."""
    if "://" in path or not prefix:
        return path
    return prefix + path if prefix.endswith("://") or path.startswith("/") else f"{prefix}/{path}"


def list_entries(source: str, data_root: str) -> tuple[str, list[Entry]]:
    """The batch root and every file of a source, sorted by relative path."""
    location = locate(source, data_root)
    if is_url(location) and not location.startswith("file://"):
        return _remote_entries(location)
    return _local_entries(location.removeprefix("file://"))


def _read(entry: Entry) -> bytes:
    try:
        if is_url(entry.location):
            import fsspec

            with fsspec.open(entry.location, "rb") as fh:
                data: bytes = fh.read()
                return data
        with open(entry.location, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise DataError(f"{entry.rel}: cannot read: {exc.strerror or exc}") from exc


def _file_hash(entry: Entry) -> str:
    if is_url(entry.location):
        return hashlib.sha256(_read(entry)).hexdigest()
    try:
        with open(entry.location, "rb") as fh:
            if entry.size <= _SMALL:  # one read: file_digest's 256 KiB buffer per call costs more than the file
                return hashlib.sha256(fh.read()).hexdigest()
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError as exc:
        raise DataError(f"{entry.rel}: cannot read: {exc.strerror or exc}") from exc


def _records(fmt: str, entry: Entry) -> list[dict[str, Any]]:
    data = _read(entry)
    try:
        if fmt == "csv":
            return [dict(row) for row in csv.DictReader(io.StringIO(data.decode("utf-8")))]
        if fmt == "parquet":
            import pyarrow.parquet as pq

            rows: list[dict[str, Any]] = pq.read_table(io.BytesIO(data)).to_pylist()
            return rows
        records = []
        for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = safe_json.loads(line)
            except ValueError as exc:
                raise DataError(f"{entry.rel}: cannot read: line {number} is not JSON ({exc})") from exc
            if not isinstance(record, dict):
                raise DataError(f"{entry.rel}: cannot read: line {number} is not a JSON object")
            records.append(record)
        return records
    except DataError:
        raise
    except Exception as exc:  # a corrupt file: csv, UTF-8 and pyarrow each have their own errors
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{entry.rel}: cannot read as {fmt}: {first}") from exc


def _row_items(decl: Dataset, batch: str, entry: Entry, cache: HashCache) -> list[Item]:
    kind = f"rows:{decl.format}:{decl.label}:{','.join(decl.meta)}"
    cached = cache.get(kind, data_location(entry.location), entry.size, entry.stamp)
    if cached is not None:
        rows = json.loads(cached)
    else:
        rows = []
        for record in _records(decl.format, entry):
            text = canonical_json(record).encode("utf-8")
            label = record.get(decl.label) if decl.label else None
            rows.append([len(text), hashlib.sha256(text).hexdigest(), None if label is None else str(label),
                         [[k, record.get(k)] for k in decl.meta]])
        cache.put(kind, data_location(entry.location), entry.size, entry.stamp, json.dumps(rows))
    return [Item(batch, entry.rel, size, digest, label, tuple((k, v) for k, v in meta), row=index)
            for index, (size, digest, label, meta) in enumerate(rows)]


SUFFIXES = {"csv": (".csv",), "parquet": (".parquet", ".pq"), "jsonl": (".jsonl", ".ndjson", ".json")}


def batch_items(decl: Dataset, batch: str, entries: list[Entry], cache: HashCache) -> list[Item]:
    """The items of one batch's files, as its data type defines them (tables: only files with their suffix)."""
    if decl.format != "folders":
        suffixes = SUFFIXES[decl.format]
        tables = [e for e in entries if e.rel.lower().endswith(suffixes)]
        if not tables:
            raise DataError(f"no {'/'.join(suffixes)} files among {len(entries)} files")
        return [item for entry in tables for item in _row_items(decl, batch, entry, cache)]
    items = []
    for entry in entries:
        digest = cache.get("sha256", data_location(entry.location), entry.size, entry.stamp)
        if digest is None:
            digest = _file_hash(entry)
            cache.put("sha256", data_location(entry.location), entry.size, entry.stamp, digest)
        folder = entry.rel.rsplit("/", 1)[0] if "/" in entry.rel else None
        label = folder.rsplit("/", 1)[-1] if folder else None
        items.append(Item(batch, entry.rel, entry.size, digest, label))
    return items
