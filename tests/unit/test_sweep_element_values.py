"""A sweep element's plain int or word value is read without Hydra's parser: exactly what the parser gives."""

from __future__ import annotations

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from expctl.config.compose import simple_element_value

SAMPLES = ["0", "7", "-0", "+5", "-12", "10000", "adam", "a-b", "_x", "Adam_2", "true_x", "nan1", "inf-x",
           "null_", "x-"]
HYDRA_ONLY = ["007", "1_000", "True", "FALSE", "NULL", "nan", "Inf", "-inf", "1e3", "0.5", "'5'", "a b", "a.b",
              "[1,2]", "${x}", "", "-a", "0x10", "5 "]


@pytest.mark.parametrize("group", [False, True])
@pytest.mark.parametrize("text", SAMPLES)
def test_a_simple_value_is_what_hydra_parses(text: str, group: bool) -> None:
    override = OverridesParser.create().parse_override(f"db.key={text}")
    expected = override.get_value_string() if group else override.value()
    got = simple_element_value(f"db.key={text}", group)
    assert got == expected and type(got) is type(expected), (got, expected)


@pytest.mark.parametrize("text", HYDRA_ONLY)
def test_anything_else_is_left_to_hydra(text: str) -> None:
    assert simple_element_value(f"key={text}", False) is None
    assert simple_element_value(f"key={text}", True) is None
