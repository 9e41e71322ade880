"""What MLflow's UI shows of expctl's experiments: the training kind, expctl's saved view, sweep summaries.

Every function takes an ``MlflowClient`` (the store's) and writes only what is missing or changed, so calling
them on every apply or sync costs a comparison, not a request. The values come from ``provenance`` (pure).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from expctl.model import ValidationGate
from expctl.tracking import provenance as pv

MANAGED_FILTER = "tags.`expctl.managed` = 'true'"
_PAGE = 1000


def creation_tags() -> dict[str, str]:
    """The tags a new expctl experiment is created with."""
    return {"expctl.managed": "true", pv.EXPERIMENT_KIND_TAG: pv.TRAINING_KIND}


def ensure_training_kind(client: Any, experiment_id: str, tags: Mapping[str, str]) -> None:
    """Mark an experiment created before expctl set the kind (idempotent: nothing when already set)."""
    if pv.EXPERIMENT_KIND_TAG not in tags:
        client.set_experiment_tag(experiment_id, pv.EXPERIMENT_KIND_TAG, pv.TRAINING_KIND)


def ensure_view(client: Any, experiment_id: str, tags: Mapping[str, str], override_keys: Iterable[str],
                metric: str | None) -> None:
    """expctl's saved view of the experiment's runs, written only when absent or its columns changed."""
    state = pv.experiment_view(override_keys, metric)
    key = pv.SAVED_VIEW_PREFIX + pv.VIEW_KEY
    if pv.saved_view_state(tags.get(key)) == state:
        return
    _, value = pv.saved_view_tag(state, int(time.time() * 1000))
    client.set_experiment_tag(experiment_id, key, value)


def managed_experiments(client: Any, names: Sequence[str] = ()) -> dict[str, tuple[str, bool]]:
    """``{name: (id, has expctl's saved view)}`` of expctl's experiments (all, or only ``names``), marking
    any that lack the training kind."""
    found: dict[str, tuple[str, bool]] = {}
    token: str | None = None
    while True:
        page = client.search_experiments(filter_string=MANAGED_FILTER, max_results=_PAGE, page_token=token)
        for exp in page:
            if not names or exp.name in names:
                tags = exp.tags or {}
                found[exp.name] = (str(exp.experiment_id), pv.SAVED_VIEW_PREFIX + pv.VIEW_KEY in tags)
                ensure_training_kind(client, str(exp.experiment_id), tags)
        token = page.token
        if not token:
            return dict(sorted(found.items()))


def experiment_of_run(client: Any, run_id: str) -> str:
    return str(client.get_run(run_id).info.experiment_id)


def summarise_sweep(client: Any, parent: Any, children: Sequence[Any], statuses: Mapping[str, str],
                    gates: Mapping[str, ValidationGate]) -> None:
    """Write a sweep's counts per state and best gate value on its parent run, when they changed: metrics
    (``sweep_best_<metric>``), tags (``expctl.sweep.<state>`` counts …) and its description."""
    from mlflow.entities import Metric, RunTag

    tags = parent.data.tags
    experiment = tags.get("expctl.experiment", "")
    points = [pv.Point(statuses.get(c.info.run_id, c.info.status), c.data.tags.get("mlflow.runName", c.info.run_id),
                       c.data.metrics) for c in children]
    summary = pv.sweep_summary(points, gates.get(experiment))
    if tags.get("expctl.sweep.summary") == summary.text:
        return
    note = pv.sweep_note(experiment, tags.get("expctl.commit", ""), tags.get("expctl.source_file", ""), summary)
    now = int(time.time() * 1000)
    client.log_batch(parent.info.run_id, metrics=[Metric(k, v, now, 0) for k, v in summary.metrics().items()],
                     tags=[RunTag(k, v) for k, v in {**summary.tags(), pv.NOTE_TAG: note}.items()])
