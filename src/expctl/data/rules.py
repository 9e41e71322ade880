"""The combination rules of a dataset: filters, per-batch sampling and weights, union, de-duplication, split.

Pure: every random choice is a hash of (seed, what is chosen about, the item's content), so a rule gives the
same answer on every machine, and an item keeps its sample and split decisions when other batches change.
Order: filter each batch → sample it → union in declared order → de-duplicate by content → split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from expctl.core.naming import sha256_hex
from expctl.data.declare import Dataset, Filter, Split
from expctl.data.manifest import Item, sort_key

COMBINE_RULES = ("union",)


def uniform(*parts: object) -> float:
    """A number in [0, 1) determined by ``parts``: the first 16 hex digits of sha256 of them, joined by NUL."""
    return int(sha256_hex("\0".join(map(str, parts)))[:16], 16) / 2**64


def item_key(item: Item) -> str:
    """What identifies an item for sampling: its batch-relative path, row and content."""
    return f"{item.path}#{'' if item.row is None else item.row}#{item.sha256}"


def keep(item: Item, filters: Sequence[Filter]) -> bool:
    return all(f.keeps(item.field(f.field)) for f in filters)


def sample(items: Sequence[Item], fraction: float, seed: int, batch: str) -> list[Item]:
    """A seeded subset of about ``fraction`` of the items (all of them at 1.0, none at 0.0)."""
    if fraction >= 1.0:
        return list(items)
    return [i for i in items if uniform(seed, "sample", batch, item_key(i)) < fraction]


def dedupe(items: Sequence[Item]) -> list[Item]:
    """Keep the first item of each content hash, in the order given (canonical order keeps it stable)."""
    seen: set[str] = set()
    out = []
    for item in items:
        if item.sha256 not in seen:
            seen.add(item.sha256)
            out.append(item)
    return out


def split_of(item: Item, split: Split) -> str:
    """train, validation or test, by a seeded hash of the item's content (identical content, same split)."""
    u = uniform(split.seed, "split", item.sha256)
    if u < split.train:
        return "train"
    if u < split.train + split.validation:
        return "validation"
    return "test"


def combine(decl: Dataset, per_batch: Mapping[str, Sequence[Item]]) -> list[Item]:
    """Apply the declaration's rules to each batch's scanned items; the result is in canonical order."""
    if decl.combine not in COMBINE_RULES:
        raise ValueError(f"unknown combination rule {decl.combine!r} (known: {', '.join(COMBINE_RULES)})")
    order = {b.name: i for i, b in enumerate(decl.batches)}
    combined: list[Item] = []
    for batch in decl.batches:
        items = sorted(per_batch.get(batch.name, ()), key=lambda it: sort_key(it, order))
        kept = sample([i for i in items if keep(i, decl.filters)], batch.fraction, decl.seed, batch.name)
        combined.extend(replace(i, weight=batch.weight) if batch.weight != 1.0 else i for i in kept)
    if decl.dedupe:
        combined = dedupe(combined)
    return [i.with_split(split_of(i, decl.split)) for i in combined]
