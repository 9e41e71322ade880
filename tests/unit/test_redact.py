"""Credentials never printed: a URI's user information and MLflow's token are hidden in every message."""

from __future__ import annotations

import pytest

from expctl.sanitize import redact, uri_secrets
from expctl.tracking.locations import ui_server_command


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
