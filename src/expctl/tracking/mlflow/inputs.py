"""Pipelines in MLflow: which registered model version an input names now (the tags that record a run's inputs
are ``tags.input_tags``)."""

from __future__ import annotations

from typing import Any

from expctl.core.inputs import InputDecl, ModelVersion
from expctl.tracking.mlflow.promote import _holder
from expctl.tracking.mlflow.session import MlflowSession


def model_version(session: MlflowSession, decl: InputDecl) -> ModelVersion | None:
    """The version ``decl`` names now (by alias or number), with the spec hash of the run that logged it; None
    when there is none yet (no such model, alias or version)."""
    name = decl.model or ""
    client = session.client
    with session.calling(f"resolve the input {decl.wanted}"):
        version = _holder(client, name, decl.alias) if decl.alias else _version(client, name, str(decl.version))
        if version is None:
            return None
        spec_hash = ""
        if version.run_id:
            try:
                spec_hash = client.get_run(version.run_id).data.tags.get("expctl.spec_hash", "")
            except Exception:  # the run was deleted: the version still names what it is
                spec_hash = ""
    return ModelVersion(name, str(version.version), version.run_id or "", spec_hash)


def _version(client: Any, name: str, number: str) -> Any:
    try:
        return client.get_model_version(name, number)
    except Exception as exc:
        code, text = str(getattr(exc, "error_code", "")), str(exc).lower()
        if "RESOURCE_DOES_NOT_EXIST" in code or "INVALID_PARAMETER" in code or "not found" in text:
            return None
        raise
