"""The ``local:`` block of ``expctl.yaml`` (a strict model, named by ``core.backend_registry``): how many runs
run at once on this machine and which of its GPUs they may use. Light: ``expctl validate`` reads it."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from expctl.config.schema_types import MAX_GPUS, BackendSettings


class LocalIn(BackendSettings):
    parallelism: int | None = Field(None, ge=1, le=4096)
    gpus: Annotated[int, Field(ge=0, le=MAX_GPUS)] | Annotated[list[int | str], Field(max_length=MAX_GPUS)] | None \
        = Field(None, description="this machine's GPUs for local runs: a count or device ids (default: nvidia-smi)")


def local_settings(settings: object) -> LocalIn:
    """The ``local:`` block of a project's settings."""
    return LocalIn.of(settings, "local")
