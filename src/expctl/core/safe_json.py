"""JSON that expctl did not necessarily write itself — saved plans, state and record files, object annotations,
MLflow tags — read so that damage or tampering is a ``ValueError`` (or a default), never another exception.

``json.loads`` raises ``RecursionError`` on deeply nested input (``[[[[…`` a few thousand levels deep), which
a caller catching ``ValueError`` for malformed JSON would let escape as a traceback; ``loads`` turns it into a
``ValueError``. ``string_list``, ``string_map`` and ``integer`` read a value of an expected shape and fall back
to a default when it has another one (a hand-edited annotation or tag must not stop an observe).
"""

from __future__ import annotations

import json
from typing import Any


def loads(text: str | bytes) -> Any:
    """``json.loads``; malformed or too deeply nested input raises ``ValueError``."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def string_list(text: str | None) -> tuple[str, ...]:
    """A JSON list of strings (overrides in an annotation or a tag); ``()`` when absent or of another shape."""
    try:
        value = loads(text) if text else []
    except ValueError:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return ()
    return tuple(value)


def string_map(text: str | None) -> dict[str, str]:
    """A JSON object of strings to strings; ``{}`` when absent or of another shape."""
    try:
        value = loads(text) if text else {}
    except ValueError:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        return {}
    return value


def integer(text: str | None, default: int) -> int:
    """A decimal integer written as text (an annotation or a tag); ``default`` when absent or not one."""
    try:
        return int(str(text).strip()) if text is not None else default
    except ValueError:
        return default
