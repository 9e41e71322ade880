"""The vocabulary every settings model is written in: the ``Strict`` base, constrained value types (Kubernetes'
grammars, one-line text, paths inside the repository), their limits, and ``BackendSettings``, the base of each
backend's block of ``expctl.yaml`` (``kubernetes:``, ``local:``, ``slurm:``).

``config.schema`` (expctl.yaml and the ``expctl`` block), ``config.schema_data`` (the ``data:`` block) and each
backend's ``settings`` module (``backends/<name>/settings.py``, named in ``core.backend_registry``) build their
models from these, so that a key's error reads the same wherever it is declared.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from expctl.core.project import PATTERN as PROJECT


class Strict(BaseModel):
    # strict: no bool for an int, no "3" for a number, no number for a string — YAML typos stay errors
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# Kubernetes' own grammars, so that what validate accepts the apiserver accepts too
LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"  # RFC 1123 label (namespaces)
SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"  # object names
QUANTITY = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
QUALIFIED = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"  # label keys

# what the apiserver stores: a larger number in an int32 or int64 field of a manifest is refused at apply time
INT32, INT64 = 2**31 - 1, 2**63 - 1
MAX_GPUS = 1024  # per replica, and on one machine

Label = Annotated[str, Field(pattern=LABEL)]
Name = Annotated[str, Field(pattern=SUBDOMAIN, max_length=253)]
Quantity = Annotated[str, Field(pattern=QUANTITY)]
WORD = r"^[^\s\x00-\x1f\x7f]+$"
Word = Annotated[str, Field(pattern=WORD)]  # non-empty, no whitespace or control characters (images, URIs, paths)
Text = Annotated[str, Field(min_length=1, pattern=r"^[^\x00-\x1f\x7f]*$")]  # one line, no control characters
ProjectId = Annotated[str, Field(pattern=PROJECT)]  # expctl.yaml's project: a repository's identity


def _inside_the_repository(path: str) -> str:
    if path.startswith(("/", "\\")) or ".." in path.replace("\\", "/").split("/"):
        raise ValueError(f"must be a path inside the repository, relative to its root (got {path!r})")
    return path


def _mlflow_path_name(name: str) -> str:
    """MLflow treats model, metric and artifact names as paths: one that normalizes to another is refused."""
    norm = posixpath.normpath(name)
    if norm != name or norm == "." or norm.startswith(("..", "/")):
        raise ValueError(f"{name!r} would be read as the path {norm!r} (MLflow refuses such names)")
    return name


def _not_reserved_alias(alias: str) -> str:
    if alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise ValueError(f"{alias!r} is reserved by MLflow's model registry ('latest', and v<N> for version N)")
    return alias


# a registered model's alias: MLflow's characters and length, not a reserved one (apply would register the
# model version and then fail to set the alias, on every apply)
ALIAS = r"^[\w-]+$"
Alias = Annotated[str, Field(pattern=ALIAS, max_length=255), AfterValidator(_not_reserved_alias)]
# a registered model's name: no '/' or ':', not blank, not a path that normalizes to another name
MODEL_NAME = r"^[^/:\x00-\x1f\x7f]*[^/:\s][^/:\x00-\x1f\x7f]*$"
ModelName = Annotated[str, Field(min_length=1, max_length=250, pattern=MODEL_NAME),
                      AfterValidator(_mlflow_path_name)]
# a metric's name, as MLflow accepts it (letters, digits, '_', '.', '-', ' ', ':', '/'), not a path to another
METRIC = r"^[/\w.\- :]+$"
MetricName = Annotated[str, Field(pattern=METRIC, max_length=250), AfterValidator(_mlflow_path_name)]
# a dataset's or a batch's name: a file and artifact name (manifests, MLflow inputs), never a path
DATA_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
DataName = Annotated[str, Field(pattern=DATA_NAME, max_length=128)]
RepoPath = Annotated[str, Field(pattern=WORD), AfterValidator(_inside_the_repository)]  # code_paths
EnvValue = Annotated[str, Field(pattern=r"^[^\x00]*$")] | int | float | bool
PositiveNumber = Annotated[int, Field(gt=0)] | Annotated[float, Field(gt=0)]


MAX_WRITE_CONCURRENCY = 64  # an apply's pool: more threads only queue on the servers (and on the GIL)


class BackendSettings(Strict):
    """A backend's block of ``expctl.yaml``: each backend's settings model extends this one (its
    ``BackendInfo.settings``), and ``config.schema.Settings`` holds one block per registered backend."""

    write_concurrency: int = Field(4, ge=1, le=MAX_WRITE_CONCURRENCY)  # changes an apply performs at once

    def tenant_paths(self) -> list[str]:
        """The path of each tenant the block declares (none here): ``expctl.yaml`` may name a path once."""
        return []

    @classmethod
    def of(cls, settings: object, backend: str) -> Self:
        """The block of backend ``backend`` in ``settings`` (a ``config.schema.Settings``), as this model."""
        block = getattr(settings, backend, None)
        if not isinstance(block, cls):
            raise TypeError(f"the settings have no {backend}: block of type {cls.__name__}")
        return block


# what each pattern means, for the one-line error of a value that does not match it
UI_URL = r"^https?://[^\s@/]+(/\S*)?$"  # a web address people open: http(s), no user:password@

PATTERN_HINTS = {
    PROJECT: "a project id: a-z, 0-9, '.', '_', '-' and '/', starting with a letter or digit, at most 100",
    UI_URL: "an http(s) address without credentials, such as https://mlflow.example.com",
    LABEL: "a lowercase RFC 1123 label (a-z, 0-9 and '-', at most 63 characters)",
    SUBDOMAIN: "a lowercase Kubernetes object name (a-z, 0-9, '-' and '.')",
    QUANTITY: "a Kubernetes quantity such as 500m, 2, 4Gi",
    ENV_NAME: "an environment variable name (letters, digits, '_', '-', '.'; not starting with a digit)",
    QUALIFIED: "a Kubernetes label key such as example.com/gpu",
    WORD: "a non-empty string without whitespace or control characters",
    r"^[^\x00]*$": "a string without NUL characters",
    MODEL_NAME: "an MLflow model name (not blank; no '/', ':' or control characters)",
    ALIAS: "an MLflow alias (letters, digits, '_' and '-', at most 255 characters)",
    METRIC: "an MLflow metric name (letters, digits, '_', '.', '-', ' ', ':' and '/')",
    DATA_NAME: "a name of letters, digits, '.', '_' and '-' (starting with a letter or digit; no '/', at most 128)",
}
