"""Credentials never printed: a URI's user information and MLflow's token are hidden in every message."""

from __future__ import annotations

import pytest

from expctl.core.jobenv import tracking_env
from expctl.core.model import TrackingRef
from expctl.core.sanitize import data_location, job_uri, redact, uri_credentials, uri_secrets
from expctl.tracking.mlflow.locations import ui_server_command


@pytest.mark.parametrize(("text", "shown"), [
    ("MLflow at http://ada:hunter2@mlflow:5000 is unreachable", "MLflow at http://***@mlflow:5000 is unreachable"),
    ("MLflow at postgresql://ml:hunter2@db/mlflow is unusable", "MLflow at postgresql://***@db/mlflow is unusable"),
    ("at https://ghp_hunter2@host/x and mysql+pymysql://u:p@ss@db:3306/m",
     "at https://***@host/x and mysql+pymysql://***@db:3306/m"),
    ("MLflow at http://127.0.0.1:5000: fine; git@github.com:org/repo.git", None),
    ("see https://host/path@version", None),
])
def test_user_information_of_a_url_is_hidden(text: str, shown: str | None) -> None:
    assert redact(text) == (text if shown is None else shown)


def test_secret_values_are_hidden_wherever_they_appear() -> None:
    assert redact("Authorization: Bearer tok-hunter3 refused", ["tok-hunter3", "", "abc"]) == \
        "Authorization: Bearer *** refused"


def test_the_ui_server_gets_the_store_uri_in_its_environment_not_its_command_line() -> None:
    command, env, url = ui_server_command("postgresql://ml:hunter2@db/mlflow", 5001)
    assert command is not None and not any("hunter2" in arg for arg in command)
    assert env["MLFLOW_BACKEND_STORE_URI"] == "postgresql://ml:hunter2@db/mlflow"
    assert url == "http://127.0.0.1:5001"


@pytest.mark.parametrize(("uri", "secrets"), [
    ("http://ci:hun%40ter2@mlflow:5000", ["hun%40ter2", "hun@ter2"]),
    ("https://ghp_hunter2@mlflow/x?a=1&token=tok-hunter3", ["ghp_hunter2", "tok-hunter3"]),
    ("postgresql://ml@db/mlflow?sslmode=require&password=hunter2", ["hunter2"]),
    ("postgresql://ml@db/mlflow", []),
    ("sqlite:////srv/mlflow.db", []),
])
def test_the_secrets_of_a_uri_are_known_so_that_messages_hide_them(uri: str, secrets: list[str]) -> None:
    assert uri_secrets(uri) == secrets
    shown = redact(f"MLflow at {uri} failed", uri_secrets(uri))
    assert not any(s in shown for s in secrets)


# -- the tracking URI a job is handed: no password in it, and the variables that carry what it left out ----------

@pytest.mark.parametrize(("uri", "job", "credentials"), [
    ("http://ada:hun%40ter2@mlflow:5000", "http://mlflow:5000",
     {"MLFLOW_TRACKING_USERNAME": "ada", "MLFLOW_TRACKING_PASSWORD": "hun@ter2"}),
    ("https://ghp_hunter2@mlflow/base", "https://mlflow/base", None),  # a lone token: no variable carries it
    ("https://mlflow/x?a=1&token=hunter2#top", "https://mlflow/x?a=1#top", None),
    ("postgresql://ml:hunter2@db/mlflow", "postgresql://ml@db/mlflow", {"PGPASSWORD": "hunter2"}),
    ("postgresql+psycopg2://ml@db/m?password=hunter2&sslmode=require", "postgresql+psycopg2://ml@db/m?sslmode=require",
     {"PGPASSWORD": "hunter2"}),
    ("mysql+pymysql://ml:hunter2@db:3306/m", "mysql+pymysql://ml@db:3306/m", None),
    ("postgresql://ml@db/mlflow", "postgresql://ml@db/mlflow", {}),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000", {}),
    ("sqlite:////srv/x/mlflow.db", "sqlite:////srv/x/mlflow.db", {}),
    ("databricks", "databricks", {}),
])
def test_a_job_is_handed_the_uri_without_its_password(uri: str, job: str,
                                                      credentials: dict[str, str] | None) -> None:
    assert job_uri(uri) == job
    assert "hunter2" not in job_uri(uri)
    assert uri_credentials(uri) == credentials
    assert "hunter2" not in redact(f"MLflow at {uri} failed", uri_secrets(uri))


def test_the_job_environment_holds_no_password() -> None:
    ref = TrackingRef("postgresql://ml:hunter2@db/mlflow?password=hunter2", "r" * 32, "demo")
    assert tracking_env(ref)["MLFLOW_TRACKING_URI"] == "postgresql://ml@db/mlflow"
    assert ref.tracking_uri.endswith("hunter2")  # expctl's own connection keeps it


@pytest.mark.parametrize(("url", "recorded"), [
    ("https://reader:hunter2@host/data/", "https://host/data/"),
    ("https://ghp_token@host/data/", "https://host/data/"),  # a lone user name over http is a token
    ("ftp://u:p@ss@host/d", "ftp://host/d"),  # an unencoded '@' in the password
    ("s3://bucket/key?X-Amz-Signature=abc&X-Amz-Credential=AKIA&versionId=3", "s3://bucket/key?versionId=3"),
    ("https://acct.blob.core.windows.net/c/x?sv=2020&sig=s3cr3t", "https://acct.blob.core.windows.net/c/x?sv=2020"),
    ("abfs://container@acct.dfs.core.windows.net/p", "abfs://container@acct.dfs.core.windows.net/p"),
    ("abfs://container:key@acct.dfs.core.windows.net/p", "abfs://acct.dfs.core.windows.net/p"),
    ("gs://bucket/x?token=t#part", "gs://bucket/x#part"),
    ("s3://bucket/key", "s3://bucket/key"),
    ("/mnt/data/shapes", "/mnt/data/shapes"),
])
def test_a_dataset_location_is_recorded_without_credentials(url: str, recorded: str) -> None:
    assert data_location(url) == recorded


@pytest.mark.parametrize("name", ["MLFLOW_TRACKING_TOKEN", "AWS_SECRET_ACCESS_KEY", "AZURE_STORAGE_CONNECTION_STRING"])
def test_every_line_the_cli_prints_hides_the_environments_secrets(name: str, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from expctl.cli import say

    monkeypatch.setenv(name, "wJalrXUtnFEMI/K7MDENG")
    say("error: s3://bucket/x: cannot read: signature for wJalrXUtnFEMI/K7MDENG does not match")
    assert capsys.readouterr().err == "error: s3://bucket/x: cannot read: signature for *** does not match\n"
