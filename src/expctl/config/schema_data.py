"""The ``data:`` block of an experiment's composed config: strict models (pydantic) of a dataset declaration —
batches from sources, filters, a seeded split — turned into ``expctl.data.declare.Dataset``."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from expctl.config.schema import scalar_text, validated
from expctl.config.schema_types import DataName, Strict
from expctl.core.errors import ConfigError
from expctl.data import declare

_Scalar = str | int | float | bool


class BatchIn(Strict):
    name: DataName
    source: str = Field(min_length=1, description="path or glob under the data root, absolute path, or URL")
    fraction: float = Field(1.0, gt=0, le=1)
    weight: float = Field(1.0, gt=0)


class FilterIn(Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    field: str
    in_: list[_Scalar] | None = Field(None, alias="in")
    not_in: list[_Scalar] = Field(default_factory=list)


class SplitIn(Strict):
    seed: int = 0
    train: float = Field(0.8, ge=0, le=1)
    validation: float = Field(0.1, ge=0, le=1)
    test: float = Field(0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitIn:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"train + validation + test must be 1 (got {total:g})")
        return self


class DataIn(Strict):
    """A dataset: batches from sources, combined by rules, split; materialized into a manifest."""

    name: DataName
    format: Literal["folders", "csv", "parquet", "jsonl"]
    batches: list[BatchIn] = Field(min_length=1)
    combine: Literal["union"] = "union"
    label: str | None = "label"
    meta: list[str] = Field(default_factory=list)
    filters: list[FilterIn] = Field(default_factory=list)
    dedupe: bool = False
    seed: int = 0
    split: SplitIn = SplitIn()

    @model_validator(mode="after")
    def _unique_batches(self) -> DataIn:
        names = [b.name for b in self.batches]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"batch names must be unique (repeated: {', '.join(dup)})")
        return self

    @model_validator(mode="after")
    def _filters_name_fields(self) -> DataIn:
        """A filter on a field no item has would keep (``not_in``) or drop (``in``) everything, silently."""
        fields = [*(["label"] if self.label is not None or self.format == "folders" else []), *self.meta]
        for i, f in enumerate(self.filters):
            if f.field not in fields:
                close = difflib.get_close_matches(f.field, fields, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"filters.{i}.field: {f.field!r} is neither the label nor one of meta "
                                 f"{fields}: no item has it{hint}")
        return self


def parse_data(data: Any, file: str) -> declare.Dataset:
    """Validate an experiment's ``data`` block into a dataset declaration; raises ConfigError."""

    if not isinstance(data, Mapping):
        raise ConfigError("must be a mapping (a dataset declaration)", file=file, key="data")
    block = validated(DataIn, data, file, "data")
    return declare.Dataset(
        name=block.name,
        format=block.format,
        batches=tuple(declare.Batch(b.name, b.source, b.fraction, b.weight) for b in block.batches),
        combine=block.combine,
        label=block.label,
        meta=tuple(block.meta),
        filters=tuple(declare.Filter(f.field, None if f.in_ is None else tuple(scalar_text(v) for v in f.in_),
                                     tuple(scalar_text(v) for v in f.not_in)) for f in block.filters),
        dedupe=block.dedupe,
        seed=block.seed,
        split=declare.Split(block.split.seed, block.split.train, block.split.validation, block.split.test),
    )
