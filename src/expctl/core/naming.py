"""Deterministic identities: experiment names, run keys and RFC 1035 object names.

Pure: hashing and string rules only.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable

# An experiment name is its path under experiments/ without the extension: segments separated by "/".
_SEGMENT = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")
_RFC1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

# Object names leave room for the names operators derive from them ("<job>-worker-123" services,
# JobSet pods), so a job name stays well under the 63-character label limit.
MAX_NAME = 47
_HASH_LEN = 10


def experiment_name_error(name: str) -> str | None:
    """Why ``name`` is not a valid experiment name, or None when it is."""
    if not name:
        return "experiment name is empty"
    for segment in name.split("/"):
        if not _SEGMENT.match(segment):
            return (
                f"invalid experiment name {name!r}: each path segment must start with a lowercase letter "
                "and contain only lowercase letters, digits and '-' (RFC 1035)"
            )
    if len(slug(name)) > 63:
        return f"invalid experiment name {name!r}: longer than 63 characters"
    return None


def slug(experiment: str) -> str:
    """The experiment's name as one RFC 1035 label (``team-a/resnet`` → ``team-a-resnet``)."""
    return experiment.replace("/", "-")


def canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_key(experiment: str, overrides: Iterable[str]) -> str:
    """Stable identity of a sweep point: experiment name plus its sorted override set."""
    return sha256_hex(canonical_json({"experiment": experiment, "overrides": sorted(overrides)}))[:32]


def run_name(experiment: str, key: str) -> str:
    """``<experiment-slug>-<point-hash>``, truncated so that attempt suffixes still fit in MAX_NAME."""
    room = MAX_NAME - _HASH_LEN - 1 - len("-r99")
    base = slug(experiment)[:room].rstrip("-")
    return f"{base}-{key[:_HASH_LEN]}"


def attempt_name(name: str, attempt: int) -> str:
    """Attempt 1 keeps the base name; retries get ``-r<n>`` so they never collide with the failed object."""
    return name if attempt <= 1 else f"{name}-r{attempt}"


def is_rfc1035(name: str) -> bool:
    return len(name) <= 63 and bool(_RFC1035.match(name))
