"""Pure parts of "exactly once" and of the HTTP protocol: which of two runs of one identity wins, and how a
``Retry-After`` header is read."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from expctl.core.errors import ExpctlError
from expctl.tracking.mlflow.http_bounds import retry_after, retry_after_max
from expctl.tracking.mlflow.run_index import RunIndex


def run(run_id: str, start: int, ready: bool, source: str = "repo#experiments/e.yaml", **extra: str) -> Any:
    tags = {"expctl.run_key": "k", "expctl.spec_hash": "h", "expctl.attempt": "1", "mlflow.source.name": source,
            **({"expctl.ready": "true"} if ready else {}), **extra}
    return SimpleNamespace(info=SimpleNamespace(run_id=run_id, start_time=start), data=SimpleNamespace(tags=tags))


def test_the_run_with_params_wins_over_an_older_orphan_which_is_a_duplicate() -> None:
    index = RunIndex.of([run("orphan", 1, ready=False), run("real", 2, ready=True)])
    assert index.runs[("k", "h", "1")].run_id == "real"
    assert index.duplicates == {"orphan": "real"}
    assert [r.info.run_id for r in index.raw] == ["real"]


@pytest.mark.parametrize("runs", [
    [run("a", 1, ready=True), run("b", 2, ready=True)],  # both had params: maybe both had jobs
    [run("a", 1, ready=False), run("b", 2, ready=False)],  # neither: a crash before params, nothing proven
    [run("a", 1, ready=False, source="other#experiments/e.yaml"), run("b", 2, ready=True)],  # another repository
], ids=["both ready", "neither ready", "other source"])
def test_a_run_is_closed_as_a_duplicate_only_when_it_surely_never_had_a_job(runs: list[Any]) -> None:
    index = RunIndex.of(runs)
    assert index.duplicates == {}
    assert len(index.raw) == 2


def test_sweep_parents_are_never_duplicates() -> None:
    parents = [run(f"p{i}", i, ready=False, **{"expctl.parent": "true", "expctl.experiment": "e",
                                              "expctl.commit": "c"}) for i in (1, 2)]
    index = RunIndex.of(parents)
    assert index.parents[("e", "c")] == "p1" and index.duplicates == {} and len(index.raw) == 2


@pytest.mark.parametrize(("header", "expected"), [
    ("1", 1.0), (" 120 ", 120.0), ("0", 0.0), ("", None), (None, None), ("soon", None), ("-5", None),
    ("1.5", None), ("99999999999", None),
    ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),  # an HTTP date: seconds from now
    ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: at once
])
def test_retry_after_reads_seconds_and_http_dates(header: str | None, expected: float | None) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert retry_after(header, now=now) == expected


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf"])
def test_a_bad_retry_after_bound_is_one_line(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("EXPCTL_HTTP_RETRY_AFTER_MAX", value)
    with pytest.raises(ExpctlError, match="EXPCTL_HTTP_RETRY_AFTER_MAX: must be a number of seconds"):
        retry_after_max()
