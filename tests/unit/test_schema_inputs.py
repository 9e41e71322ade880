"""``expctl.inputs``: what one block may declare, each error one line naming the file and the key."""

from __future__ import annotations

from typing import Any

import pytest

from expctl.config.schema import parse_block
from expctl.config.schema_inputs import to_decls
from expctl.core.errors import ConfigError
from expctl.core.inputs import InputDecl

FILE = "experiments/finetune.yaml"


def test_the_three_kinds_of_input_become_declarations() -> None:
    block = parse_block({"inputs": {"base": {"model": "pretrain-classifier@champion"},
                                    "teacher": {"model": "pretrain-classifier", "version": 3},
                                    "points": {"experiment": "team-a/pretrain", "each": True}}}, FILE)
    assert to_decls(block.inputs) == (
        InputDecl("base", model="pretrain-classifier", alias="champion"),
        InputDecl("points", experiment="team-a/pretrain", each=True),
        InputDecl("teacher", model="pretrain-classifier", version=3),
    )
    assert to_decls(parse_block({}, FILE).inputs) == ()
    best = parse_block({"inputs": {"top": {"experiment": "sweep", "best": {"metric": "val_loss", "mode": "min"}}}},
                       FILE)
    assert to_decls(best.inputs) == (InputDecl("top", experiment="sweep", best="val_loss", mode="min"),)


@pytest.mark.parametrize(("inputs", "key", "says"), [
    ({"base": {"model": "m@latest"}}, "expctl.inputs.base.model", "reserved"),
    ({"base": {"model": "m@v3"}}, "expctl.inputs.base.model", "reserved"),
    ({"base": {"model": "m@a b"}}, "expctl.inputs.base.model", "the alias after '@'"),
    ({"base": {"model": "m/x@champion"}}, "expctl.inputs.base.model", "expected NAME@ALIAS"),
    ({"base": {"model": "m"}}, "expctl.inputs.base", "an alias (NAME@ALIAS) or a version"),
    ({"base": {"model": "m@a", "version": 2}}, "expctl.inputs.base", "exactly one"),
    ({"base": {"model": "m@a", "experiment": "x"}}, "expctl.inputs.base", "either"),
    ({"base": {}}, "expctl.inputs.base", "either"),
    ({"base": {"model": "m@a", "each": True}}, "expctl.inputs.base", "each is for experiment inputs"),
    ({"base": {"experiment": "Pretrain"}}, "expctl.inputs.base.experiment", ""),
    ({"base": {"experiment": "x", "best": {}}}, "expctl.inputs.base.best.metric", ""),
    ({"base": {"experiment": "x", "best": {"metric": "m", "mode": "up"}}}, "expctl.inputs.base.best.mode", ""),
    ({"base": {"experiment": "x", "each": True, "best": {"metric": "m"}}}, "expctl.inputs.base", "say one of them"),
    ({"base": {"model": "m@a", "best": {"metric": "m"}}}, "expctl.inputs.base", "best is for experiment inputs"),
    ({"my-base": {"experiment": "x"}}, "expctl.inputs.my-base", "invalid name"),
])
def test_bad_inputs_are_one_line_naming_file_and_key(inputs: dict[str, Any], key: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_block({"inputs": inputs}, FILE)
    line = str(err.value)
    assert "\n" not in line and err.value.file == FILE and err.value.key == key and says in line


def test_a_dataset_input_and_outputs_become_declarations() -> None:
    block = parse_block({"inputs": {"raw": {"dataset": "blobs-raw"}}, "outputs": {"dataset": "features.v1"}}, FILE)
    assert to_decls(block.inputs) == (InputDecl("raw", dataset="blobs-raw"),)
    assert block.outputs is not None and block.outputs.dataset == "features.v1"


@pytest.mark.parametrize(("block", "key", "says"), [
    ({"outputs": {"dataset": "raw", "format": "csv"}}, "expctl.outputs.format", "unknown key (known keys: dataset)"),
    ({"outputs": {}}, "expctl.outputs.dataset", ""),
    ({"outputs": {"dataset": "../up"}}, "expctl.outputs.dataset", ""),
    ({"inputs": {"raw": {"dataset": "a", "experiment": "x"}}}, "expctl.inputs.raw", "either"),
    ({"inputs": {"raw": {"dataset": "a", "each": True}}}, "expctl.inputs.raw", "a dataset input takes no"),
])
def test_bad_outputs_and_dataset_inputs_are_one_line(block: dict[str, Any], key: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_block(block, FILE)
    line = str(err.value)
    assert "\n" not in line and err.value.file == FILE and err.value.key == key and says in line
