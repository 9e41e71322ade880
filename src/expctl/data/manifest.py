"""A dataset's manifest: every item (path, size, content hash, label, metadata, split) in canonical order.

Pure: values in, values out. The digest covers only what the items are — paths relative to their batch's
root, never where the root is — so the same files give the same digest on every machine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from expctl.core.naming import canonical_json, sha256_hex

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Item:
    """One item: a file (``row`` is None) or one record of a table / JSON-lines file."""

    batch: str
    path: str  # relative to the batch's root, '/'-separated
    size: int
    sha256: str
    label: str | None = None
    meta: tuple[tuple[str, Any], ...] = ()
    row: int | None = None
    split: str = ""
    weight: float = 1.0

    def field(self, name: str) -> Any:
        """``label`` or a metadata value (None when the item has no such field)."""
        if name == "label":
            return self.label
        return dict(self.meta).get(name)

    def with_split(self, split: str) -> Item:
        return Item(self.batch, self.path, self.size, self.sha256, self.label, self.meta, self.row, split,
                    self.weight)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"batch": self.batch, "path": self.path, "size": self.size, "sha256": self.sha256,
                                "label": self.label, "split": self.split}
        if self.row is not None:
            data["row"] = self.row
        if self.meta:
            data["meta"] = dict(self.meta)
        if self.weight != 1.0:
            data["weight"] = self.weight
        return data


def sort_key(item: Item, batch_order: Mapping[str, int]) -> tuple[int, str, int]:
    """Canonical order: batches as declared, then path, then row."""
    return (batch_order.get(item.batch, len(batch_order)), item.path, -1 if item.row is None else item.row)


@dataclass(frozen=True)
class BatchSummary:
    name: str
    items: int
    digest: str


@dataclass(frozen=True)
class Manifest:
    """A materialized dataset. ``locations`` (where each batch's root is here) is not part of the digest."""

    dataset: str
    format: str
    items: tuple[Item, ...]
    batches: tuple[BatchSummary, ...]
    digest: str
    locations: tuple[tuple[str, str], ...] = ()
    label_field: str | None = None  # how readers find the label in a record (not part of the digest)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self.items:
            out[item.split] = out.get(item.split, 0) + 1
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "dataset": self.dataset,
            "format": self.format,
            "label_field": self.label_field,
            "digest": self.digest,
            "batches": [{"name": b.name, "items": b.items, "digest": b.digest,
                         "location": dict(self.locations).get(b.name, "")} for b in self.batches],
            "splits": self.counts(),
            "items": [item.as_json() for item in self.items],
        }

    def text(self) -> str:
        return json.dumps(self.as_json(), sort_keys=True, separators=(",", ":")) + "\n"


def digest_of(fmt: str, items: Sequence[Item]) -> str:
    """The content digest of items already in canonical order."""
    return _digest(fmt, [i.as_json() for i in items])


def _digest(fmt: str, rows: Sequence[Mapping[str, Any]]) -> str:
    return sha256_hex(canonical_json({"format": fmt, "items": list(rows)}))


def build(dataset: str, fmt: str, items: Sequence[Item], batch_names: Sequence[str],
          locations: Mapping[str, str] | None = None, label_field: str | None = None) -> Manifest:
    """The manifest of the (combined, split) items: canonical order, per-batch and overall digests."""
    order = {name: i for i, name in enumerate(batch_names)}
    ordered = tuple(sorted(items, key=lambda it: sort_key(it, order)))
    rows = [item.as_json() for item in ordered]
    per_batch: dict[str, list[Mapping[str, Any]]] = {name: [] for name in batch_names}
    for item, row in zip(ordered, rows, strict=True):
        per_batch.setdefault(item.batch, []).append(row)
    batches = tuple(BatchSummary(name, len(per_batch[name]), _digest(fmt, per_batch[name])[:20])
                    for name in batch_names)
    return Manifest(dataset, fmt, ordered, batches, _digest(fmt, rows)[:20],
                    tuple(sorted((locations or {}).items())), label_field)


def combined_digest(digests: Mapping[str, str]) -> str:
    """One digest for all the datasets a run uses (empty when it uses none; the manifest's own for one)."""
    if not digests:
        return ""
    if len(digests) == 1:
        return next(iter(digests.values()))
    return sha256_hex(canonical_json(dict(sorted(digests.items()))))[:20]
