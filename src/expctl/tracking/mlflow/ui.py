"""What MLflow's UI shows of expctl's experiments: the training kind, expctl's saved view, sweep summaries.

Every function takes an ``MlflowClient`` (the store's) and writes only what is missing or changed, so calling
them on every apply or sync costs a comparison, not a request. The values come from ``provenance`` (pure).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from expctl.core.model import RunSpec, ValidationGate
from expctl.tracking.mlflow import provenance as pv

MANAGED_FILTER = "tags.`expctl.managed` = 'true'"
_PAGE = 1000


def _view_state(spec: RunSpec) -> dict[str, object]:
    gate = spec.job.validation
    return pv.experiment_view([key for key, _ in pv.override_pairs(spec.overrides)], gate.metric if gate else None)


def experiment_tags(spec: RunSpec) -> dict[str, str]:
    """The tags a new experiment of ``spec``'s runs is created with: the training kind and the saved view."""
    key, value = pv.saved_view_tag(_view_state(spec), int(time.time() * 1000))
    return {pv.EXPERIMENT_KIND_TAG: pv.TRAINING_KIND, key: value}


def ensure_experiment_tags(client: Any, experiment_id: str, tags: Mapping[str, str], spec: RunSpec) -> None:
    """The training kind and the saved view on an existing experiment: written only when missing or changed."""
    ensure_training_kind(client, experiment_id, tags)
    ensure_view(client, experiment_id, tags, _view_state(spec))


def _set_tag(client: Any, experiment_id: str, key: str, value: str) -> None:
    """Set an experiment tag; a concurrent expctl setting it first (an embedded store then refuses the
    duplicate row) is success."""
    try:
        client.set_experiment_tag(experiment_id, key, value)
    except Exception:
        if key not in (client.get_experiment(experiment_id).tags or {}):
            raise


def ensure_training_kind(client: Any, experiment_id: str, tags: Mapping[str, str]) -> None:
    """Mark an experiment created before expctl set the kind (idempotent: nothing when already set)."""
    if pv.EXPERIMENT_KIND_TAG not in tags:
        _set_tag(client, experiment_id, pv.EXPERIMENT_KIND_TAG, pv.TRAINING_KIND)


def ensure_view(client: Any, experiment_id: str, tags: Mapping[str, str], state: Mapping[str, object]) -> None:
    """expctl's saved view of the experiment's runs, written only when absent or its columns changed."""
    key = pv.SAVED_VIEW_PREFIX + pv.VIEW_KEY
    if pv.saved_view_state(tags.get(key)) == state:
        return
    _, value = pv.saved_view_tag(state, int(time.time() * 1000))
    _set_tag(client, experiment_id, key, value)


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
                    gates: Mapping[str, ValidationGate], extra: Mapping[str, str]) -> bool:
    """Write a sweep's counts per state and best gate value on its parent run, when they changed: metrics
    (``sweep_best_<metric>``), tags (``expctl.sweep.<state>`` counts …, and ``extra``) and its description.
    Whether it wrote."""
    from mlflow.entities import Metric, RunTag

    tags = parent.data.tags
    experiment = tags.get("expctl.experiment", "")
    points = [pv.Point(statuses.get(c.info.run_id, c.info.status), c.data.tags.get("mlflow.runName", c.info.run_id),
                       c.data.metrics) for c in children]
    summary = pv.sweep_summary(points, gates.get(experiment))
    if tags.get("expctl.sweep.summary") == summary.text:
        return False
    note = pv.sweep_note(experiment, tags.get("expctl.commit", ""), tags.get("expctl.source_file", ""), summary)
    now = int(time.time() * 1000)
    client.log_batch(parent.info.run_id, metrics=[Metric(k, v, now, 0) for k, v in summary.metrics().items()],
                     tags=[RunTag(k, v) for k, v in {**summary.tags(), pv.NOTE_TAG: note, **extra}.items()])
    return True
