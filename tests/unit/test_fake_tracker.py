"""The in-memory FakeTracker passes the same tracker contract as the MLflow store (so unit tests can trust it);
its log-keeping variant passes the LogStore part too."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from expctl.tracking.base import Tracker
from tests.contract.tracker_suite import TrackerContract
from tests.support.fakes import FakeLogTracker, FakeTracker


@pytest.fixture(params=[FakeTracker, FakeLogTracker], ids=["plain", "keeps-logs"])
def tracker(request: pytest.FixtureRequest) -> Tracker:
    made: Tracker = request.param()
    return made


@pytest.fixture
def reopen(tracker: Tracker) -> Callable[[], Tracker]:
    return lambda: tracker  # the fake's store is its memory: expctl restarted would see the same runs


class TestFakeTrackerContract(TrackerContract):
    pass
