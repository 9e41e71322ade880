"""The backend registry: names, declared capabilities, and lazy factories."""

from __future__ import annotations

import dataclasses
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
        for ref in (info.lock, info.render, info.settings_check, info.run_checks):
            if ref:
                assert callable(backend_registry.load(ref))


def test_each_backend_owns_its_block_of_expctl_yaml() -> None:
    from expctl.config.schema import Settings, parse_settings
    from expctl.config.schema_types import BackendSettings

    models = backend_registry.settings_models()
    assert list(models) == ["local", "kubernetes", "slurm"]
    settings = parse_settings({"slurm": {"write_concurrency": 2}})
    for name, model in models.items():
        assert issubclass(model, BackendSettings) and model.__module__ == f"expctl.backends.{name}.settings"
        assert Settings.model_fields[name].annotation is model
        assert isinstance(settings.block(name), model) and model.of(settings, name) is settings.block(name)
    assert settings.block("slurm") == models["slurm"](write_concurrency=2)
    assert settings.block("backend") is None and settings.block("nomad") is None
    with pytest.raises(TypeError, match="no slurm: block of type LocalIn"):
        models["local"].of(settings, "slurm")


def test_render_falls_back_to_the_first_backend_that_renders() -> None:
    assert backend_registry.rendering_default().name == "kubernetes"


def test_run_errors_are_every_backends_checks_whatever_the_backend() -> None:
    from expctl.config.schema import parse_settings

    bad = make_spec("a", job=make_job(JobKind.PYTORCH, namespace="elsewhere"))
    ok = make_spec("b", job=make_job(JobKind.LOCAL, namespace="elsewhere"))  # Kubernetes never renders it
    for backend in backend_registry.names():
        errors = backend_registry.run_errors([bad, ok], parse_settings({"backend": backend}))
        assert [(e.file, e.key) for e in errors] == [("experiments/a.yaml", "expctl.namespace")]


def test_registry_imports_no_backend() -> None:
    root = Path(__file__).resolve().parents[2]
    probe = [sys.executable, "-m", "tests.support.registry_probe"]
    out = subprocess.run(probe, cwd=root, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_check_runnable_names_file_and_key_per_experiment() -> None:
    pt = make_spec("a", job=make_job(JobKind.PYTORCH))
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


def test_outputs_are_refused_in_one_line_on_a_backend_that_cannot_record_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert backend_registry.producing() == ["local", "kubernetes", "slurm"]
    importer = make_spec("imp", job=make_job(JobKind.PYTORCH, outputs="blobs-raw"))
    train = make_spec("train", job=make_job(JobKind.PYTORCH))
    for name in ("local", "kubernetes", "slurm"):
        check_runnable(name, [importer, train])
    kube = backend_registry.BACKENDS["kubernetes"]  # a backend registered without outputs (none is today)
    monkeypatch.setitem(backend_registry.BACKENDS, "nodir", dataclasses.replace(kube, name="nodir", outputs=False))
    with pytest.raises(ConfigError) as exc:
        check_runnable("nodir", [importer, train])
    assert str(exc.value) == ("experiments/imp.yaml: expctl.outputs: the nodir backend cannot produce a dataset "
                              "(its jobs have no output directory the apply reads); outputs: works on local, "
                              "kubernetes, slurm")
    local_importer = make_spec("imp", job=make_job(JobKind.LOCAL, outputs="blobs-raw"))
    with pytest.raises(ConfigErrors) as both:  # its kind and its outputs: both said, once each
        check_runnable("nodir", [local_importer, importer])
    assert [(e.file, e.key) for e in both.value.errors] == [
        ("experiments/imp.yaml", "expctl.kind"), ("experiments/imp.yaml", "expctl.outputs")]
