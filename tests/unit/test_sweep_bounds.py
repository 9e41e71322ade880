"""A sweep axis is enumerated only up to the most runs an experiment may have: never a billion values."""

from __future__ import annotations

import itertools

import pytest

from expctl.core import sweep


def test_a_short_axis_is_read_whole() -> None:
    assert sweep.bounded(iter(["1", "2", "3"])) == ["1", "2", "3"]
    assert sweep.bounded(iter(["1", "2"]), limit=2) == ["1", "2"]


def test_an_endless_axis_stops_after_the_limit() -> None:
    endless = (str(i) for i in itertools.count())
    with pytest.raises(sweep.SweepUnbounded, match="more than 100,000 runs"):
        sweep.bounded(endless)
    assert next(endless) == str(sweep.MAX_RUNS + 1)  # read one past the limit, no further


def test_the_limit_is_what_no_cap_can_exceed() -> None:
    with pytest.raises(sweep.SweepTooLarge):
        list(sweep.points([sweep.MAX_RUNS + 1], cap=sweep.MAX_RUNS))
