"""``expctl lineage MODEL@ALIAS``: model version → run → commit → config → datasets → batches → manifest digests,
and up a pipeline: the run's inputs → the model versions, runs and produced datasets (their digest and producer
run) they were → their lineage.

Read from MLflow only (the registry version's tags, its run's tags, params and artifacts): it works from any
checkout, long after the jobs are gone.
"""

from __future__ import annotations

import tempfile
from typing import Any

from expctl.core import bounded, safe_json
from expctl.core.errors import ExpctlError, TrackingError
from expctl.core.model import DATASET_ARTIFACT_DIR, VALIDATION_PREFIX
from expctl.tracking.mlflow.session import MlflowSession
from expctl.tracking.mlflow.sqlite_registry import RegistryReader
from expctl.tracking.mlflow.sqlite_search import Unsupported
from expctl.tracking.mlflow.tags import INPUT_PREFIX


def parse_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``MODEL@ALIAS`` or ``MODEL/VERSION`` → (model, alias, version)."""
    if "@" in ref:
        name, alias = ref.rsplit("@", 1)
        if name and alias:
            return name, alias, None
    elif "/" in ref:
        name, version = ref.rsplit("/", 1)
        if name and version.isdigit():
            return name, None, version
    raise ExpctlError(f"{ref}: expected MODEL@ALIAS or MODEL/VERSION (e.g. blobs-classifier@champion)")


def _artifact(client: Any, run_id: str, path: str) -> str | None:
    with tempfile.TemporaryDirectory(prefix="expctl-lineage-") as tmp:
        try:
            local = client.download_artifacts(run_id, path, tmp)
        except Exception:
            return None
        try:
            return bounded.read_text(local, 64 * bounded.MiB, "a lineage artifact")
        except ExpctlError:
            return None


def _manifest(text: str | None) -> dict[str, Any]:
    """A dataset manifest artifact; ``{}`` when it is missing or damaged (lineage still shows the digest)."""
    try:
        manifest = safe_json.loads(text) if text else {}
    except ValueError:
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _inputs(session: MlflowSession, client: Any, tags: dict[str, str], depth: int) -> list[dict[str, Any]]:
    """A run's inputs (``expctl.input.<name>.*`` tags), each with its upstream run's commit and spec hash; a
    model input with that version's own lineage (up to ``depth`` more links of the chain)."""
    names = sorted({k[len(INPUT_PREFIX):].rsplit(".", 1)[0] for k in tags if k.startswith(INPUT_PREFIX)})
    out: list[dict[str, Any]] = []
    for name in names:
        at = f"{INPUT_PREFIX}{name}."
        item: dict[str, Any] = {"name": name, **{k[len(at):]: v for k, v in sorted(tags.items()) if k.startswith(at)}}
        if item.get("model") and item.get("version") and depth > 0:
            try:
                item["lineage"] = _lineage(session, client, f"{item['model']}/{item['version']}", depth - 1)
            except TrackingError:
                item["lineage"] = None  # the version was deleted: the tags still say what it was
        elif item.get("run_id"):
            try:
                up = client.get_run(item["run_id"]).data.tags
                item["commit"] = up.get("expctl.commit", "")
                item["upstream_job"] = up.get("expctl.job", "")
                item["config"] = up.get("expctl.source_file", "")
            except Exception:
                item["commit"] = ""
        out.append(item)
    return out


def lineage(session: MlflowSession, ref: str, depth: int = 4) -> dict[str, Any]:
    """Everything a registered version came from, as one JSON-ready dict (its inputs' lineage too, ``depth``
    links up the chain). The embedded store's tables are read without MLflow (``sqlite_registry``) when their
    schema is one checked; otherwise, and on any other store, through MLflow's client."""
    parse_ref(ref)  # a malformed reference is refused before any read
    if session.local is not None:
        reader = RegistryReader(session.local, lambda: session.client)
        try:
            reader.check()
        except Unsupported:
            pass
        else:
            return _lineage(session, reader, ref, depth)
    return _lineage(session, session.client, ref, depth)


def _lineage(session: MlflowSession, client: Any, ref: str, depth: int) -> dict[str, Any]:
    name, alias, number = parse_ref(ref)
    try:
        version = (client.get_model_version_by_alias(name, alias) if alias
                   else client.get_model_version(name, number))
    except Exception as exc:
        raise TrackingError(f"{ref}: no such registered model version in {session.shown_uri}") from exc
    with session.calling(f"read the lineage of {ref}"):
        run = client.get_run(version.run_id)
        aliases = sorted(a for a, v in (client.get_registered_model(name).aliases or {}).items()
                         if str(v) == str(version.version))
        tags, vtags = run.data.tags, dict(version.tags or {})
        datasets = []
        for dataset, digest in sorted(safe_json.string_map(tags.get("expctl.datasets")).items()):
            if "/" in dataset or "\\" in dataset or dataset.startswith("."):  # a tag is anyone's to edit
                continue
            text = _artifact(client, run.info.run_id, f"{DATASET_ARTIFACT_DIR}/{dataset}.json")
            manifest = _manifest(text)
            datasets.append({
                "name": dataset, "digest": digest, "format": manifest.get("format"),
                "items": len(manifest.get("items", [])), "splits": manifest.get("splits", {}),
                "batches": manifest.get("batches", []),
                "manifest": f"runs:/{run.info.run_id}/{DATASET_ARTIFACT_DIR}/{dataset}.json",
            })
    return {
        "model": name, "version": str(version.version), "aliases": aliases,
        "run": {"id": run.info.run_id, "name": tags.get("mlflow.runName", ""), "status": run.info.status,
                "experiment": tags.get("expctl.experiment", ""), "job": tags.get("expctl.job", ""),
                "attempt": tags.get("expctl.attempt", "")},
        "commit": tags.get("expctl.commit") or tags.get("mlflow.source.git.commit", ""),
        "spec_hash": tags.get("expctl.spec_hash", ""),
        "config": {"file": tags.get("expctl.source_file", ""),
                   "overrides": list(safe_json.string_list(tags.get("expctl.overrides"))),
                   "params": dict(sorted(run.data.params.items()))},  # the resolved config, flattened
        "data_digest": tags.get("expctl.data_digest", ""),
        "datasets": datasets,
        "validation": {k[len("expctl.metric."):]: float(v) for k, v in sorted(vtags.items())
                       if k.startswith("expctl.metric." + VALIDATION_PREFIX)},
        "gate": tags.get("expctl.gate_reason", ""),
        "promotion": vtags.get("expctl.promotion", ""),
        "challenges": {k: v for k, v in sorted(vtags.items()) if k.startswith("expctl.challenge.")},
        "inputs": _inputs(session, client, dict(tags), depth),
    }
