"""The backend registry: names, declared capabilities, and lazy factories."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from expctl.core import backend_registry
from expctl.core.errors import ConfigError, ConfigErrors
from expctl.core.model import JobKind
from expctl.engine.workspace import check_runnable
from tests.support.factories import make_job, make_spec


def test_the_three_backends_and_what_they_run() -> None:
    assert backend_registry.names() == ["local", "kubernetes", "slurm"]
    assert backend_registry.lookup("local").runs(JobKind.TRAIN)
    assert not backend_registry.lookup("kubernetes").runs(JobKind.LOCAL)
    assert backend_registry.unsupported("kubernetes", [JobKind.PYTORCH, JobKind.LOCAL, JobKind.LOCAL]) == [
        JobKind.LOCAL]
    assert backend_registry.unsupported("slurm", [JobKind.PYTORCH, JobKind.TRAIN, JobKind.MPI, JobKind.LOCAL]) == [
        JobKind.MPI, JobKind.TRAIN]
    assert backend_registry.lookup("slurm").lock
    assert backend_registry.lookup("kubernetes").lock and backend_registry.lookup("local").lock is None
    with pytest.raises(KeyError, match="choose from local, kubernetes, slurm"):
        backend_registry.lookup("nomad")


def test_every_factory_and_lock_resolves() -> None:
    for info in backend_registry.BACKENDS.values():
        assert callable(backend_registry.load(info.factory))
        if info.lock:
            assert callable(backend_registry.load(info.lock))


def test_registry_imports_no_backend() -> None:
    root = Path(__file__).resolve().parents[2]
    probe = [sys.executable, "-m", "tests.support.registry_probe"]
    out = subprocess.run(probe, cwd=root, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_check_runnable_names_file_and_key_per_experiment() -> None:
    pt = make_spec("a", job=make_job(JobKind.PYTORCH))
    tj1 = make_spec("b", overrides=("x=1",), job=make_job(JobKind.TRAIN))
    tj2 = make_spec("b", overrides=("x=2",), job=make_job(JobKind.TRAIN))
    tj1 = make_spec("b", overrides=("x=1",), job=make_job(JobKind.LOCAL))
    tj2 = make_spec("b", overrides=("x=2",), job=make_job(JobKind.LOCAL))
    check_runnable("local", [pt, tj1, tj2])
    with pytest.raises(ConfigError) as exc:
        check_runnable("kubernetes", [pt, tj1, tj2])
    assert str(exc.value).startswith("experiments/b.yaml: expctl.kind: kind 'local' does not run on the kubernetes")
    mpi = make_spec("c", job=make_job(JobKind.LOCAL))
    with pytest.raises(ConfigErrors) as many:
        check_runnable("kubernetes", [tj1, mpi])
    assert [e.file for e in many.value.errors] == ["experiments/b.yaml", "experiments/c.yaml"]
