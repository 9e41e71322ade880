"""The backend contract: one class of tests every backend passes (like Hydra's LauncherTestSuite).

A backend's test module subclasses ``BackendContract`` and provides two fixtures:

- ``backend``: a fresh backend on empty state;
- ``driver``: an object with
  - ``launch(outcome, attempt=1, experiment="contract") -> Launch`` — a launch whose job will end in
    ``outcome`` ("succeed", "fail" — a code failure —, "run": keeps running until stopped, or "infra": runs
    until the platform under it fails);
  - ``settle(launch, outcome)`` — bring the object to that outcome as the platform would (the local backend
    waits for its processes, or kills them for "infra"; the Kubernetes backend plays the operator by
    patching ``/status``; the Slurm driver kills the node's slurmd);
  - ``reopen() -> Backend`` — a new backend instance on the same state (expctl restarted).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from expctl.backends.base import Backend
from expctl.core.errors import ExpctlError
from expctl.core.model import FailureClass, Phase


def _only(backend: Backend, name: str) -> Any:
    found = [r for r in backend.observe() if r.name == name]
    assert len(found) == 1, f"expected exactly one object named {name}, got {found}"
    return found[0]


class BackendContract:
    def test_observe_starts_empty(self, backend: Backend) -> None:
        assert backend.observe() == []

    def test_create_is_observed_with_identity(self, backend: Backend, driver: Any) -> None:
        launch = driver.launch("run")
        backend.create(launch)
        run = _only(backend, launch.name)
        assert run.run_key == launch.spec.run_key
        assert run.spec_hash == launch.spec.spec_hash
        assert run.experiment == launch.spec.experiment
        assert run.attempt == 1
        assert run.phase in (Phase.PENDING, Phase.RUNNING)
        assert run.managed and run.live
        assert run.mlflow_run_id == launch.tracking.run_id
        assert tuple(run.overrides) == launch.spec.overrides
        backend.delete(launch.name)

    def test_create_twice_is_one_object(self, backend: Backend, driver: Any) -> None:
        launch = driver.launch("run")
        backend.create(launch)
        backend.create(launch)
        assert [r.name for r in backend.observe()] == [launch.name]
        backend.delete(launch.name)

    def test_success_is_observed(self, backend: Backend, driver: Any) -> None:
        launch = driver.launch("succeed")
        backend.create(launch)
        driver.settle(launch, "succeed")
        run = _only(backend, launch.name)
        assert run.phase is Phase.SUCCEEDED
        assert run.finished_at is not None

    def test_code_failure_is_observed_and_classified(self, backend: Backend, driver: Any) -> None:
        launch = driver.launch("fail")
        backend.create(launch)
        driver.settle(launch, "fail")
        run = _only(backend, launch.name)
        assert run.phase is Phase.FAILED
        assert run.failure is FailureClass.CODE
        assert run.finished_at is not None

    def test_retry_attempt_is_a_new_object(self, backend: Backend, driver: Any) -> None:
        first = driver.launch("fail")
        backend.create(first)
        driver.settle(first, "fail")
        second = driver.launch("succeed", attempt=2)
        assert second.name != first.name and second.name.endswith("-r2")
        backend.create(second)
        driver.settle(second, "succeed")
        runs = {r.name: r for r in backend.observe()}
        assert runs[first.name].phase is Phase.FAILED and runs[first.name].attempt == 1
        assert runs[second.name].phase is Phase.SUCCEEDED and runs[second.name].attempt == 2

    def test_delete_is_idempotent(self, backend: Backend, driver: Any) -> None:
        launch = driver.launch("run")
        backend.create(launch)
        backend.delete(launch.name)
        backend.delete(launch.name)
        assert backend.observe() == []

    def test_delete_of_unknown_name_is_ok(self, backend: Backend) -> None:
        backend.delete("never-created-0123456789")

    def test_cancel_is_durable(self, backend: Backend, driver: Any) -> None:
        launch = driver.launch("run")
        backend.create(launch)
        backend.cancel(launch.name, by="someone")
        assert _only(backend, launch.name).cancelled
        reopened = driver.reopen()
        assert _only(reopened, launch.name).cancelled
        reopened.delete(launch.name)

    def test_state_survives_restart(self, backend: Backend, driver: Any) -> None:
        launch = driver.launch("succeed")
        backend.create(launch)
        driver.settle(launch, "succeed")
        reopened = driver.reopen()
        run = _only(reopened, launch.name)
        assert run.phase is Phase.SUCCEEDED and run.spec_hash == launch.spec.spec_hash

    def test_logs_of_unknown_run_is_a_clear_error(self, backend: Backend) -> None:
        with pytest.raises(ExpctlError):
            list(backend.logs("never-created-0123456789"))

    def test_create_with_a_conflicting_spec_hash_is_refused(self, backend: Backend, driver: Any) -> None:
        launch = driver.launch("run")
        backend.create(launch)
        other = replace(launch, spec=replace(launch.spec, spec_hash="0" * 20))
        with pytest.raises(ExpctlError, match=launch.name):
            backend.create(other)
        run = _only(backend, launch.name)
        assert run.spec_hash == launch.spec.spec_hash, "the refused create changed the object"
        backend.delete(launch.name)

    def test_infrastructure_failure_is_observed_and_classified(self, backend: Backend, driver: Any) -> None:
        launch = driver.launch("infra")
        backend.create(launch)
        driver.settle(launch, "infra")
        run = _only(backend, launch.name)
        assert run.phase is Phase.FAILED
        assert run.failure is FailureClass.INFRASTRUCTURE, run.message
        assert run.message
        backend.delete(launch.name)

    def test_cancel_of_unknown_run_is_a_clear_error(self, backend: Backend) -> None:
        with pytest.raises(ExpctlError):
            backend.cancel("never-created-0123456789", by="someone")
        assert backend.observe() == []
