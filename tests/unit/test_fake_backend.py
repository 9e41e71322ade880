"""The in-memory FakeBackend passes the same backend contract as the real backends (so unit tests can trust it)."""

from __future__ import annotations

import pytest

from expctl.core.model import FailureClass, JobKind, Launch, Phase
from tests.contract.backend_suite import BackendContract
from tests.support.factories import make_job, make_launch, make_spec
from tests.support.fakes import FakeBackend


class FakeDriver:
    """Plays the platform for the fake: ``settle`` finishes the object the way the platform would."""

    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend

    def launch(self, outcome: str, attempt: int = 1, experiment: str = "contract") -> Launch:
        spec = make_spec(experiment, overrides=("lr=0.1",), job=make_job(JobKind.PYTORCH), commit="a" * 40)
        return make_launch(spec, attempt)

    def settle(self, launch: Launch, outcome: str) -> None:
        phase, failure = {
            "succeed": (Phase.SUCCEEDED, None),
            "fail": (Phase.FAILED, FailureClass.CODE),
            "infra": (Phase.FAILED, FailureClass.INFRASTRUCTURE),
        }[outcome]
        self.backend.finish(launch.name, phase, failure, at=2000.0, message=f"{outcome}: as the platform said")

    def reopen(self) -> FakeBackend:
        return self.backend  # the fake's "platform" is its memory: a new client sees the same objects


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def driver(backend: FakeBackend) -> FakeDriver:
    return FakeDriver(backend)


class TestFakeContract(BackendContract):
    pass
