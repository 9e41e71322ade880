"""A declared dataset: what the ``data:`` block of an experiment's config says, as frozen values.

Pure: no I/O. ``expctl.schema_data`` validates the user's YAML into these values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FORMATS = ("folders", "csv", "parquet", "jsonl")
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Batch:
    """One batch of a dataset: where its items come from, and how much of it to take."""

    name: str
    source: str  # a path or glob relative to the data root, an absolute path, or an fsspec URL
    fraction: float = 1.0  # seeded sample of this batch's items
    weight: float = 1.0  # sampling weight the training code gives this batch's items


@dataclass(frozen=True)
class Filter:
    """Keep items whose ``field`` (``label`` or a metadata key) is in ``include`` and not in ``exclude``."""

    field: str
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()

    def keeps(self, value: object) -> bool:
        text = "" if value is None else str(value)
        if self.include is not None and text not in self.include:
            return False
        return text not in self.exclude


@dataclass(frozen=True)
class Split:
    """A seeded train/validation/test split by content: an item keeps its split when batches are added."""

    seed: int = 0
    train: float = 0.8
    validation: float = 0.1
    test: float = 0.1


@dataclass(frozen=True)
class Dataset:
    """A dataset declaration: batches combined by ``combine``, then filtered, de-duplicated and split."""

    name: str
    format: str  # one of FORMATS
    batches: tuple[Batch, ...]
    combine: str = "union"
    label: str | None = "label"  # the label column/field (tables, JSON lines); folders: the parent folder
    meta: tuple[str, ...] = ()  # metadata columns/fields recorded per item (tables, JSON lines)
    filters: tuple[Filter, ...] = ()
    dedupe: bool = False
    seed: int = 0  # sampling seed
    split: Split = field(default_factory=Split)
