"""A tracking URI's password reaches local and Slurm jobs through expctl's environment, never a file."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from expctl.config.schema import parse_settings
from expctl.core import backend_registry
from expctl.core.errors import ExpctlError
from expctl.engine.workspace import Workspace

CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "PGPASSWORD")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*CREDENTIALS, "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(name, "")  # restored (removed) after the test, whatever hand_credentials set
        monkeypatch.delenv(name)


def test_only_backends_whose_jobs_inherit_expctls_environment_are_handed_it() -> None:
    assert backend_registry.lookup("local").inherits_env and backend_registry.lookup("slurm").inherits_env
    assert not backend_registry.lookup("kubernetes").inherits_env  # kubernetes.tracking_secret instead


@pytest.mark.parametrize(("uri", "handed"), [
    ("http://ci:hunter2@mlflow:5000", {"MLFLOW_TRACKING_USERNAME": "ci", "MLFLOW_TRACKING_PASSWORD": "hunter2"}),
    ("postgresql://ml:hunter2@db/mlflow", {"PGPASSWORD": "hunter2"}),
    ("http://mlflow:5000", {}),
])
def test_the_password_of_the_uri_goes_to_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         uri: str, handed: dict[str, str]) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    Workspace(tmp_path).hand_credentials(parse_settings({}), "local")
    assert {k: os.environ[k] for k in CREDENTIALS if k in os.environ} == handed


def test_credentials_the_user_exported_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "own-token")
    Workspace(tmp_path).hand_credentials(parse_settings({"tracking_uri": "http://ci:hunter2@mlflow"}), "slurm")
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ and os.environ["MLFLOW_TRACKING_TOKEN"] == "own-token"


@pytest.mark.parametrize("uri", ["mysql://ml:hunter2@db/mlflow", "https://hunter2@mlflow", "https://mlflow?token=hunter2"])
def test_a_secret_no_variable_can_carry_is_refused_in_one_line(tmp_path: Path, uri: str) -> None:
    with pytest.raises(ExpctlError) as caught:
        Workspace(tmp_path).hand_credentials(parse_settings({"tracking_uri": uri}), "local")
    text = str(caught.value)
    assert "\n" not in text and "hunter2" not in text
    assert text.startswith("expctl.yaml: tracking_uri: ")
    assert "MLFLOW_TRACKING_PASSWORD" in text and "PGPASSWORD" in text


@pytest.mark.parametrize(("kube", "warned"), [({}, True), ({"tracking_secret": "mlflow-creds"}, False)])
def test_kubernetes_jobs_without_a_tracking_secret_are_warned_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 kube: dict[str, str], warned: bool) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))  # the backend itself then fails to open: no cluster
    settings = parse_settings({"tracking_uri": "http://ci:hunter2@mlflow", "kubernetes": kube})
    with warnings.catch_warnings(record=True) as caught, pytest.raises(ExpctlError, match="absent"):
        warnings.simplefilter("always")
        Workspace(tmp_path).open_backend("kubernetes", settings)
    texts = [str(w.message) for w in caught if "tracking_secret" in str(w.message)]
    assert texts == (["expctl.yaml: tracking_uri: Kubernetes jobs are handed the tracking URI without its password: "
                      "give them the credentials with kubernetes.tracking_secret"] if warned else [])
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ  # nothing handed through the environment here
