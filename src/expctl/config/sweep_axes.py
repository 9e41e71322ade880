"""A sweep's axes as data, and how one point's values go onto a composed config: pure, no Hydra.

``Axis`` is one key of ``hydra.sweeper.params`` as ``compose`` parsed it; ``simple_element_value`` reads the
value of a plain element without Hydra's parser. A point's swept values are set on the composition of its
group options with ``set_path`` (only the spine copied, mappings merged as Hydra's value overrides merge);
``depends_on_sweep`` says when an interpolation could change with a swept value, so the point must be
resolved again with OmegaConf.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from expctl.config.prescan import leaves

_TOKEN = re.compile(r"[A-Za-z_][\w\-]*")
# A sweep element's value that Hydra's override grammar reads as one INT token (without '_') or one ID token
# that is not a keyword (bool, null, inf, nan): its value is int(text) or text. Parsing each of 10,000
# ``range()`` elements with Hydra's parser costs seconds; these two cases cover ranges and plain choices.
_SIMPLE_INT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
_SIMPLE_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_KEYWORDS = frozenset({"true", "false", "null", "inf", "nan"})


@dataclass(frozen=True)
class Axis:
    """One key of ``hydra.sweeper.params``: its override strings (as BasicSweeper makes them) and values."""

    key: str  # as written, with any +/++ prefix
    path: str  # config path (value axis) or group name (group axis)
    group: bool
    sweep: bool  # a sweep (part of the run key) rather than a single value
    elements: tuple[str, ...]  # "key=value" strings, in Hydra's order
    values: tuple[Any, ...]  # typed values (value axis) or option names (group axis)
    add: str = ""  # "", "+" or "++"


def simple_element_value(element: str, group: bool) -> Any:
    """The value of a sweep element ``key=value`` when ``value`` is a plain int or word (see ``_SIMPLE_INT``),
    as Hydra's parser would give it (``value()``, or ``get_value_string()`` for a group); None otherwise."""
    _, sep, text = element.partition("=")
    if not sep:
        return None
    if _SIMPLE_INT.fullmatch(text):
        return text if group else int(text)
    if _SIMPLE_ID.fullmatch(text) and text.lower() not in _KEYWORDS:
        return text
    return None


def exists(data: Any, path: str) -> bool:
    """Whether the dotted ``path`` is a key of ``data``."""
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def set_path(data: dict[str, Any], parts: list[str], value: Any) -> dict[str, Any]:
    """A copy of ``data`` with ``parts`` set to ``value``: only the spine is copied, the rest is shared.

    Like Hydra's value overrides, a mapping merges into an existing mapping.
    """
    head, rest = parts[0], parts[1:]
    out = dict(data)
    if rest:
        child = data.get(head)
        out[head] = set_path(child if isinstance(child, dict) else {}, rest, value)
    elif isinstance(value, dict) and isinstance(data.get(head), dict):
        merged = data[head]
        for k, v in value.items():
            merged = set_path(merged, [k], v)
        out[head] = merged
    else:
        out[head] = value
    return out


def depends_on_sweep(data: dict[str, Any], axes: Sequence[Axis]) -> bool:
    """Conservatively: could any interpolation's value change with a swept value?"""
    names = {part for a in axes if not a.group for part in a.path.split(".")}
    if not names:
        return False
    interps = [(k, v) for k, v in leaves(data, "") if isinstance(v, str) and "${" in v]
    changed = True
    flagged: set[str] = set()
    while changed:
        changed = False
        for key, text in interps:
            if key not in flagged and (set(_TOKEN.findall(text)) & names or ".." in text or "${." in text):
                flagged.add(key)
                names.update(re.split(r"[.\[\]]", key))
                changed = True
    return bool(flagged)
