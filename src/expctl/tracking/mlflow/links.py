"""Addresses in the MLflow UI (3.x): the training-runs view of experiments, one run, one registered model.

Pure string building. MLflow 3.17's UI opens an experiment in its GenAI workspace unless the address says
``workflowType=machine_learning`` (its "Model training" switch; the experiment-kind tag alone no longer
decides), so every address here carries it. Routes are the UI's hash routes: ``#/experiments/<id>/runs``,
``#/compare-experiments/s?experiments=[...]``, ``#/experiments/<id>/runs/<run>``, ``#/models/<name>``.

On a server with workspaces, an address of a team's experiment, run or model names its workspace (``workspace``):
the UI takes it from the page's query when it loads, and its routes carry it on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import quote, urlencode

from expctl.tracking.mlflow.provenance import VIEW_KEY

TRAINING = {"workflowType": "machine_learning"}


def _base(ui: str, workspace: str | None = None) -> str:
    return ui.rstrip("/") + (f"/?{urlencode({'workspace': workspace})}#" if workspace else "/#")


def _query(params: dict[str, str], workspace: str | None) -> str:
    return urlencode({**params, **({"workspace": workspace} if workspace else {})})


def experiments_url(ui: str, experiment_ids: Sequence[str], workspace: str | None = None) -> str:
    """The training runs of several experiments (of one workspace) in one table (one experiment: its own runs
    page)."""
    if len(experiment_ids) == 1:
        return experiment_url(ui, experiment_ids[0], workspace=workspace)
    if not experiment_ids:
        return f"{_base(ui, workspace)}/experiments?{_query(TRAINING, workspace)}"
    query = _query({"experiments": json.dumps(list(experiment_ids), separators=(",", ":")), **TRAINING}, workspace)
    return f"{_base(ui, workspace)}/compare-experiments/s?{query}"


def experiment_url(ui: str, experiment_id: str, view: bool = True, workspace: str | None = None) -> str:
    """An experiment's training runs, in expctl's saved view (columns: source, overrides, gate metric)."""
    params = {"viewStateShareKey": VIEW_KEY, **TRAINING} if view else TRAINING
    return f"{_base(ui, workspace)}/experiments/{quote(experiment_id, safe='')}/runs?{_query(params, workspace)}"


def run_route(experiment_id: str, run_id: str) -> str:
    """A run's page as a route inside the UI (for links in run descriptions)."""
    return f"#/experiments/{quote(experiment_id, safe='')}/runs/{quote(run_id, safe='')}"


def run_url(ui: str, experiment_id: str, run_id: str, workspace: str | None = None) -> str:
    return f"{_base(ui, workspace)[:-1]}{run_route(experiment_id, run_id)}?{_query(TRAINING, workspace)}"


def models_url(ui: str, workspace: str | None = None) -> str:
    """The Model Registry's list of models (of one workspace)."""
    return f"{_base(ui, workspace)}/models?{_query(TRAINING, workspace)}"


def model_url(ui: str, name: str, workspace: str | None = None) -> str:
    """A registered model's page (its versions and aliases)."""
    return f"{_base(ui, workspace)}/models/{quote(name, safe='')}?{_query(TRAINING, workspace)}"


def ui_address(tracking_uri: str, default: str) -> str:
    """Where the UI of a store is: a tracking server serves it itself; else ``expctl ui`` (``default``)."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return default
