"""An experiment's ``data:`` block (``config/schema_data``): validated strictly into a dataset declaration, or
refused with one error naming the file and the key."""

from __future__ import annotations

from typing import Any

import pytest

from expctl.config.schema_data import parse_data
from expctl.core.errors import ConfigError, ConfigErrors
from expctl.data.declare import Batch, Dataset, Filter, Split

FILE = "experiments/e.yaml"
MINIMAL = {"name": "shapes", "format": "folders", "batches": [{"name": "b1", "source": "shapes/b1"}]}


def test_a_minimal_block_gets_every_default() -> None:
    assert parse_data(MINIMAL, FILE) == Dataset(name="shapes", format="folders",
                                                batches=(Batch("b1", "shapes/b1", 1.0, 1.0),))
    assert parse_data(MINIMAL, FILE).split == Split(0, 0.8, 0.1, 0.1)


def test_a_full_block() -> None:
    data = {**MINIMAL, "format": "csv", "label": "kind", "meta": ["site"], "dedupe": True, "seed": 3,
            "batches": [{"name": "b1", "source": "a/*.csv", "fraction": 0.5, "weight": 2},
                        {"name": "b2", "source": "s3://bucket/b2.csv"}],
            "filters": [{"field": "label", "in": ["cat", 1, True, 0.5]}, {"field": "site", "not_in": [False]}],
            "split": {"seed": 7, "train": 0.6, "validation": 0.2, "test": 0.2}}
    dataset = parse_data(data, FILE)
    assert dataset.batches == (Batch("b1", "a/*.csv", 0.5, 2.0), Batch("b2", "s3://bucket/b2.csv"))
    assert dataset.filters == (Filter("label", ("cat", "1", "true", "0.5"), ()), Filter("site", None, ("false",)))
    assert (dataset.format, dataset.label, dataset.meta, dataset.dedupe, dataset.seed) == ("csv", "kind", ("site",),
                                                                                          True, 3)
    assert dataset.split == Split(7, 0.6, 0.2, 0.2)


@pytest.mark.parametrize(("data", "key", "message"), [
    (["a"], "data", "must be a mapping (a dataset declaration)"),
    (None, "data", "must be a mapping"),
    ({**MINIMAL, "format": "xlsx"}, "data.format", "'folders', 'csv', 'parquet' or 'jsonl'"),
    ({**MINIMAL, "batches": []}, "data.batches", "at least 1"),
    ({**MINIMAL, "name": ""}, "data.name", "a name of letters, digits"),
    ({**MINIMAL, "name": "../.."}, "data.name", "a name of letters, digits"),
    ({**MINIMAL, "filters": [{"field": "lable", "not_in": ["cat"]}]}, "data",
     "filters.0.field: 'lable' is neither the label nor one of meta ['label']: no item has it (did you mean 'label'?)"),
    ({**MINIMAL, "format": "csv", "label": None, "filters": [{"field": "label", "in": ["cat"]}]}, "data",
     "filters.0.field: 'label' is neither the label nor one of meta []"),
    ({**MINIMAL, "extra": 1}, "data.extra", "unknown key (did you mean 'meta'?)"),
    ({**MINIMAL, "batches": [{"name": "b", "source": "s", "fraction": 0}]}, "data.batches.0.fraction",
     "greater than 0"),
    ({**MINIMAL, "batches": [{"name": "b", "source": "s", "fraction": 1.5}]}, "data.batches.0.fraction",
     "less than or equal to 1"),
    ({**MINIMAL, "batches": [{"name": "b", "source": "s"}, {"name": "b", "source": "t"}]}, "data",
     "batch names must be unique (repeated: b)"),
    ({**MINIMAL, "split": {"train": 0.5}}, "data.split", "train + validation + test must be 1 (got 0.7)"),
    ({**MINIMAL, "split": {"train": 1.5}}, "data.split.train", "less than or equal to 1"),
    ({**MINIMAL, "filters": [{"field": "label", "in": [[1]]}]}, "data.filters.0.in.0", "a valid string"),
    ({**MINIMAL, "combine": "intersection"}, "data.combine", "should be 'union' (got 'intersection')"),
])
def test_a_bad_block_is_one_error_naming_its_key(data: Any, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_data(data, FILE)
    assert caught.value.file == FILE
    assert caught.value.key == key, caught.value.render()
    assert message in caught.value.message, caught.value.render()


def test_several_bad_keys_are_reported_at_once() -> None:
    with pytest.raises(ConfigErrors) as caught:
        parse_data({"name": "", "format": "xlsx", "batches": []}, FILE)
    assert {e.key for e in caught.value.errors} == {"data.name", "data.format", "data.batches"}
