"""Read a file expctl did not just write: a regular file only, and at most a given number of bytes.

``open_regular`` opens without blocking (a FIFO would hang ``open``), refuses anything that is not a regular file
(a FIFO, a socket, a device such as ``/dev/zero`` that never ends) and a file larger than the limit, before
reading a byte; ``read_bytes`` / ``read_text`` read it whole (still stopping at the limit, for a file that grows
while read). ``read_lines`` streams a big file line by line, each line bounded. Every refusal is an
``ExpctlError`` of one line naming the file; a file that cannot be opened (missing, no permission) is the
``OSError`` of ``open``, for the caller to word (or to treat "missing" as "none").
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from expctl.core.errors import ExpctlError
from expctl.core.sanitize import one_line

MiB = 1 << 20


class NotRegular(ExpctlError):
    """The path is a FIFO, a socket, a device or a directory: nothing expctl reads as a file."""


class TooLarge(ExpctlError):
    """The file holds more bytes than the reader allows."""


def _name(path: str | Path) -> str:
    return one_line(os.fsdecode(path))


def open_regular(path: str | Path, limit: int | None, what: str) -> IO[bytes]:
    """``path`` opened for reading (binary, blocking reads), after checking that it is a regular file of at most
    ``limit`` bytes (None: any size). ``what`` says what the file should be ("a saved plan")."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO, socket or device"
            raise NotRegular(f"not a regular file ({kind}), so not {what}", file=_name(path))
        if limit is not None and st.st_size > limit:
            raise TooLarge(f"{st.st_size} bytes: more than the {limit} bytes {what} may have", file=_name(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | Path, limit: int, what: str) -> bytes:
    """The whole regular file ``path``, refused when it is (or grows to) more than ``limit`` bytes."""
    with open_regular(path, limit, what) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"more than the {limit} bytes {what} may have (it grew while read)", file=_name(path))
    return data


def read_text(path: str | Path, limit: int, what: str, errors: str = "strict") -> str:
    """``read_bytes`` decoded as UTF-8 (``errors="replace"`` for logs); bad UTF-8 with ``strict`` is one line."""
    data = read_bytes(path, limit, what)
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        raise ExpctlError(f"not UTF-8 text (byte {exc.start}), so not {what}", file=_name(path)) from exc


def lines(fh: IO[bytes], line_limit: int, name: str) -> Iterator[tuple[int, bytes]]:
    """``(number, line)`` of an open binary file, streamed; a line longer than ``line_limit`` is refused."""
    number = 0
    while True:
        raw = fh.readline(line_limit + 1)
        if not raw:
            return
        number += 1
        if len(raw) > line_limit and not raw.endswith(b"\n"):
            raise TooLarge(f"line {number} is longer than {line_limit} bytes", file=one_line(name))
        yield number, raw
