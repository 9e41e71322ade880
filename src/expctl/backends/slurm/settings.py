"""The ``slurm:`` block of ``expctl.yaml`` (a strict model, named by ``core.backend_registry``): where the
per-commit checkouts live (shared by every node), placement defaults, and tenants. Light: ``expctl validate``
reads it."""

from __future__ import annotations

from pydantic import Field

from expctl.config.schema_types import BackendSettings, Strict, Text, Word


class SlurmTenantIn(Strict):
    """Slurm tenancy: experiments under ``path`` are charged to ``account`` in ``partition`` with ``qos``."""

    path: Word
    partition: Word | None = None
    account: Word | None = None
    qos: Word | None = None


class SlurmIn(BackendSettings):
    """The ``slurm:`` block: where per-commit checkouts live (shared by every node) and placement defaults."""

    workdir: Text | None = Field(None, description="a directory on a filesystem every node mounts")
    partition: Word | None = None
    account: Word | None = None
    qos: Word | None = None
    tenants: list[SlurmTenantIn] = []

    def tenant_for(self, source_file: str) -> SlurmTenantIn | None:
        matches = [t for t in self.tenants if source_file.startswith(t.path.rstrip("/") + "/")]
        return max(matches, key=lambda t: len(t.path)) if matches else None

    def tenant_paths(self) -> list[str]:
        return [t.path for t in self.tenants]


def slurm_settings(settings: object) -> SlurmIn:
    """The ``slurm:`` block of a project's settings."""
    return SlurmIn.of(settings, "slurm")
