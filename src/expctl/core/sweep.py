"""Expand sweep axes into points, in the order Hydra's BasicSweeper produces them.

Pure: counts and index tuples only. Each axis is a list of override strings; a point picks one per axis.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence

# The most runs one experiment may have, whatever its cap says (``max_runs`` cannot go higher): enumerating a
# sweep stops here, so ``range(0,1000000000)`` is refused at once instead of filling memory for minutes.
MAX_RUNS = 100_000


class SweepTooLarge(Exception):
    def __init__(self, size: int, cap: int) -> None:
        self.size, self.cap = size, cap
        super().__init__(f"sweep expands to {size:,} runs, over the cap of {cap:,} "
                         "(raise max_runs in the expctl block or max_runs_per_experiment in expctl.yaml)")


def size(axis_lengths: Sequence[int]) -> int:
    total = 1
    for n in axis_lengths:
        total *= n
    return total


class SweepUnbounded(Exception):
    def __init__(self) -> None:
        super().__init__(f"sweep expands to more than {MAX_RUNS:,} runs, the most one experiment may have "
                         "(split it into several experiments)")


def bounded(values: Iterable[str], limit: int = MAX_RUNS) -> list[str]:
    """The first ``limit`` values of an axis, or SweepUnbounded when there are more (never reads past them)."""
    taken = list(itertools.islice(values, limit + 1))
    if len(taken) > limit:
        raise SweepUnbounded()
    return taken


def points(axis_lengths: Sequence[int], cap: int) -> Iterator[tuple[int, ...]]:
    """Index tuples of the cartesian product (last axis fastest, like itertools.product), capped."""
    total = size(axis_lengths)
    if total > cap:
        raise SweepTooLarge(total, cap)
    return itertools.product(*(range(n) for n in axis_lengths))


def point_overrides(axes: Sequence[Sequence[str]], indices: Sequence[int]) -> tuple[str, ...]:
    """The point's override strings, in axis order (as BasicSweeper lists them)."""
    return tuple(axis[i] for axis, i in zip(axes, indices, strict=True))
