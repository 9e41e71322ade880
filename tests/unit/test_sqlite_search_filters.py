"""The filters and orders the embedded store's file reader answers (``sqlite_search``), and the ones it leaves to
MLflow's client: pure parsing, no store."""

from __future__ import annotations

from pathlib import Path

import pytest

from expctl.tracking.mlflow import sqlite_search
from expctl.tracking.mlflow.sqlite_search import Unsupported, local_path, parse_filter, parse_order, usable


def test_the_filters_expctl_sends_are_read() -> None:
    where = parse_filter("tags.`expctl.managed` = 'true' and tags.`expctl.backend` = 'local'")
    assert where.args == ("expctl.managed", "true", "expctl.backend", "local")
    assert where.sql.count("EXISTS (SELECT 1 FROM tags t") == 2
    assert parse_filter("").sql == "1" and parse_filter("  ").args == ()
    assert parse_filter('tags.expctl.validates_run_id != "a b"').args == ("expctl.validates_run_id", "a b")
    assert parse_filter("attributes.run_id IN ('a', \"b\")").args == ("a", "b")
    assert "NOT IN (?)" in parse_filter("attributes.run_id not in ('a')").sql
    assert parse_filter("attributes.status = 'FAILED' AND run.run_name = 'x'").args == ("FAILED", "x")
    assert "experiment_tags" in parse_filter("tags.`expctl.managed` = 'true'", "experiment").sql
    assert parse_filter("attributes.name = 'e'", "experiment").args == ("e",)


@pytest.mark.parametrize("text", [
    "tags.a = 'x' OR tags.b = 'y'", "metrics.loss < 1", "params.lr = '1'", "tags.a LIKE 'x%'",
    "tags.a IN ('x')", "attributes.start_time > 0", "attributes.status IN ('A')", "tags.a = x",
    "tags.a = 'it''s'", "tags.`a` = 'x' and", "attributes.run_id IN ()", "attributes.run_id IN ('a' 'b')",
    "tags.a-b = 'x'", "attributes.run_name = 'x'  garbage",
])
def test_anything_else_is_left_to_mlflows_client(text: str) -> None:
    with pytest.raises(Unsupported):
        parse_filter(text)


def test_the_order_is_mlflows() -> None:
    assert parse_order(["attributes.start_time ASC"]) == "(r.start_time IS NULL), r.start_time ASC, r.run_uuid"
    assert parse_order(["start_time desc"]).endswith("r.start_time DESC, r.run_uuid")
    assert parse_order([]) == "(r.start_time IS NULL), r.start_time DESC, r.run_uuid"  # MLflow's default
    for order in (["metrics.loss ASC"], ["attributes.end_time ASC"], ["start_time ASC", "run_id ASC"]):
        with pytest.raises(Unsupported):
            parse_order(order)


def test_only_expctls_own_store_outside_workspaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_ENABLE_WORKSPACES", raising=False)
    monkeypatch.delenv("MLFLOW_WORKSPACE", raising=False)
    # a process that may write (an in-process read command run earlier in this worker left its mark: unset it)
    monkeypatch.setattr(sqlite_search, "_READ_ONLY_PROCESS", False)
    assert not usable("sqlite:///x/.expctl/mlflow.db", embedded=True)  # a process that may write: the client
    monkeypatch.setattr(sqlite_search, "_READ_ONLY_PROCESS", True)  # a read command (``reads_only``)
    assert usable("sqlite:///x/.expctl/mlflow.db", embedded=True)
    assert not usable("sqlite:///x/other.db", embedded=False)
    assert not usable("http://127.0.0.1:5000", embedded=True)
    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    assert not usable("sqlite:///x/.expctl/mlflow.db", embedded=True)


def test_only_local_artifact_uris_are_read_in_place() -> None:
    assert local_path("file:///srv/repo/.expctl/mlartifacts/1/abc/artifacts") == Path(
        "/srv/repo/.expctl/mlartifacts/1/abc/artifacts")
    assert local_path("file://localhost/srv/a%20b") == Path("/srv/a b")
    assert local_path("/srv/artifacts") == Path("/srv/artifacts")
    for elsewhere in ("mlflow-artifacts:/1/abc/artifacts", "s3://bucket/1/abc", "file://host/srv/x",
                      "relative/artifacts", "file:relative", "file:///srv/x?versionId=1", "http://127.0.0.1/x"):
        assert local_path(elsewhere) is None, elsewhere
