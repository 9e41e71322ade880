"""Read a batch's source into items: local paths and globs (``os.scandir``), or fsspec URLs.

Data types: ``folders`` (each file is an item labelled by its parent folder), ``csv`` / ``parquet`` (each row is
an item) and ``jsonl`` (each line's record is an item). File hashes and parsed rows are cached by path, size
and mtime (``cache``), so an unchanged file is stat'ed, not read. Every problem is a ``DataError``.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from expctl.core import bounded, safe_json
from expctl.core.errors import ExpctlError
from expctl.core.naming import canonical_json
from expctl.core.sanitize import data_location, one_line, redact
from expctl.data import local_files
from expctl.data.cache import HashCache
from expctl.data.declare import Dataset
from expctl.data.local_files import ListingError
from expctl.data.manifest import Item

_GLOB_CHARS = set("*?[")
_SMALL = 1 << 20
MAX_FILES = 1_000_000  # files in one source: more is a walk or a glob that went wrong
LINE_LIMIT = 16 << 20  # bytes in one line of a jsonl file


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


def _relative(path: str, prefix: str) -> str:
    """``path`` relative to ``prefix`` (an absolute directory ending in a separator), '/'-separated."""
    absolute = path if os.path.isabs(path) else os.path.abspath(path)
    rel = absolute[len(prefix):] if absolute.startswith(prefix) else os.path.relpath(absolute, prefix)
    return rel.replace(os.sep, "/") if os.sep != "/" else rel


def _local_entries(location: str) -> tuple[str, list[Entry]]:
    try:
        return _listed(location)
    except ListingError as exc:
        raise DataError(one_line(str(exc))) from exc
    except OSError as exc:  # a dangling link, a directory that cannot be read: one line, as for a file
        where = f"{one_line(exc.filename)}: " if exc.filename and exc.filename != location else ""
        raise DataError(f"{one_line(location)}: cannot list: {where}{exc.strerror or exc}") from exc


def _listed(location: str) -> tuple[str, list[Entry]]:
    base, pattern = _split_glob(location)
    if pattern is not None:
        stats = local_files.matching(base, pattern[len(base.rstrip("/")) + 1:])
        if not stats:
            raise DataError(f"{one_line(location)}: matches no files")
    elif os.path.isdir(location):
        stats = [local_files.regular(e.path, e.stat()) for e in local_files.walk(location)]
    elif os.path.exists(location):
        base = os.path.dirname(location)
        stats = [local_files.regular(location, os.stat(location))]
    else:
        raise DataError(f"{one_line(location)}: no such file or directory")
    if len(stats) > MAX_FILES:
        raise DataError(f"{one_line(location)}: more than {MAX_FILES} files (a walk that should have ended?)")
    prefix = os.path.join(os.path.abspath(base), "")
    entries = [Entry(p, _relative(p, prefix), s.st_size, str(s.st_mtime_ns)) for p, s in stats]
    return base, sorted(entries, key=lambda e: e.rel)


def _shown(location: str, text: str | None = None) -> str:
    """``text`` (default: the location) as an error line may hold it: without the URL's credentials, one line."""
    shown = data_location(location)
    return one_line(redact((text or location).replace(location, shown)))


def _bare(path: str) -> str:
    """An http(s) path (a whole URL) without its query and fragment: a signed URL's token is no file name."""
    return path.split("#", 1)[0].split("?", 1)[0] if "://" in path else path


def _remote_entries(location: str) -> tuple[str, list[Entry]]:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(location)
    except (ImportError, ValueError) as exc:
        raise DataError(f"{_shown(location)}: no fsspec filesystem for it ({_shown(location, str(exc))})") from exc
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
            base, found = _bare(path).rsplit("/", 1)[0], {path: fs.info(path)}
        else:
            raise DataError(f"{_shown(location)}: no such file or directory")
    except OSError as exc:
        raise DataError(f"{_shown(location)}: cannot list: {_shown(location, str(exc))}") from exc
    files = {p: info for p, info in found.items() if info.get("type") == "file"}
    if not files:
        raise DataError(f"{_shown(location)}: matches no files")
    if len(files) > MAX_FILES:
        raise DataError(f"{_shown(location)}: more than {MAX_FILES} files")
    entries = []
    root = _bare(base).rstrip("/") + "/"
    for p, info in sorted(files.items()):
        stamp = next((str(info[k]) for k in ("mtime", "LastModified", "ETag", "etag", "md5Hash", "created")
                      if info.get(k) is not None), "")
        bare = _bare(p)
        rel = bare[len(root):] if bare.startswith(root) else bare.rsplit("/", 1)[-1]
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


@contextlib.contextmanager
def _opened(entry: Entry) -> Iterator[IO[bytes]]:
    """The entry's file, open for binary reading: a local one only when it is (still) a regular file."""
    try:
        if is_url(entry.location):
            import fsspec

            with fsspec.open(entry.location, "rb") as fh:
                yield fh
        else:
            with bounded.open_regular(entry.location, None, "a data file") as fh:
                yield fh
    except OSError as exc:
        raise DataError(f"{one_line(entry.rel)}: cannot read: {_shown(entry.location, exc.strerror or str(exc))}") \
            from exc
    except ExpctlError as exc:
        raise DataError(f"{one_line(entry.rel)}: {exc.message}") from exc


def _file_hash(entry: Entry) -> str:
    """The file's SHA-256, read in chunks (a small file in one read): never the whole of a big file at once."""
    digest = hashlib.sha256()
    with _opened(entry) as fh:
        while chunk := fh.read(_SMALL):
            digest.update(chunk)
    return digest.hexdigest()


def _jsonl(fh: IO[bytes], rel: str) -> Iterator[dict[str, Any]]:
    for number, raw in bounded.lines(fh, LINE_LIMIT, rel):
        line = raw.decode("utf-8")
        if not line.strip():
            continue
        try:
            record = safe_json.loads(line)
        except ValueError as exc:
            raise DataError(f"{one_line(rel)}: cannot read: line {number} is not JSON ({exc})") from exc
        if not isinstance(record, dict):
            raise DataError(f"{one_line(rel)}: cannot read: line {number} is not a JSON object")
        yield record


def _records(fmt: str, entry: Entry) -> Iterator[dict[str, Any]]:
    """The file's records, streamed: only one row (a parquet row group) is in memory at a time."""
    with _opened(entry) as fh:
        try:
            if fmt == "csv":
                text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
                for row in csv.DictReader(text):
                    yield dict(row)
            elif fmt == "parquet":
                import pyarrow.parquet as pq

                for batch in pq.ParquetFile(fh).iter_batches():
                    yield from batch.to_pylist()
            else:
                yield from _jsonl(fh, entry.rel)
        except DataError:
            raise
        except ExpctlError as exc:  # a line too long
            raise DataError(f"{one_line(entry.rel)}: cannot read: {exc.message}") from exc
        except Exception as exc:  # a corrupt file: csv, UTF-8 and pyarrow each have their own errors
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"{one_line(entry.rel)}: cannot read as {fmt}: {one_line(first)}") from exc


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
