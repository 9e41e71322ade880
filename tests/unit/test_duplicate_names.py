"""A plan never holds two runs with one name (a sweep yielding the same point twice is one run upstream)."""

from __future__ import annotations


def test_two_runs_with_one_name_are_refused() -> None:
    from expctl.config.desired_state import duplicate_names
    from tests.support.factories import make_spec

    one = make_spec("demo", overrides=("seed=1",))
    assert duplicate_names([one, make_spec("demo", overrides=("seed=2",))]) == []
    (error,) = duplicate_names([one, one])
    assert str(error) == f"experiments/demo.yaml: hydra.sweeper.params: two runs would be named {one.name} " \
                         "(seed=1 and seed=1)"
