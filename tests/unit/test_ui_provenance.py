"""What the MLflow UI shows about runs and where its addresses go (pure: specs in, tags and URLs out)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from expctl.config import source as project
from expctl.core.model import ValidationGate
from expctl.tracking.mlflow import links
from expctl.tracking.mlflow import provenance as pv
from expctl.tracking.mlflow import tags as g
from tests.support.factories import make_spec

COMMIT = "67015832c7afb8cb723ff44e40043d50cdacbbd4"
GATE = ValidationGate(metric="val_accuracy", threshold=0.7, mode="max", register_as="m", alias="candidate")
POINT = make_spec("lr-sweep", ("optimizer.lr=0.01", "model=wide"), commit=COMMIT, validation=GATE)
SINGLE = make_spec("baseline", commit=COMMIT)


@pytest.mark.parametrize(("remote", "public"), [
    ("https://ci-bot:s3cr3t@github.com/org/repo.git", "https://github.com/org/repo.git"),
    ("https://x-access-token:ghs_abc@github.com/org/repo?token=1", "https://github.com/org/repo"),
    ("http://user@gitlab.example.com:8443/g/r.git", "http://gitlab.example.com:8443/g/r.git"),
    ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
    ("  ", None),
    (None, None),
])
def test_a_remote_url_loses_its_credentials(remote: str | None, public: str | None) -> None:
    assert project.public_repo_url(remote) == public
    assert project.repository_label(remote, "checkout") == (public or "checkout")


def test_source_tags_name_the_repository_and_file_and_pin_the_commit() -> None:
    tags = pv.source_tags(POINT, "https://github.com/org/repo.git", "https://tok:en@github.com/org/repo.git")
    assert tags == {
        "mlflow.source.type": "PROJECT",
        "mlflow.source.name": "https://github.com/org/repo.git#experiments/lr-sweep.yaml",
        "mlflow.source.git.commit": COMMIT,
        "mlflow.source.git.branch": COMMIT,
        "mlflow.source.git.repoURL": "https://github.com/org/repo.git",
    }
    local = pv.source_tags(SINGLE, "checkout", None)
    assert local["mlflow.source.name"] == "checkout#experiments/baseline.yaml"
    assert "mlflow.source.git.repoURL" not in local


def test_overrides_become_params_the_runs_table_can_show() -> None:
    assert pv.override_params(POINT) == {"override.model": "wide", "override.optimizer.lr": "0.01"}
    odd = make_spec("x", ("+trainer.extra=1", "~seed", "weird:key=a b"))
    assert pv.override_params(odd) == {"override.trainer.extra": "1", "override.seed": "",
                                       "override.weird_key": "a b"}
    params = g.run_params(POINT)
    assert params["override.model"] == "wide" and params["lr"] == "0.1"  # the flattened config stays


def test_run_tags_carry_source_and_a_one_line_description_linking_the_sweep() -> None:
    tags = g.run_tags(POINT, 2, "Ada <ada@example.com>", "local", "p" * 32, repository="checkout",
                      sweep=("lr-sweep-sweep-67015832", links.run_route("3", "p" * 32)))
    note = tags[pv.NOTE_TAG]
    assert "\n" not in note
    assert note == (f"expctl launched lr-sweep with model=wide optimizer.lr=0.01 from experiments/lr-sweep.yaml "
                    f"at commit {COMMIT[:12]} (spec {POINT.spec_hash[:12]}), attempt 2 on local; point of sweep "
                    f"[lr-sweep-sweep-67015832](#/experiments/3/runs/{'p' * 32}).")
    assert tags["mlflow.source.name"] == "checkout#experiments/lr-sweep.yaml"
    assert tags["mlflow.parentRunId"] == "p" * 32
    single = g.run_tags(SINGLE, 1, "Ada", "kubernetes", None)
    assert single[pv.NOTE_TAG].endswith("attempt 1 on kubernetes.") and "sweep" not in single[pv.NOTE_TAG]
    parent = g.parent_tags(POINT, "local", repository="checkout")
    assert parent["mlflow.runName"] == "lr-sweep-sweep-67015832"
    assert parent[pv.NOTE_TAG] == f"expctl sweep of lr-sweep from experiments/lr-sweep.yaml at commit {COMMIT[:12]}."


def test_a_sweep_summary_counts_states_and_finds_the_best_gate_value() -> None:
    points = [pv.Point("FINISHED", "a", {"val_accuracy": 0.7}), pv.Point("FINISHED", "b", {"val_accuracy": 0.9}),
              pv.Point("FAILED", "c", {}), pv.Point("RUNNING", "d", {"val_accuracy": float("nan")}),
              pv.Point("SCHEDULED", "e", {}), pv.Point("KILLED", "f", {"val_accuracy": 0.95})]
    summary = pv.sweep_summary(points, GATE)
    assert summary.text == ("6 points (2 succeeded, 1 failed, 1 cancelled, 1 running, 1 pending); "
                            "best val_accuracy 0.95 (f)")
    assert summary.metrics() == {"sweep_best_val_accuracy": 0.95}
    assert summary.tags()["expctl.sweep.failed"] == "1" and summary.tags()["expctl.sweep.best_run"] == "f"
    lowest = pv.sweep_summary(points, ValidationGate(metric="val_accuracy", threshold=1.0, mode="min"))
    assert (lowest.best, lowest.best_run) == (0.7, "a")
    assert pv.sweep_summary(points, None).metrics() == {}
    assert pv.sweep_summary(points[2:3], GATE).text == "1 points (1 failed)"
    note = pv.sweep_note("lr-sweep", COMMIT, "experiments/lr-sweep.yaml", summary)
    assert note.startswith("6 points (2 succeeded") and note.endswith(f"at commit {COMMIT[:12]}.")
    assert pv.sweep_note("lr-sweep", COMMIT, "") == f"expctl sweep of lr-sweep at commit {COMMIT[:12]}."


def test_the_saved_view_shows_source_metric_overrides_then_description() -> None:
    state = pv.experiment_view(["optimizer.lr", "model", "model"], "val_accuracy")
    columns = ["attributes.`Source`", "attributes.`Version`", "metrics.`val_accuracy`",
               "metrics.`sweep_best_val_accuracy`", "params.`override.model`", "params.`override.optimizer.lr`",
               "attributes.`Description`"]
    assert state["selectedColumns"] == state["columnOrder"] == columns
    assert pv.experiment_view([], None)["selectedColumns"] == [
        "attributes.`Source`", "attributes.`Version`", "attributes.`Description`"]
    key, value = pv.saved_view_tag(state, 1_700_000_000_000)
    assert key == "mlflow.sharedViewState.expctl"
    envelope = json.loads(value)
    assert envelope["name"] and envelope["createdAt"] == envelope["updatedAt"] == 1_700_000_000_000
    assert pv.saved_view_state(value) == state
    for broken in (None, "", "{", '{"state": 3}', '{"name": "x"}'):
        assert pv.saved_view_state(broken) is None


def test_addresses_open_the_training_view_not_the_genai_overview() -> None:
    ui = "http://127.0.0.1:5000/"
    one = links.experiments_url(ui, ["3"])
    assert one == "http://127.0.0.1:5000/#/experiments/3/runs?viewStateShareKey=expctl&workflowType=machine_learning"
    assert links.experiment_url(ui, "3", view=False).endswith("/#/experiments/3/runs?workflowType=machine_learning")
    many = urlsplit(links.experiments_url(ui, ["1", "3"]))
    assert many.fragment.startswith("/compare-experiments/s?")
    query = parse_qs(many.fragment.split("?", 1)[1])
    assert json.loads(query["experiments"][0]) == ["1", "3"] and query["workflowType"] == ["machine_learning"]
    assert links.experiments_url(ui, []) == "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
    assert links.run_url(ui, "3", "abc") == "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    assert links.model_url(ui, "blobs classifier").endswith(
        "/#/models/blobs%20classifier?workflowType=machine_learning")
    assert links.models_url(ui) == "http://127.0.0.1:5000/#/models?workflowType=machine_learning"
    assert links.ui_address("https://mlflow.example.com/", "http://127.0.0.1:5000") == "https://mlflow.example.com"
    assert links.ui_address("sqlite:///x/mlflow.db", "http://127.0.0.1:5000") == "http://127.0.0.1:5000"


@pytest.mark.parametrize("url", [
    links.experiment_url("http://mlflow:5000", "7", workspace="vision team"),
    links.experiments_url("http://mlflow:5000", ["7", "8"], workspace="vision team"),
    links.run_url("http://mlflow:5000", "7", "abc", workspace="vision team"),
    links.models_url("http://mlflow:5000", workspace="vision team"),
    links.model_url("http://mlflow:5000", "clf", workspace="vision team"),
])
def test_a_teams_address_names_its_workspace_where_the_ui_reads_it(url: str) -> None:
    """The UI takes the workspace from the page's query when it loads; its hash route carries it on."""
    parts = urlsplit(url)
    assert parse_qs(parts.query) == {"workspace": ["vision team"]}, url
    route = urlsplit(parts.fragment)
    assert parse_qs(route.query)["workspace"] == ["vision team"] and parse_qs(route.query)["workflowType"], url


def test_an_address_without_a_workspace_is_as_before() -> None:
    assert links.run_url("http://mlflow:5000/", "7", "abc") == (
        "http://mlflow:5000/#/experiments/7/runs/abc?workflowType=machine_learning")
    assert "workspace" not in links.experiments_url("http://mlflow:5000", ["7", "8"])
