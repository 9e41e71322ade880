"""``expctl lineage`` on the embedded store reads MLflow's registry tables and the run's artifact directory
without MLflow (``sqlite_registry``), and says exactly what MLflow's client says. A real store written by
MLflow's client: versions, an alias, version tags, a deleted version, a dataset manifest artifact, an input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from expctl.core.errors import TrackingError
from expctl.tracking.mlflow.store import MlflowStore
from tests.support import e2e
from tests.support.gitrepo import minimal_repo


@pytest.fixture(autouse=True)
def _a_reading_process() -> Iterator[None]:
    """As in ``expctl plan/status/...``: the process only reads the store, so its searches read the file."""
    from expctl.tracking.mlflow import sqlite_search

    sqlite_search.reads_only(True)
    yield
    sqlite_search.reads_only(False)


pytestmark = pytest.mark.integration

MANIFEST = {"format": "csv", "items": [{"path": "a.csv"}, {"path": "b.csv"}], "splits": {"train": 2},
            "batches": [{"name": "b1", "digest": "sha256:01"}]}


def _store(repo: Path, tmp: Path) -> str:
    """The repository's embedded store, written by MLflow's client as apply and promote would have."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{repo / '.expctl' / 'mlflow.db'}"
    (repo / ".expctl").mkdir(exist_ok=True)
    client = MlflowClient(uri, registry_uri=uri)
    exp = client.create_experiment("lin", artifact_location=(tmp / "artifacts").as_uri())
    base = client.create_run(exp, tags={"expctl.commit": "c0" * 20, "expctl.spec_hash": "h0",
                                        "expctl.job": "lin-base-1"}).info.run_id
    client.set_terminated(base)
    client.create_registered_model("lin-base")
    client.create_model_version("lin-base", f"runs:/{base}/model", run_id=base)
    main = client.create_run(exp, run_name="lin-main-1", tags={
        "expctl.commit": "c1" * 20, "expctl.spec_hash": "h1", "expctl.experiment": "lin", "expctl.job": "lin-main-1",
        "expctl.overrides": json.dumps(["lr=0.1"]), "expctl.datasets": json.dumps({"points": "sha256:ab"}),
        "expctl.input.base.model": "lin-base", "expctl.input.base.version": "1",
        "expctl.input.base.uri": "models:/lin-base/1"}).info.run_id
    client.log_param(main, "lr", "0.1")
    client.log_text(main, json.dumps(MANIFEST), "expctl/datasets/points.json")
    client.set_terminated(main)
    client.create_registered_model("lin-main")
    for _ in range(3):
        client.create_model_version("lin-main", f"runs:/{main}/model", run_id=main)
    client.set_registered_model_alias("lin-main", "champion", "2")
    client.set_model_version_tag("lin-main", "2", "expctl.promotion", "promoted to champion")
    client.set_model_version_tag("lin-main", "2", "expctl.metric.validation.accuracy", "0.9")
    client.delete_model_version("lin-main", "3")
    return uri


def test_lineage_reads_the_embedded_registry_as_mlflow_does_without_importing_it(tmp_path: Path) -> None:
    repo = minimal_repo(tmp_path / "repo", {"experiments/lin.yaml": "defaults:\n  - config\n  - _self_\n"})
    uri = _store(repo.path, tmp_path)
    client_side = MlflowStore(uri, "local")  # not embedded: MLflow's client answers
    file_side = MlflowStore(uri, "local", embedded=True)
    for ref in ("lin-main@champion", "lin-main/1", "lin-base/1"):
        expected = client_side.lineage(ref)
        assert file_side.lineage(ref) == expected, ref
    assert file_side._client is None and file_side.local is not None and file_side.local.reads > 0
    line = client_side.lineage("lin-main@champion")
    assert (line["version"], line["aliases"], line["promotion"]) == ("2", ["champion"], "promoted to champion")
    assert line["validation"] == {"validation.accuracy": 0.9} and line["config"]["params"] == {"lr": "0.1"}
    (points,) = line["datasets"]
    assert (points["items"], points["batches"]) == (2, MANIFEST["batches"])
    (base,) = line["inputs"]
    assert base["lineage"]["commit"] == "c0" * 20 and base["lineage"]["aliases"] == []
    for missing in ("lin-main/3", "lin-main@nope", "nope/1"):  # 3 was deleted
        with pytest.raises(TrackingError, match="no such registered model version"):
            client_side.lineage(missing)
        with pytest.raises(TrackingError, match="no such registered model version"):
            file_side.lineage(missing)

    shown = e2e.expctl(repo.path, "lineage", "lin-main@champion", "-o", "json", PYTHONPROFILEIMPORTTIME="1")
    assert shown.returncode == 0, shown.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in shown.stderr.splitlines()
                if line.startswith("import time:")}
    assert "click" in imported and not imported & {"mlflow", "sqlalchemy"}
    assert json.loads(shown.stdout) == json.loads(json.dumps(line))
