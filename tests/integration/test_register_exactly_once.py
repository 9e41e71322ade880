"""Registering a run's model is exactly once, also when an answer is lost: the ``model-versions/create`` request
reaches the real ``mlflow server`` behind the fault proxy and its answer never comes back (the version exists,
the client does not know it), once or on every attempt; and when a resent create made a second version of the
run (what MLflow's client does when it resends a POST), the lowest is kept and the duplicate removed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from expctl.core.model import ValidationGate
from expctl.tracking.mlflow.promote import apply_gate
from expctl.tracking.mlflow.session import MlflowSession
from tests.support.proxy import FaultProxy, Rule

pytestmark = pytest.mark.integration

CREATE = r"/model-versions/create$"


@pytest.fixture
def proxy(mlflow_server: Any) -> Iterator[FaultProxy]:
    fp = FaultProxy(upstream=mlflow_server.uri.removeprefix("http://")).start()
    yield fp
    fp.close()


def trained_run(uri: str) -> tuple[Any, str]:
    """A finished run on the server (straight, not through the proxy) with a metric and a logged model."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.create_experiment(f"register-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment, tags={"expctl.run_key": "k", "expctl.spec_hash": "h"})
    client.log_metric(run.info.run_id, "acc", 0.9)
    client.create_logged_model(experiment, name="model", source_run_id=run.info.run_id)
    return client, run.info.run_id


@pytest.mark.parametrize("rule", [
    Rule("POST", CREATE, "reset-after", times=1),
    Rule("POST", CREATE, "reset-after", times=-1),
], ids=["lost once (the client resends)", "every answer lost (the client gives up)"])
def test_a_lost_register_answer_leaves_one_version(mlflow_server: Any, proxy: FaultProxy, rule: Rule) -> None:
    client, run_id = trained_run(mlflow_server.uri)
    name = f"m-{uuid.uuid4().hex[:8]}"
    gate = ValidationGate(metric="acc", threshold=0.5, register_as=name, alias="champion")
    proxy.add(rule)
    session = MlflowSession(proxy.url, "local")
    result = apply_gate(session, run_id, gate)
    assert rule.hits >= 1 and result.passed, result
    versions = client.search_model_versions(f"name = '{name}'")
    assert [v.version for v in versions] == ["1"], [(v.version, v.run_id) for v in versions]
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_run(run_id).data.tags["expctl.model_version"] == f"{name}/1"
    proxy.clear()
    apply_gate(session, run_id, gate)  # a rerun registers nothing more
    assert len(client.search_model_versions(f"name = '{name}'")) == 1


def test_duplicates_a_resent_create_made_are_removed_and_the_lowest_kept(mlflow_server: Any) -> None:
    """What a resent ``model-versions/create`` leaves on the server (two versions of one run, one source): the
    gate keeps the lowest and deletes the other; a version of the same run registered by hand (no expctl tag)
    is left alone."""
    client, run_id = trained_run(mlflow_server.uri)
    name = f"m-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    model = client.search_logged_models([client.get_run(run_id).info.experiment_id])[0]
    for _ in range(2):
        client.create_model_version(name, source=f"models:/{model.model_id}", run_id=run_id,
                                    tags={"expctl.run_id": run_id}, model_id=model.model_id)
    by_hand = client.create_model_version(name, source=f"models:/{model.model_id}", run_id=run_id,
                                          model_id=model.model_id)
    gate = ValidationGate(metric="acc", threshold=0.5, register_as=name, alias="champion")
    assert apply_gate(MlflowSession(mlflow_server.uri, "local"), run_id, gate).passed
    versions = sorted(v.version for v in client.search_model_versions(f"name = '{name}'"))
    assert versions == ["1", str(by_hand.version)]
    assert client.get_model_version_by_alias(name, "champion").version == "1"
