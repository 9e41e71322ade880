"""List a local dataset source: a file, a directory, or a glob — a walk that always ends and counts each file once.

Globs are matched against the paths of one walk of their base directory (``glob.glob`` follows directory links
with no loop check: a link to a parent multiplies the items, two of them never finish). The walk refuses a link
to a directory it is in (a loop), and a file reached twice through different links is listed once, under its
first path in walk order. Hidden names (``.x``) are skipped, as ``glob`` does. Every file must be a regular
file: a FIFO would block a scan forever, a device never end.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Iterator


class ListingError(Exception):
    """A local source cannot be listed (the message names the path and why, in one line)."""


def identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def walk(base: str) -> Iterator[os.DirEntry[str]]:
    """Every non-hidden file under ``base`` (links followed), each once; a link loop is a ``ListingError``."""
    stack = [(base, frozenset([identity(os.stat(base))]))]  # each directory with those above it
    seen: set[tuple[int, int]] = set()
    while stack:
        path, above = stack.pop()
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name, reverse=True)  # popped in name order: a stable "first"
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=True):
                ident = identity(entry.stat())
                if ident in above:  # a link to a directory it is in: walked forever
                    raise ListingError(f"{entry.path}: a symbolic link loop (a link to a directory it is in)")
                if ident in seen:  # reached before through another link: its files are listed already
                    continue
                seen.add(ident)
                stack.append((entry.path, above | {ident}))
            else:
                ident = identity(entry.stat())
                if ident not in seen:
                    seen.add(ident)
                    yield entry


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex of a '/'-separated glob relative to its base: ``**`` is any number of directories, ``*`` and
    ``?`` stay within one name, ``[...]`` as ``fnmatch``; a name starting with '.' is never matched by a wildcard."""
    parts = []
    segments = pattern.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "**":
            parts.append("(?:[^/.][^/]*/)*" if not last else "(?:[^/.][^/]*/)*[^/.][^/]*")
            continue
        body = _segment(segment)
        guard = "(?!\\.)" if not segment.startswith(".") else ""
        parts.append(guard + body + ("" if last else "/"))
    return re.compile("".join(parts), re.DOTALL)


def _segment(segment: str) -> str:
    """One name's glob as a regex that never crosses a '/'."""
    out, i = [], 0
    while i < len(segment):
        ch = segment[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[" and segment.find("]", i + 2) != -1:
            end = segment.find("]", i + 2)
            cls = fnmatch.translate(segment[i:end + 1])  # "(?s:[...])\Z": the class, as fnmatch reads it
            out.append(cls[cls.index("[") : cls.rindex("]") + 1].replace("/", "") or "(?!)")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def regular(path: str, st: os.stat_result) -> tuple[str, os.stat_result]:
    """``(path, st)`` of a file to read; a FIFO, socket or device is a ``ListingError``."""
    if not stat.S_ISREG(st.st_mode):
        raise ListingError(f"{path}: not a regular file (a FIFO, socket or device): a dataset is made of files")
    return path, st


def matching(base: str, pattern: str) -> list[tuple[str, os.stat_result]]:
    """Every file under ``base`` whose path relative to it matches ``pattern`` (relative too), with its stat."""
    regex = glob_regex(pattern)
    if not os.path.isdir(base):
        return []
    found = []
    for entry in walk(base):
        rel = os.path.relpath(entry.path, base).replace(os.sep, "/")
        if regex.fullmatch(rel):
            found.append(regular(entry.path, entry.stat()))
    return sorted(found)
