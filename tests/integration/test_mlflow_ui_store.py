"""What MlflowStore writes for MLflow's UI, against real MLflow (the embedded store and a real server):
the model-training kind and expctl's saved view on experiments, source tags, descriptions, override params,
and a sweep parent's summary that follows every sync."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from expctl.core.model import ObservedRun, Phase, RunSpec, TrackingRef, ValidationGate
from expctl.tracking.mlflow.store import MlflowStore
from tests.support.factories import make_spec
from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration

AUTHOR = "Test User <test@example.com>"
KIND = "mlflow.experimentKind"
VIEW = "mlflow.sharedViewState.expctl"
COMMIT = "c" * 40
GATE = ValidationGate(metric="val_accuracy", threshold=0.5, mode="max")


def observed(spec: RunSpec, ref: TrackingRef, phase: Phase) -> ObservedRun:
    return ObservedRun(run_key=spec.run_key, name=spec.name, experiment=spec.experiment, attempt=1,
                       spec_hash=spec.spec_hash, phase=phase, backend="local", mlflow_run_id=ref.run_id,
                       finished_at=time.time() if phase.finished else None)


@pytest.fixture(params=["sqlite", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> MlflowStore:
    remote = ("https://github.com/org/repo.git", "https://bot:t0ken@github.com/org/repo.git")
    if request.param == "sqlite":
        return MlflowStore(f"sqlite:///{tmp_path / 'mlflow.db'}", "local", repository=remote[0], repo_url=remote[1])
    server: MlflowServer = request.getfixturevalue("mlflow_server")
    return MlflowStore(server.uri, "local", repository=remote[0], repo_url=remote[1])


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A fresh experiment name per test (the server is shared by the session)."""
    return "ui-" + request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[-40:]


def test_experiments_are_model_training_with_expctls_view_and_old_ones_are_marked(
    store: MlflowStore, name: str
) -> None:
    client: Any = store.client
    old = client.create_experiment(f"{name}-old", tags={"expctl.managed": "true"})  # made by an older expctl
    ref = store.ensure_run(make_spec(name, commit=COMMIT, validation=GATE), 1, AUTHOR)
    exp = client.get_experiment(client.get_run(ref.run_id).info.experiment_id)
    assert exp.tags[KIND] == "custom_model_development"
    view = json.loads(exp.tags[VIEW])
    assert "metrics.`val_accuracy`" in json.loads(view["state"])["selectedColumns"]
    # Applying again (a new process) rewrites nothing: the view keeps its creation time.
    MlflowStore(store.tracking_uri, "local").ensure_run(make_spec(name, commit=COMMIT, validation=GATE), 1, AUTHOR)
    assert json.loads(client.get_experiment(exp.experiment_id).tags[VIEW]) == view

    assert KIND not in client.get_experiment(old).tags
    ids = store.ui_experiments([name, f"{name}-old", "not-expctls"])
    assert ids == {name: (exp.experiment_id, True), f"{name}-old": (old, False)}
    assert client.get_experiment(old).tags[KIND] == "custom_model_development"
    assert store.experiment_of_run(ref.run_id) == exp.experiment_id


def test_a_sweep_shows_sources_overrides_and_a_summary_that_follows_sync(store: MlflowStore, name: str) -> None:
    client: Any = store.client
    points = [make_spec(name, overrides=(f"optimizer.lr={lr}", "model=wide"), config={"lr": lr}, commit=COMMIT,
                        validation=GATE) for lr in ("0.1", "0.01", "0.001")]
    refs = [store.ensure_run(spec, 1, AUTHOR) for spec in points]
    runs = [client.get_run(ref.run_id) for ref in refs]
    parent_id = runs[0].data.tags["mlflow.parentRunId"]
    experiment_id = runs[0].info.experiment_id
    for spec, run in zip(points, runs, strict=True):
        tags, params = run.data.tags, run.data.params
        assert params["override.model"] == "wide" and params["override.optimizer.lr"] == spec.config["lr"]
        assert tags["mlflow.source.type"] == "PROJECT"
        assert tags["mlflow.source.name"] == f"https://github.com/org/repo.git#experiments/{name}.yaml"
        assert tags["mlflow.source.git.commit"] == COMMIT
        assert tags["mlflow.source.git.repoURL"] == "https://github.com/org/repo.git"
        assert tags["mlflow.note.content"].startswith(f"expctl launched {name} with model=wide optimizer.lr=")
        assert tags["mlflow.note.content"].endswith(f"(#/experiments/{experiment_id}/runs/{parent_id}).")
        assert "t0ken" not in json.dumps(tags)
    state = json.loads(json.loads(client.get_experiment(experiment_id).tags[VIEW])["state"])
    assert {"params.`override.model`", "params.`override.optimizer.lr`"} <= set(state["selectedColumns"])
    parent = client.get_run(parent_id).data.tags
    assert parent["mlflow.source.name"] == runs[0].data.tags["mlflow.source.name"]
    assert parent["mlflow.note.content"].startswith(f"expctl sweep of {name} ")

    for ref, accuracy in zip(refs, (0.6, 0.9), strict=False):
        client.log_metric(ref.run_id, "val_accuracy", accuracy)
    store.sync([observed(points[0], refs[0], Phase.SUCCEEDED), observed(points[1], refs[1], Phase.SUCCEEDED),
                observed(points[2], refs[2], Phase.RUNNING)], points)
    summary = client.get_run(parent_id)
    assert summary.data.tags["expctl.sweep.summary"] == (
        f"3 points (2 succeeded, 1 running); best val_accuracy 0.9 ({points[1].name})")
    assert summary.data.tags["mlflow.note.content"].startswith("3 points (2 succeeded, 1 running); best")
    assert summary.data.metrics["sweep_best_val_accuracy"] == pytest.approx(0.9)
    assert summary.info.status == "RUNNING"

    store.sync([observed(points[2], refs[2], Phase.FAILED)], points)
    final = client.get_run(parent_id)
    assert final.data.tags["expctl.sweep.summary"].startswith("3 points (2 succeeded, 1 failed)")
    assert (final.data.tags["expctl.sweep.failed"], final.data.tags["expctl.sweep.running"]) == ("1", "0")
    assert final.info.status == "FAILED"
